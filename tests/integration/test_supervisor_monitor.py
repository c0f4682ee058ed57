"""A supervisor listens to, whispers into and barges in on a live call through the API, with real
phones on every side of it.

Each party sends a tone of its own frequency, so that what each phone received tells who it
heard: the caller 500 Hz, the agent (PyVoIP, alice) 750 Hz, the supervisor (baresip, bob's
phone) 2,500 Hz. The caller is a second baresip dialling the server as a trunk caller, because
what a caller hears must be measured at the caller: baresip writes what it decodes to a WAV
file. A second test has the SIPp caller play the speech of SIPp's ``g711a.pcap`` to a SIPp agent
phone that echoes whatever it hears: the supervisor hears the call, and hears its own tone come
back from that echo only once it whispers to the agent.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from pyVoIP.VoIP import PhoneStatus

from telephony.rtp.g711 import Law, decode_alaw
from tests.integration.contact_center import (
    SUPERVISOR_TOKEN,
    ContactCenter,
    phone_done,
    running_center,
    settle,
    start,
)
from tests.integration.e2e_peers import (
    BARESIP_HZ,
    CALLER_HZ,
    PYVOIP_HZ,
    SOUND_RMS,
    PyvoipAgent,
    pyvoip_agent,
    tone,
    wait_until_true,
    wav_channels,
    write_wav,
)
from tests.integration.rtp_pcap import RtpStream, write_pcap
from tests.integration.softphones import Baresip, account_line, baresip_phone, wait_for_status

pytestmark = [pytest.mark.peer, pytest.mark.timeout(150)]

#: The supervisor's tone: far above the others, and above most of the energy of speech.
SUPERVISOR_HZ = 2500.0
#: Sales for alice alone; bob (the supervisor) is never offered the call.
QUEUES = """\
queues:
  sales:
    skills: {sales: 3}
    timeout: 15
    wrapuptime: 5
  support:
    skills: {support: 3}
  billing:
    skills: {billing: 3}
"""
#: Number 200 goes straight to the sales queue.
DIRECT_LINE_DIALPLAN = (
    'numbers:\n  "100": {ivr: test_line}\n  "200": {queue: sales}\n  "*": {ivr: main}\n'
)
#: Seconds of a tone a phone must hear before the test moves on.
HEARD = 1.5
SIPP_PCAPS = Path("/usr/share/sip-tester")
#: Seconds of audio a phone may still play out from before a change it was told of.
IN_FLIGHT = 0.3


# --- what a phone heard --------------------------------------------------------------------------


def tone_present_seconds(samples: npt.NDArray[np.float64], rate: int, frequency: float) -> float:
    """Seconds of 20 ms frames that are sound and carry `frequency` at a quarter or more of the
    amplitude of their strongest component (a tone in a mix of two is found, not just the
    loudest one)."""
    size = rate // 50
    frames = samples[: len(samples) // size * size].reshape(-1, size)
    frames = frames[np.sqrt(np.mean(frames**2, axis=1)) > SOUND_RMS]
    if not len(frames):
        return 0.0
    spectra = np.abs(np.fft.rfft(frames * np.hanning(size), axis=1))
    index = int(np.argmin(np.abs(np.fft.rfftfreq(size, 1 / rate) - frequency)))
    level = spectra[:, index - 1 : index + 2].max(axis=1)  # the window spreads a tone over 3 bins
    return float(np.count_nonzero(level >= 0.25 * spectra.max(axis=1))) / 50


def sound_seconds(samples: npt.NDArray[np.float64], rate: int) -> float:
    size = rate // 50
    frames = samples[: len(samples) // size * size].reshape(-1, size)
    return float(np.count_nonzero(np.sqrt(np.mean(frames**2, axis=1)) > SOUND_RMS)) / 50


@dataclass
class Heard:
    """What one phone received: all of it so far, or from a mark on."""

    samples: Callable[[], tuple[npt.NDArray[np.float64], int]]
    """Everything received so far, and its sample rate."""

    def mark(self) -> int:
        return len(self.samples()[0])

    def since(self, mark: int, frequency: float, settle: float = 0.0) -> float:
        """Seconds of `frequency` heard after `mark`, leaving out the first `settle` seconds
        (audio that was on its way, in the network and the phone's jitter buffer, at the mark)."""
        samples, rate = self.samples()
        return tone_present_seconds(samples[mark + round(settle * rate) :], rate, frequency)

    def sound_since(self, mark: int) -> float:
        samples, rate = self.samples()
        return sound_seconds(samples[mark:], rate)


def dump(phone: Baresip) -> tuple[npt.NDArray[np.float64], int]:
    """What a baresip phone decoded so far (its ``sndfile`` dump of the call)."""
    found = sorted((phone.log_path.parent / "dumps").glob("dump-*-dec.wav"))
    channels, rate = wav_channels(found[-1]) if found else ([], 8000)
    return (channels[0] if channels else np.zeros(0)), rate


def heard_by_baresip(phone: Baresip) -> Heard:
    return Heard(lambda: dump(phone))


def heard_by_pyvoip(agent: PyvoipAgent) -> Heard:
    return Heard(lambda: (agent.heard_audio(), 8000))


# --- the phones ---------------------------------------------------------------------------------


@contextmanager
def baresip_with_tone(directory: Path, frequency: float) -> Iterator[Baresip]:
    """A baresip phone sending `frequency`, keeping what it hears in ``directory/dumps``."""
    directory.mkdir(parents=True)
    sound = write_wav(directory.parent / f"{directory.name}.wav", tone(frequency, 150))
    dumps = directory / "dumps"
    dumps.mkdir()
    with baresip_phone(directory, audio_file=sound, dump_dir=dumps) as phone:
        yield phone


async def register_supervisor(center: ContactCenter, phone: Baresip, user: str = "1002") -> None:
    """A baresip phone (bob's unless `user` says), registered and answering by itself; its agent
    stays logged out of the queues."""
    line = account_line(user, f"change-me-{user}", center.server.port, auto_answer=True)
    assert phone.command("uanew", line)["ok"]
    event = await asyncio.to_thread(phone.wait_event, ("REGISTER_OK", "REGISTER_FAIL"))
    assert event is not None and event["type"] == "REGISTER_OK", phone.log()[-2000:]


async def pyvoip_registered(agent: PyvoipAgent) -> None:
    assert agent.phone is not None
    settled = (PhoneStatus.REGISTERED, PhoneStatus.FAILED)
    assert await asyncio.to_thread(wait_for_status, agent.phone, settled) is PhoneStatus.REGISTERED


def dial_sales_line(caller: Baresip, port: int) -> None:
    """A trunk caller (no registration) dials 200, the sales line."""
    line = f"<sip:5551234@127.0.0.1:{port};transport=udp>;regint=0"
    assert caller.command("uanew", line)["ok"]
    assert caller.command("dial", f"sip:200@127.0.0.1:{port}")["ok"]


async def monitor(center: ContactCenter, call_id: str, mode: str, supervisor: str = "bob") -> None:
    status, body = await center.post(
        f"/api/calls/{call_id}/monitor", {"mode": mode, "agent_id": supervisor}
    )
    assert (status, body.get("mode")) == (202, mode), body


async def end_monitor(center: ContactCenter, call_id: str) -> tuple[int, dict[str, Any]]:
    """``DELETE /api/calls/{call_id}/monitor``: its status and JSON body."""
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}) as session,
        session.delete(f"{center.api}/api/calls/{call_id}/monitor") as response,
    ):
        return response.status, await response.json()


def start_with_direct_line(config_dir: Path, workdir: Path) -> ContactCenter:
    """The test contact center, with number 200 going straight to the sales queue."""
    return start(config_dir, workdir, QUEUES, dialplan_yaml=DIRECT_LINE_DIALPLAN)


async def whisper_reaches_the_agent_alone(
    center: ContactCenter,
    events: list[dict[str, Any]],
    call_id: str,
    supervisor_id: str,
    agent: Heard,
    customer: Heard,
    agent_also_hears: tuple[float, ...] = (),
) -> None:
    """`supervisor_id` whispers: the (PyVoIP) agent's phone hears the supervisor (and
    `agent_also_hears`); the caller hears the agent, never the supervisor."""
    await monitor(center, call_id, "whisper", supervisor_id)
    await settle(events, "call.monitor_changed", call_id=call_id, mode="whisper")
    marks = (agent.mark(), customer.mark())
    await wait_until_true(
        lambda: all(
            agent.since(marks[0], frequency) >= HEARD
            for frequency in (SUPERVISOR_HZ, *agent_also_hears)
        ),
        30,
        f"the agent hears {supervisor_id}'s whisper",
    )
    await wait_until_true(
        lambda: customer.since(marks[1], PYVOIP_HZ) >= HEARD, 30, "the caller hears the agent"
    )
    assert customer.since(marks[1], SUPERVISOR_HZ) == 0.0


# --- listen, whisper, barge: who hears whom ------------------------------------------------------


async def test_listen_whisper_barge_each_phone_hears_whom_its_mode_says(
    config_dir: Path, tmp_path: Path
) -> None:
    center = await asyncio.to_thread(start_with_direct_line, config_dir, tmp_path)
    try:
        with (
            pyvoip_agent(center.server.port, "1001", "change-me-1001") as alice,
            baresip_with_tone(tmp_path / "bob", SUPERVISOR_HZ) as bob,
            baresip_with_tone(tmp_path / "caller", CALLER_HZ) as caller,
        ):
            await run_modes(center, alice, bob, caller)
    finally:
        code = await asyncio.to_thread(center.stop)
    assert code == 0, f"server exited with {code}:\n{center.server.log()[-4000:]}"


async def run_modes(
    center: ContactCenter, alice: PyvoipAgent, bob: Baresip, caller: Baresip
) -> None:
    port = center.server.port
    await pyvoip_registered(alice)
    await register_supervisor(center, bob)
    agent, supervisor, customer = (
        heard_by_pyvoip(alice),
        heard_by_baresip(bob),
        heard_by_baresip(caller),
    )

    async with center.event_stream() as events:
        # The caller waits: alice is logged out.
        dial_sales_line(caller, port)
        (queued,) = await settle(events, "queue.joined", queue_id="sales", within=30)
        call_id = queued["call_id"]
        status, body = await center.post(
            f"/api/calls/{call_id}/monitor", {"mode": "listen", "agent_id": "bob"}
        )
        assert (status, body["error"]) == (409, "wrong_state"), body  # no agent on it yet

        # Alice logs in, and her phone answers.
        status, _ = await center.post("/api/agents/alice/login")
        assert status == 202
        await settle(events, "agent.answered", agent_id="alice", call_id=call_id, within=30)
        await wait_until_true(lambda: agent.since(0, CALLER_HZ) >= HEARD, 30, "alice hears caller")
        status, body = await center.post(
            f"/api/calls/{call_id}/monitor", {"mode": "listen", "agent_id": "carol"}
        )
        assert (status, body["error"]) == (503, "unavailable"), body  # carol: no phone

        # Listen: bob hears the caller and alice; nobody hears bob.
        await monitor(center, call_id, "listen")
        (started,) = await settle(events, "call.monitor_started", call_id=call_id)
        assert (started["data"]["sip_user"], started["data"]["mode"]) == ("1002", "listen")
        marks = (agent.mark(), customer.mark())
        await wait_until_true(
            lambda: (
                supervisor.since(0, CALLER_HZ) >= HEARD and supervisor.since(0, PYVOIP_HZ) >= HEARD
            ),
            30,
            "bob hears the caller and alice",
        )
        assert agent.since(marks[0], SUPERVISOR_HZ) == 0.0
        assert customer.since(marks[1], SUPERVISOR_HZ) == 0.0
        assert customer.since(marks[1], PYVOIP_HZ) >= HEARD  # the call goes on as before

        # Whisper: alice hears bob over the caller; the caller still hears alice alone.
        await whisper_reaches_the_agent_alone(
            center, events, call_id, "bob", agent, customer, agent_also_hears=(CALLER_HZ,)
        )

        # Barge: the caller hears bob too.
        await monitor(center, call_id, "barge")
        await settle(events, "call.monitor_changed", call_id=call_id, mode="barge")
        mark = customer.mark()
        await wait_until_true(
            lambda: (
                customer.since(mark, SUPERVISOR_HZ) >= HEARD
                and customer.since(mark, PYVOIP_HZ) >= HEARD
            ),
            30,
            "the caller hears bob and alice",
        )

        # Bob hangs up: caller and alice are a plain call again.
        assert bob.command("hangup")["ok"]
        (ended,) = await settle(events, "call.monitor_ended", call_id=call_id)
        assert (ended["data"]["reason"], ended["data"]["mode"]) == ("supervisor", "barge")
        mark = customer.mark()
        await wait_until_true(
            lambda: customer.since(mark, PYVOIP_HZ) >= HEARD, 30, "the caller hears alice"
        )
        assert customer.since(mark, SUPERVISOR_HZ, settle=IN_FLIGHT) == 0.0

        # The caller hangs up; alice's phone gets the server's BYE.
        assert caller.command("hangup")["ok"]
        await settle(events, "call.ended", call_id=call_id)
        assert await asyncio.to_thread(alice.ended.wait, 10), "alice's call did not end"
    phases = [e["type"] for e in events if e["type"].startswith("call.monitor")]
    assert phases == [
        "call.monitor_started",
        "call.monitor_changed",
        "call.monitor_changed",
        "call.monitor_ended",
    ]


# --- the SIPp caller's speech, an echoing agent, and the end of the call ----------------------


def g711a_speech() -> npt.NDArray[np.int16]:
    """The speech of SIPp's ``g711a.pcap`` (A-law RTP in Ethernet/IPv4/UDP), decoded."""
    data = (SIPP_PCAPS / "g711a.pcap").read_bytes()
    offset, payload = 24, bytearray()  # the pcap global header
    while offset + 16 <= len(data):
        (length,) = struct.unpack_from("<I", data, offset + 8)
        frame = data[offset + 16 : offset + 16 + length]
        offset += 16 + length
        ip = frame[14:]
        udp = ip[(ip[0] & 0x0F) * 4 :]
        rtp = udp[8:]
        if len(rtp) > 12 and rtp[1] & 0x7F == Law.ALAW.payload_type:
            payload += rtp[12:]
    return decode_alaw(bytes(payload))


def write_speech_capture(path: Path, seconds: float) -> Path:
    """The caller's RTP: a second of silence, key 1 for the IVR menu, half a second of
    silence, then the speech of g711a.pcap over and over for `seconds`."""
    speech = g711a_speech()
    stream = RtpStream(Law.ALAW)
    packets = stream.silence(1.0)
    packets += stream.key("1")
    packets += stream.silence(0.5)
    packets += stream.audio(np.resize(speech, round(seconds * 8000)))
    write_pcap(path, packets)
    return path


@pytest.fixture
def center(config_dir: Path, tmp_path: Path) -> Iterator[ContactCenter]:
    with running_center(config_dir, tmp_path, QUEUES) as running:
        yield running


async def test_supervisor_hears_the_callers_speech_and_gets_bye_when_the_call_ends(
    center: ContactCenter, tmp_path: Path
) -> None:
    capture = write_speech_capture(tmp_path / "caller.pcap", 45)
    port = await center.register("1001", "change-me-1001")
    echo = center.phone("agent_answer.xml", port, "alice")  # echoes what it hears
    status, _ = await center.post("/api/agents/alice/login")
    assert status == 202
    with baresip_with_tone(tmp_path / "bob", SUPERVISOR_HZ) as bob:
        await register_supervisor(center, bob)
        supervisor = heard_by_baresip(bob)
        async with center.event_stream() as events:
            caller = asyncio.create_task(
                center.call("uac_key_talk_await_bye.xml", "100", 0, captures=[capture])
            )
            (answered,) = await settle(events, "agent.answered", agent_id="alice", within=30)
            call_id = answered["call_id"]
            await monitor(center, call_id, "listen")
            await settle(events, "call.monitor_started", call_id=call_id)

            # Listening, bob hears the caller's speech (and alice's echo of it), never himself.
            await wait_until_true(
                lambda: supervisor.sound_since(0) >= 3.0, 30, "bob hears the caller"
            )
            assert supervisor.since(0, SUPERVISOR_HZ) <= 0.1

            # Whispering, alice hears bob: her echo brings his own tone back to him.
            await monitor(center, call_id, "whisper")
            await settle(events, "call.monitor_changed", call_id=call_id)
            mark = supervisor.mark()
            await wait_until_true(
                lambda: supervisor.since(mark, SUPERVISOR_HZ) >= HEARD, 30, "alice hears bob"
            )

            # The supervisor's API hangs the call up: caller, alice and bob all get BYE.
            status, _ = await center.post(f"/api/calls/{call_id}/hangup")
            assert status == 202
            await caller
            await phone_done(echo)
            closed = await asyncio.to_thread(bob.wait_event, ("CALL_CLOSED",), 10)
            assert closed is not None, bob.log()[-2000:]
            (ended,) = await settle(events, "call.monitor_ended", call_id=call_id)
            assert (ended["data"]["reason"], ended["data"]["mode"]) == ("call_ended", "whisper")
            assert ended["data"]["monitor_seconds"] > 0


# --- a transfer: the supervisor follows the caller; the API takes the supervisor off ------------


async def test_the_supervisor_follows_the_caller_to_the_agent_they_are_transferred_to(
    config_dir: Path, tmp_path: Path
) -> None:
    center = await asyncio.to_thread(start_with_direct_line, config_dir, tmp_path)
    try:
        with (
            baresip_with_tone(tmp_path / "alice", BARESIP_HZ) as alice,
            pyvoip_agent(center.server.port, "1002", "change-me-1002") as bob,
            baresip_with_tone(tmp_path / "carol", SUPERVISOR_HZ) as carol,
            baresip_with_tone(tmp_path / "caller", CALLER_HZ) as caller,
        ):
            await run_transfer(center, alice, bob, carol, caller)
    finally:
        code = await asyncio.to_thread(center.stop)
    assert code == 0, f"server exited with {code}:\n{center.server.log()[-4000:]}"


async def run_transfer(
    center: ContactCenter, alice: Baresip, bob: PyvoipAgent, carol: Baresip, caller: Baresip
) -> None:
    """Alice (sales) takes the call, carol listens, alice's phone transfers the caller to bob
    (REFER); carol stays on and hears bob, whispers to him, and is taken off through the API."""
    port = center.server.port
    await register_supervisor(center, alice, "1001")
    await register_supervisor(center, carol, "1003")
    await pyvoip_registered(bob)
    for agent in ("alice", "bob"):  # bob has no sales skill: only the transfer reaches him
        status, _ = await center.post(f"/api/agents/{agent}/login")
        assert status == 202
    supervisor, customer, new_agent = (
        heard_by_baresip(carol),
        heard_by_baresip(caller),
        heard_by_pyvoip(bob),
    )

    async with center.event_stream() as events:
        dial_sales_line(caller, port)
        (answered,) = await settle(events, "agent.answered", agent_id="alice", within=30)
        call_id = answered["call_id"]
        await monitor(center, call_id, "listen", "carol")
        await settle(events, "call.monitor_started", call_id=call_id)
        await wait_until_true(
            lambda: supervisor.since(0, BARESIP_HZ) >= HEARD, 30, "carol hears alice"
        )

        # Alice's phone transfers the caller to bob; carol stays on the call, with bob.
        answer = await asyncio.to_thread(alice.command, "transfer", f"sip:1002@127.0.0.1:{port}")
        assert answer["ok"], answer
        (moved,) = await settle(events, "call.transferred", call_id=call_id, within=30)
        assert moved["data"]["succeeded"], moved
        await settle(events, "agent.answered", agent_id="bob", call_id=call_id)
        mark = supervisor.mark()
        await wait_until_true(
            lambda: (
                supervisor.since(mark, PYVOIP_HZ) >= HEARD
                and supervisor.since(mark, CALLER_HZ) >= HEARD
            ),
            30,
            "carol hears bob and the caller",
        )
        assert supervisor.since(mark, BARESIP_HZ, settle=IN_FLIGHT) == 0.0  # alice is gone
        call = await center.get(f"/api/calls/{call_id}")
        assert call["monitor"]["agent_id"] == "bob", call
        assert (call["monitor"]["supervisor_id"], call["monitor"]["mode"]) == ("carol", "listen")

        # Whispering reaches bob now, not the caller.
        await whisper_reaches_the_agent_alone(center, events, call_id, "carol", new_agent, customer)

        # The API takes carol off the call: her phone gets BYE, caller and bob talk on.
        status, body = await end_monitor(center, call_id)
        assert (status, body["action"]) == (202, "end_monitor"), body
        (ended,) = await settle(events, "call.monitor_ended", call_id=call_id)
        assert (ended["data"]["reason"], ended["data"]["mode"]) == ("server", "whisper")
        closed = await asyncio.to_thread(carol.wait_event, ("CALL_CLOSED",), 10)
        assert closed is not None, carol.log()[-2000:]
        status, body = await end_monitor(center, call_id)
        assert (status, body["error"]) == (409, "wrong_state"), body
        assert (await center.get(f"/api/calls/{call_id}"))["monitor"] is None

        assert caller.command("hangup")["ok"]
        await settle(events, "call.ended", call_id=call_id)
    phases = [e["type"] for e in events if e["type"].startswith("call.monitor")]
    assert phases == ["call.monitor_started", "call.monitor_changed", "call.monitor_ended"]
