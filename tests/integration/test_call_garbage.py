"""A finished call leaves no cyclic garbage: its objects are freed when it ends.

The server runs in the test's process (the whole application: storage, telephony, speech, call
center, supervisor API) so that its heap can be inspected; SIPp phones call it on 127.0.0.1.
Calls go through every layer: a trunk caller keys 1 in the IVR, waits in the sales queue with
music on hold, is bridged to an agent's phone, talks and hangs up; another caller answers a menu
that listens (speech recognition) and the IVR hangs up; a third hangs up during the shipped
tree's first prompt.

Objects that only the garbage collector can free (they refer to each other in a cycle) pile up
between collections, and the server runs its full collections rarely (see `cxos.app`): a call
that leaves such a cycle makes the heap, and each full collection's pause, grow with the number
of calls. With ``gc.DEBUG_SAVEALL`` the collector keeps what it found unreachable in
``gc.garbage``, which the test expects to hold nothing from CXOS's packages.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from config.loader import load_configuration
from cxos.app import Application
from cxos.bus import DomainEvent
from ivr.events import IvrInput
from telephony.events import CallEnded
from telephony.rtp.g711 import Law
from tests.integration.contact_center import (
    ADMIN_TOKEN,
    SIPP_PCAPS,
    phone_done,
    prepare,
    sipp_ok,
)
from tests.integration.peers import SCENARIOS, free_port, run_sipp
from tests.integration.rtp_pcap import RtpStream, write_pcap
from tests.speech.speech_audio import SpeechAudio

pytestmark = [pytest.mark.peer, pytest.mark.timeout(150)]

#: The top-level packages of CXOS: an object whose class comes from one of them is ours.
OUR_PACKAGES = frozenset(
    {"acd", "config", "crm_bridge", "cxos", "ivr", "speech", "supervisor_api", "telephony"}
)


#: A menu that listens for speech (and keys), then hangs up: the speaking caller's tree.
SPEECH_TREE = """\
trees:
  speech_line:
    description: A menu answered by voice
    start: menu
    nodes:
      menu:
        type: menu
        greet_long: "Say billing, or press 1."
        choices:
          - dtmf: 1
            phrases: [billing]
            next: goodbye
        on_failure: goodbye
      goodbye:
        type: hangup
"""


@dataclass
class InProcessServer:
    app: Application
    address: str
    api: str
    workdir: Path
    ended: list[str]
    inputs: list[IvrInput]

    async def calls_ended(self, count: int, within: float = 30.0) -> None:
        for _ in range(int(within / 0.05)):
            if len(self.ended) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{count} calls should have ended, {len(self.ended)} did")

    async def sipp(self, name: str, args: list[str]) -> None:
        folder = self.workdir / name
        (folder / "pcap").mkdir(parents=True, exist_ok=True)
        for capture in ("g711a.pcap", "dtmf_2833_1.pcap"):
            (folder / "pcap" / capture).write_bytes((SIPP_PCAPS / capture).read_bytes())
        args = [*args, "-mp", str(free_port())]
        sipp_ok(await asyncio.to_thread(run_sipp, self.address, args, folder, 60.0))


@pytest.fixture
async def server(config_dir: Path, tmp_path: Path) -> AsyncIterator[InProcessServer]:
    port, api_port, _ = prepare(config_dir)
    (config_dir / "ivr" / "speech_line.yaml").write_text(SPEECH_TREE)
    (config_dir / "dialplan.yaml").write_text(
        'numbers:\n  "100": {ivr: test_line}\n  "200": {ivr: speech_line}\n  "*": {ivr: main}\n'
    )
    app = Application(load_configuration(config_dir), tmp_path / "data")
    ended: list[str] = []
    inputs: list[IvrInput] = []

    def on_event(event: DomainEvent) -> None:
        if isinstance(event, CallEnded):
            ended.append(event.call_id)
        elif isinstance(event, IvrInput):
            inputs.append(event)

    await app.start()
    app.listeners.append(on_event)
    try:
        yield InProcessServer(
            app, f"127.0.0.1:{port}", f"http://127.0.0.1:{api_port}", tmp_path, ended, inputs
        )
    finally:
        await app.stop()


def speaking_caller(workdir: Path) -> None:
    """``pcap/caller.pcap``: a moment of silence, "billing" said by espeak-ng, then key 1 (the
    menu ends either way, and the IVR hangs up)."""
    (workdir / "pcap").mkdir(parents=True, exist_ok=True)
    clip = SpeechAudio(workdir).speech("billing", voice="en-us+klatt", lead=0.3, trail=1.0)
    stream = RtpStream(Law.ULAW)
    packets = [*stream.silence(1.0), *stream.audio(clip.samples())]
    stream.pause(3.0)
    write_pcap(workdir / "pcap" / "caller.pcap", [*packets, *stream.key("1")])


def agent_phone(address: str, port: int, workdir: Path) -> subprocess.Popen[str]:
    """The registered agent's phone on ``port``: answers one call, echoes its audio."""
    return subprocess.Popen(
        [
            *(shutil.which("sipp") or "sipp", address),
            *("-sf", str(SCENARIOS / "agent_answer.xml"), "-i", "127.0.0.1"),
            *("-p", str(port), "-mp", str(free_port()), "-rtp_echo"),
            *("-m", "1", "-nostdin", "-timeout", "50s", "-timeout_error"),
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cyclic_garbage_of_ours() -> Counter[str]:
    """Collect, and count by class the objects of our packages the collector found in cycles
    (or reachable only from them)."""
    gc.collect()
    found: Counter[str] = Counter()
    for thing in gc.garbage:
        kind = type(thing)
        if kind.__module__.partition(".")[0] in OUR_PACKAGES:
            found[f"{kind.__module__}.{kind.__qualname__}"] += 1
    return found


async def test_calls_through_ivr_queue_agent_and_speech_leave_no_cyclic_garbage(
    server: InProcessServer, tmp_path: Path
) -> None:
    # The agent's phone registers and alice logs in: set-up, before the heap is watched.
    agent_port = free_port()
    users = tmp_path / "users.csv"
    users.write_text("SEQUENTIAL\n1001;[authentication username=1001 password=change-me-1001]\n")
    scenario = str(SCENARIOS / "agent_register.xml")
    await server.sipp(
        "register", ["-sf", scenario, "-inf", str(users), "-m", "1", "-p", str(agent_port)]
    )
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http,
        http.post(f"{server.api}/api/agents/alice/login") as reply,
    ):
        assert reply.status == 202
    await asyncio.to_thread(speaking_caller, tmp_path / "speaker")

    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        agent = agent_phone(server.address, agent_port, tmp_path)
        queue_call = ["-sf", str(SCENARIOS / "uac_queue_talk.xml"), "-s", "100", "-m", "1"]
        speech_call = ["-sf", str(SCENARIOS / "uac_speak_await_bye.xml"), "-s", "200"]
        early_hang_up = ["-sf", str(SCENARIOS / "uac_ivr_hangup.xml"), "-s", "300", "-m", "1"]
        await asyncio.gather(
            server.sipp("queue-caller", [*queue_call, "-d", "6000"]),  # time to ring the agent
            server.sipp("speaker", [*speech_call, "-m", "1"]),
            server.sipp("hangs-up", early_hang_up),
        )
        await phone_done(agent)
        await server.calls_ended(3)
        # Transactions, timers and the calls' last tasks finish within a few seconds.
        await asyncio.sleep(3.0)
        garbage = cyclic_garbage_of_ours()
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    # The calls went where they should: keys in the sales line, speech (or the keys after it)
    # in the speaking caller's menu; the agent's phone was rung and answered (phone_done).
    answered = {(i.tree_id, i.kind) for i in server.inputs if i.outcome == "accepted"}
    assert ("test_line", "dtmf") in answered
    assert answered & {("speech_line", "speech"), ("speech_line", "dtmf")}
    assert not garbage, f"objects left in reference cycles by the calls: {dict(garbage)}"
