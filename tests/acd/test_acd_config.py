"""queues.yaml: Asterisk option names, problems reported with file and line, the shipped queues."""

from __future__ import annotations

import random
import shutil
import wave
from pathlib import Path

import pytest

from acd.actions import OfferCall
from acd.config_adapter import agent_profiles, build_engine, feature_code_map, queue_configs
from acd.feature_codes import AgentCommandKind
from acd.model import OfferFailure, Strategy
from config.loader import default_config_dir, load_configuration
from config.queues import load_queues
from config.source import ConfigError
from cxos.waiting_audio import music_on_hold


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "queues.yaml"
    path.write_text(text)
    return path


def test_the_shipped_queues_route_each_skill_to_its_expert() -> None:
    directory = default_config_dir()
    configuration = load_configuration(directory)
    queues = load_queues(directory / "queues.yaml", configuration.agents)
    assert set(queues.queues) == {"sales", "support", "billing"} == set(configuration.queues)
    engine = build_engine(queues, configuration.agents, random.Random(0))
    for agent in ("alice", "bob", "carol"):
        engine.agent_login(agent, 0.0)
    experts = {}
    for queue_id in ("sales", "support", "billing"):
        out = engine.enqueue(f"call-{queue_id}", queue_id, 1.0)
        (offer,) = [o for o in out if isinstance(o, OfferCall)]
        experts[queue_id] = offer.agent_id
    assert experts == {"sales": "alice", "support": "bob", "billing": "carol"}


def test_asterisk_option_names_and_values_are_understood(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
queues:
  q1:
    strategy: rrmemory
    maxlen: 0
    timeout: 12
    autopause: yes
    announce-frequency: 0
    announce-position: no
    announce-holdtime: yes
    joinempty: no
    leavewhenempty: yes
    wrapuptime: 7
    servicelevel: 30
    prompts: {queue-thereare: there-are.wav, periodic-announce: "Please hold."}
    ring_failures: {counts: [no_answer], pause_at_once: []}
  q2:
    strategy: ringall
    skills: {sales: 2}
    maxlen: 20
    escalation:
      - {after: 30, relax_proficiency: 1, overflow: [q1]}
      - {after: 60, add_skills: {support: 4}, offer_callback: true}
      - {after: 90, route_to: voicemail}
""",
    )
    q1, q2 = queue_configs(load_queues(path))
    assert q1.strategy is Strategy.ROUND_ROBIN and q2.strategy is Strategy.RING_ALL
    assert (q1.max_length, q2.max_length) == (None, 20)
    assert (q1.ring_timeout, q1.autopause, q1.wrapuptime, q1.service_level_seconds) == (
        12.0,
        1,
        7.0,
        30.0,
    )
    assert q1.announce_frequency is None
    assert (q1.announce_position, q1.announce_holdtime) == (False, True)
    assert (q1.joinempty, q1.leavewhenempty) == (False, True)
    assert q1.ring_failures.counts == {OfferFailure.NO_ANSWER}
    assert q1.ring_failures.pauses_at_once == frozenset()
    steps = q2.escalation
    assert steps[0].overflow_queues == ("q1",) and steps[0].relax_proficiency == 1
    assert [(r.skill, r.min_proficiency) for r in steps[1].add_skills] == [("support", 4)]
    assert steps[1].offer_callback and steps[2].route_to == "voicemail"


def problems(path: Path, *agents_from: Path) -> list[str]:
    agents = load_configuration(agents_from[0]).agents if agents_from else None
    with pytest.raises(ConfigError) as caught:
        load_queues(path, agents)
    return [str(p).removeprefix(f"{path}:") for p in caught.value.problems]


def test_mistakes_are_reported_with_their_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """queues:
  sales:
    skills: {sales: 7}
    strategy: cheapest
    announce-frequncy: 30
    escalation:
      - {after: 60}
      - {after: 30, overflow: [nowhere]}
  support: {}
  billing: {}
feature_codes:
  login: "*4"
""",
    )
    found = problems(path)
    assert any(p.startswith("3: queues.sales.skills.sales:") and "5" in p for p in found)
    assert any(p.startswith("4: queues.sales.strategy: unknown strategy 'cheapest'") for p in found)
    assert "5: queues.sales.announce-frequncy: unknown setting (check the spelling)" in found
    assert "11: feature_codes: feature code '*4' is the start of another code" in found
    assert len(found) == 4


def test_escalation_steps_must_come_in_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """queues:
  sales:
    escalation:
      - {after: 60}
      - {after: 30}
""",
    )
    (found,) = problems(path)
    assert found.startswith("2: queues.sales: escalation steps must have strictly increasing")


def test_references_to_queues_and_agents_are_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """queues:
  sales:
    skills: {sales: 1}
    escalation:
      - {after: 60, overflow: [nowhere]}
  support:
    escalation:
      - {after: 10, overflow: [support]}
  billing:
    skills: {billing: 5}
    linear_order: [carol, zoe]
  french:
    skills: {french: 1}
""",
    )
    assert problems(path, default_config_dir()) == [
        "5: queue 'sales' overflows to unknown queue 'nowhere'",
        "8: queue 'support' cannot overflow to itself",
        "11: queue 'billing': linear_order names unknown agent 'zoe'",
        "13: queue 'french': no agent has the skills it needs (french>=1), "
        "even after its escalation steps",
    ]


def test_feature_codes_come_from_the_file() -> None:
    directory = default_config_dir()
    configuration = load_configuration(directory)
    codes = feature_code_map(load_queues(directory / "queues.yaml"), configuration.agents)
    command = codes.command("1002", "*47*2")
    assert command is not None
    assert (command.agent_id, command.kind, command.reason) == (
        "bob",
        AgentCommandKind.PAUSE,
        "training",
    )


def test_a_queues_music_on_hold_must_be_a_wav_file_that_exists(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    with wave.open(str(prompts / "sales-hold.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * 800)
    (prompts / "notes.wav").write_text("not audio")
    elsewhere = tmp_path / "elsewhere.wav"
    elsewhere.write_bytes((prompts / "sales-hold.wav").read_bytes())
    path = write(
        tmp_path,
        f"""queues:
  sales:
    musiconhold: sales-hold.wav
  support:
    musiconhold: {elsewhere}
  billing:
    musiconhold: missing.wav
  french:
    musiconhold: notes.wav
""",
    )
    assert problems(path) == [
        f"7: music on hold '{prompts / 'missing.wav'}': No such file or directory",
        f"9: music on hold '{prompts / 'notes.wav'}' is not a WAV file",
    ]
    path.write_text(
        "queues:\n"
        "  sales: {musiconhold: sales-hold.wav}\n"
        f"  support: {{musiconhold: {elsewhere}}}\n"
    )
    queues = load_queues(path).queues
    assert music_on_hold(prompts, queues["sales"].musiconhold) == prompts / "sales-hold.wav"
    assert music_on_hold(prompts, queues["support"].musiconhold) == elsewhere


def test_agents_may_follow_their_softphones_registration(tmp_path: Path) -> None:
    shutil.copytree(default_config_dir(), tmp_path / "conf")
    agents_file = tmp_path / "conf" / "agents.yaml"
    agents_file.write_text(  # the options documented, commented out, in the shipped file
        agents_file.read_text()
        .replace("# login_on_register: yes", "login_on_register: yes")
        .replace("# logout_on_unregister: yes", "logout_on_unregister: yes")
    )
    profiles = {p.agent_id: p for p in agent_profiles(load_configuration(tmp_path / "conf").agents)}
    assert (profiles["alice"].login_on_register, profiles["alice"].logout_on_unregister) == (
        True,
        True,
    )
    assert (profiles["bob"].login_on_register, profiles["bob"].logout_on_unregister) == (
        False,
        False,
    )
