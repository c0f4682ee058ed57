"""Agent conveniences with real softphones against a running server: an agent whose baresip
registers is logged in and, when it unregisters, logged out (``login_on_register``,
``logout_on_unregister``); a caller waiting in a queue with its own ``musiconhold`` hears that
music, not the configuration's default one.

Both options are the ones the shipped configuration documents, commented out: the test turns
them on as an admin would.
"""

from __future__ import annotations

import json
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from tests.integration.peers import RunningServer, free_port, start_server, write_server_config
from tests.integration.softphones import account_line, baresip_phone

pytestmark = [pytest.mark.peer, pytest.mark.timeout(90)]

SUPERVISOR = "change-me-supervisor-token"
QUEUE_HZ = 1200.0  # the sales queue's own music
DEFAULT_HZ = 400.0  # the configuration's default music on hold


def api(server: RunningServer, path: str, method: str = "GET") -> dict[str, object]:
    port = YAML(typ="safe").load((server.config_dir / "server.yaml").read_text())["api"]["port"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        headers={"Authorization": f"Bearer {SUPERVISOR}"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        body: dict[str, object] = json.load(reply)
    return body


def agent_state(server: RunningServer, agent_id: str, wanted: str) -> tuple[object, object]:
    """The agent's (state, reason) once it is ``wanted``, or as it is after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        agent = api(server, f"/api/agents/{agent_id}")
        if agent["state"] == wanted or time.monotonic() > deadline:
            return agent["state"], agent["reason"]
        time.sleep(0.1)


def uncomment(path: Path, *options: str) -> None:
    text = path.read_text()
    for option in options:
        assert f"# {option}" in text, f"{path.name} no longer documents {option!r}"
        text = text.replace(f"# {option}", option)
    path.write_text(text)


def write_tone(path: Path, frequency: float, seconds: float = 20.0) -> None:
    times = np.arange(round(seconds * 8000)) / 8000
    samples = (8000 * np.sin(2 * np.pi * frequency * times)).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(samples.tobytes())


def strongest_frequencies(path: Path) -> list[float]:
    """The strongest frequency of each 20 ms frame of sound (not silence) in a 16-bit WAV."""
    with wave.open(str(path)) as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        raw = wav.readframes(wav.getnframes())
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float64)[::channels]
    size = rate // 50
    frames = samples[: len(samples) // size * size].reshape(-1, size)
    frames = frames[np.sqrt(np.mean(frames**2, axis=1)) > 500]
    if not len(frames):
        return []
    spectra = np.abs(np.fft.rfft(frames * np.hanning(size), axis=1))
    return [float(f) for f in np.fft.rfftfreq(size, 1 / rate)[np.argmax(spectra, axis=1)]]


def test_an_agent_follows_their_softphones_registration(config_dir: Path, tmp_path: Path) -> None:
    uncomment(config_dir / "agents.yaml", "login_on_register: yes", "logout_on_unregister: yes")
    port = free_port()
    write_server_config(config_dir, port)
    server = start_server(config_dir, port, tmp_path / "server.log")
    try:
        assert agent_state(server, "alice", "logged_out")[0] == "logged_out"
        with baresip_phone(tmp_path / "alice") as phone:
            created = phone.command("uanew", account_line("1001", "change-me-1001", port))
            assert created["ok"], created
            assert phone.wait_event(("REGISTER_OK",)) is not None, phone.log()[-2000:]
            assert agent_state(server, "alice", "available") == ("available", "registered")
            # bob's phone registering changes nothing: he did not ask for it.
            created = phone.command("uanew", account_line("1002", "change-me-1002", port))
            assert created["ok"], created
            assert server.wait_for_log("RegistrationAdded(aor='1002'") >= 1
            # The ACD applies its inputs in order: once carol's login through the API is done,
            # anything bob's registration set off has been applied too.
            api(server, "/api/agents/carol/login", "POST")
            assert agent_state(server, "carol", "available")[0] == "available"
            assert agent_state(server, "bob", "logged_out")[0] == "logged_out"
        # baresip unregisters when it stops.
        assert server.wait_for_log("RegistrationRemoved(aor='1001'") >= 1
        assert agent_state(server, "alice", "logged_out") == ("logged_out", "unregistered")
    finally:
        assert server.stop() == 0, server.log()[-4000:]


def test_a_queues_callers_hear_its_own_music_on_hold(config_dir: Path, tmp_path: Path) -> None:
    prompts = config_dir / "prompts"
    prompts.mkdir(exist_ok=True)
    write_tone(prompts / "music-on-hold.wav", DEFAULT_HZ)
    write_tone(prompts / "sales-hold.wav", QUEUE_HZ)
    uncomment(config_dir / "queues.yaml", "musiconhold: sales-hold.wav")
    dialplan = config_dir / "dialplan.yaml"
    dialplan.write_text(dialplan.read_text() + '  "300": {queue: sales}\n')
    port = free_port()
    write_server_config(config_dir, port)
    server = start_server(config_dir, port, tmp_path / "server.log")
    dumps = tmp_path / "heard"
    dumps.mkdir()
    try:
        with baresip_phone(tmp_path / "caller", dump_dir=dumps) as phone:
            # An account that never registers: the call comes in through the local test trunk.
            line = account_line("5550100", "unused", port, regint=0)
            assert phone.command("uanew", line)["ok"]
            assert phone.command("dial", f"sip:300@127.0.0.1:{port}")["ok"]
            assert phone.wait_event(("CALL_ESTABLISHED",)) is not None, phone.log()[-2000:]
            time.sleep(4)  # waiting in the queue: nobody is logged in
            assert api(server, "/api/queues/sales")["waiting"] == 1
            phone.command("hangup")
            assert phone.wait_event(("CALL_CLOSED",)) is not None
        heard = sorted(dumps.glob("dump-*-dec.wav"))
        assert heard, sorted(p.name for p in dumps.iterdir())
        peaks = strongest_frequencies(heard[0])
        queue_music = sum(1 for f in peaks if abs(f - QUEUE_HZ) <= 50) / 50
        default_music = sum(1 for f in peaks if abs(f - DEFAULT_HZ) <= 50) / 50
        assert queue_music >= 2.5, (queue_music, default_music)
        assert default_music == 0
    finally:
        assert server.stop() == 0, server.log()[-4000:]
