"""Calls through the shipped default IVR tree: SIPp callers key RFC 4733 digits on 127.0.0.1.

The telephony service runs in the test's event loop with an IVR runner on every answered call
(the part of the composition root that matters here); prompts written as text are spoken by
the speech layer's text-to-speech (espeak-ng). SIPp runs as a separate process and plays the
telephone-event captures shipped with it.
Business hours are judged at a Tuesday morning in New York, whatever the time of the test.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from config.loader import Configuration, default_config_dir, load_configuration
from ivr.actions import EnqueueCall
from ivr.events import IvrEntered, IvrExited, IvrInput
from ivr.prompts import SpokenPrompts
from ivr.runner import IvrOutcome, IvrRunner, RunnerSettings
from speech.tts import PromptRenderer as TextToSpeech
from telephony.events import CallStarted
from telephony.media.calls import MediaCall
from telephony.media.events import DigitReceived
from telephony.rtp.g711 import Law
from telephony.service import TelephonyService
from tests.integration.peers import SCENARIOS, SippResult, free_port, run_sipp, write_server_config
from tests.integration.rtp_pcap import RtpStream, write_pcap
from tests.ivr.ivr_helpers import TUESDAY_MORNING

pytestmark = [pytest.mark.peer, pytest.mark.timeout(90)]

SIPP_PCAPS = Path("/usr/share/sip-tester")
_KEY_NAMES = {"*": "star", "#": "pound"}


def key_stream(folder: Path, keys: str) -> None:
    """Write SIPp's capture of each key as ``key_00.pcap``, ``key_01.pcap``... renumbered into
    one RFC 4733 event stream, as a phone sends it.

    The captures shipped with SIPp share one SSRC and were cut from a single 1-2-3-... stream:
    replayed out of that order (3, then 1) their sequence numbers go backwards and a receiver
    rightly drops them as late packets (RFC 3550 §A.1), and a key pressed twice would repeat its
    event timestamp (RFC 4733 §2.5.1.3: the same event). Each key gets fresh sequence numbers
    and its own timestamp here; the UDP checksum is cleared (optional over IPv4, RFC 768).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for index, key in enumerate(keys):
        capture = SIPP_PCAPS / f"dtmf_2833_{_KEY_NAMES.get(key, key)}.pcap"
        data = bytearray(capture.read_bytes())
        offset = 24  # pcap file header
        first_seq: int | None = None
        while offset < len(data):
            length = struct.unpack_from("<I", data, offset + 8)[0]
            packet = offset + 16
            ip = packet + 14  # Ethernet II header
            udp = ip + (data[ip] & 0x0F) * 4
            rtp = udp + 8
            seq = struct.unpack_from("!H", data, rtp + 2)[0]
            first_seq = seq if first_seq is None else first_seq
            struct.pack_into("!H", data, udp + 6, 0)
            struct.pack_into("!HI", data, rtp + 2, 1000 + 50 * index + seq - first_seq,
                             8000 + 16000 * index)  # fmt: skip
            offset = packet + length
        (folder / f"key_{index:02}.pcap").write_bytes(data)


class HeardPrompts:
    """The speech layer's text-to-speech (espeak-ng), remembering every text it was asked for."""

    def __init__(self, folder: Path) -> None:
        self._prompts = SpokenPrompts(TextToSpeech(folder))
        self.spoken: list[str] = []

    async def render(self, text: str, *, language: str) -> Path:
        self.spoken.append(text)
        return await self._prompts.render(text, language=language)


@dataclass
class Node:
    """The telephony service with an IVR on every answered call, as the application wires it."""

    service: TelephonyService
    configuration: Configuration
    renderer: HeardPrompts
    voicemail_dir: Path
    address: str
    events: list[object] = field(default_factory=list)
    outcomes: dict[str, IvrOutcome] = field(default_factory=dict)

    def reload(self, configuration: Configuration) -> None:
        self.configuration = configuration
        self.service.reconfigure(configuration)

    async def run_ivr(self, call: MediaCall) -> None:
        started = next(
            e for e in self.events if isinstance(e, CallStarted) and e.call_id == call.call_id
        )
        configuration = self.configuration  # the one in force when the call arrives
        entry = configuration.dialplan.entry_for(started.did)
        assert entry is not None and entry.ivr is not None
        runner = IvrRunner(
            configuration.ivr[entry.ivr],
            call,
            renderer=self.renderer,
            publish=self.events.append,
            settings=RunnerSettings(voicemail_dir=self.voicemail_dir),
            wall_clock=lambda: TUESDAY_MORNING,
        )
        outcome = await runner.run(caller_id=started.caller_id, dialed_number=started.did)
        self.outcomes[call.call_id] = outcome
        call.hangup()  # no ACD here: the call ends where the IVR sent it


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config_dir = tmp_path / "conf"
    shutil.copytree(default_config_dir(), config_dir)
    port = free_port()
    # A private RTP range: other programs on this machine may use the default one.
    # write_server_config gives the node a private RTP range below the ephemeral ports.
    write_server_config(config_dir, port)
    configuration = load_configuration(config_dir)
    events: list[object] = []
    service = TelephonyService(configuration, publish=events.append)
    node = Node(
        service=service,
        configuration=configuration,
        renderer=HeardPrompts(tmp_path / "tts"),
        voicemail_dir=tmp_path / "voicemail",
        address=f"127.0.0.1:{port}",
        events=events,
    )
    service.call_handler = node.run_ivr
    await service.start()
    yield node
    await service.stop(1.0)


def prepare_caller(workdir: Path, keys: str) -> None:
    """SIPp's own key captures, and ``keys`` as one event stream, in ``workdir/pcap``."""
    (workdir / "pcap").mkdir(parents=True, exist_ok=True)
    for capture in SIPP_PCAPS.glob("dtmf_2833_*.pcap"):
        shutil.copy(capture, workdir / "pcap" / capture.name)
    key_stream(workdir / "pcap", keys)


async def sipp(node: Node, scenario: str, workdir: Path, keys: str = "") -> SippResult:
    await asyncio.to_thread(prepare_caller, workdir, keys)
    args = ["-sf", str(SCENARIOS / scenario), "-m", "1", "-s", "100"]
    result = await asyncio.to_thread(run_sipp, node.address, args, workdir)
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.file('_errors.log')[-2000:]}"
    return result


def keys_capture(workdir: Path, keys: str, *, events: bool) -> None:
    """``pcap/keys.pcap``: ``keys`` as the keypad's tones in PCMU audio (with ``events``, each
    also sent as an RFC 4733 event), the line silent in between: paced as the RFC 4733 billing
    caller keys (1.5 s after the first key and before the last, 0.4 s between the others)."""
    (workdir / "pcap").mkdir(parents=True, exist_ok=True)
    stream = RtpStream(Law.ULAW)
    packets = []
    for index, key in enumerate(keys):
        if index:
            packets += stream.silence(1.5 if index in (1, len(keys) - 1) else 0.4)
        packets += stream.tones(key, events=events)
    packets += stream.silence(0.5)
    write_pcap(workdir / "pcap" / "keys.pcap", packets)


async def sipp_keys(
    node: Node, workdir: Path, keys: str, *, events: bool, offer_events: bool | None = None
) -> SippResult:
    """A caller who offers PCMU, with telephone-events or without them (``offer_events``, by
    default as ``events``), and plays ``keys`` (as tones, with ``events`` also as events)."""
    await asyncio.to_thread(keys_capture, workdir, keys, events=events)
    offered = events if offer_events is None else offer_events
    offer = ("0 101", "a=rtpmap:101 telephone-event/8000") if offered else ("0", "a=ptime:20")
    args = ["-sf", str(SCENARIOS / "uac_ivr_keys_pcap.xml"), "-m", "1", "-s", "100"]
    args += ["-set", "formats", offer[0], "-set", "extra", offer[1]]
    result = await asyncio.to_thread(run_sipp, node.address, args, workdir)
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.file('_errors.log')[-2000:]}"
    return result


def keyed_billing_and_account_123456(node: Node) -> IvrExited:
    """The call's walk through the menu for 3 (billing), 123456# and 1 (confirmed), each key
    taken once: where it left the IVR."""
    [exited] = exits(node)
    assert (exited.destination, exited.target) == ("queue", "billing")
    answers = [(e.node_id, e.digits, e.outcome) for e in node.events if isinstance(e, IvrInput)]
    assert answers == [
        ("main_menu", "3", "accepted"),
        ("account_number", "123456", "accepted"),
        ("account_number", "1", "accepted"),
    ]
    return exited


def digits(node: Node) -> list[tuple[str, str]]:
    return [(e.digit, e.source) for e in node.events if isinstance(e, DigitReceived)]


async def wait_for(events: list[object], kind: type, count: int = 1) -> list[object]:
    for _ in range(500):
        found = [e for e in events if isinstance(e, kind)]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    return [e for e in events if isinstance(e, kind)]


def exits(node: Node) -> list[IvrExited]:
    return [e for e in node.events if isinstance(e, IvrExited)]


async def test_pressing_1_in_the_main_menu_reaches_the_sales_queue(
    node: Node, tmp_path: Path
) -> None:
    await sipp(node, "uac_ivr_sales.xml", tmp_path / "sipp")
    [exited] = exits(node)
    assert (exited.destination, exited.target) == ("queue", "sales")
    assert exited.variables["caller_id"] == "5551234"
    assert exited.variables["department"] == "sales"
    assert exited.route == ("welcome", "business_hours", "identify_caller", "main_menu",
                            "sales_queue")  # fmt: skip
    outcome = node.outcomes[exited.call_id]
    assert isinstance(outcome.handoff, EnqueueCall) and outcome.handoff.queue == "sales"
    # The key came while the menu was being read out: it cut the greeting short.
    assert exited.seconds_in_ivr < 6.0
    assert node.renderer.spoken[0] == "Thank you for calling Acme."
    assert node.renderer.spoken[1].startswith("For sales, press 1 or say sales.")


async def test_pressing_3_and_an_account_number_reaches_the_billing_queue(
    node: Node, tmp_path: Path
) -> None:
    await sipp(node, "uac_ivr_billing.xml", tmp_path / "sipp", keys="3123456#1")
    exited = keyed_billing_and_account_123456(node)
    assert exited.variables["account_number"] == "123456"
    outcome = node.outcomes[exited.call_id]
    assert isinstance(outcome.handoff, EnqueueCall)
    assert outcome.handoff.attributes["account_number"] == "123456"
    assert "You entered 123456. If this is correct, press 1. To enter it again, press 2." in (
        node.renderer.spoken
    )


async def test_a_caller_hanging_up_during_the_welcome_leaves_the_ivr_abandoned(
    node: Node, tmp_path: Path
) -> None:
    await sipp(node, "uac_ivr_hangup.xml", tmp_path / "sipp")
    [exited] = await wait_for(node.events, IvrExited)
    assert isinstance(exited, IvrExited)
    assert (exited.destination, exited.target) == ("abandoned", "caller_hung_up")
    assert exited.seconds_in_ivr == pytest.approx(2.5, abs=1.0)


async def test_a_reload_during_a_call_does_not_change_the_tree_it_walks(
    node: Node, tmp_path: Path
) -> None:
    # The caller keys 1 three seconds in; meanwhile an admin sends sales calls to support.
    first = asyncio.create_task(sipp(node, "uac_ivr_sales.xml", tmp_path / "first"))
    entered = await wait_for(node.events, IvrEntered)
    assert len(entered) == 1, "the first call never reached the IVR"
    tree_file = node.configuration.directory / "ivr" / "main.yaml"
    text = tree_file.read_text(encoding="utf-8")
    sales = "      sales_queue:\n        type: queue\n        queue: sales\n"
    assert sales in text
    tree_file.write_text(text.replace(sales, sales.replace(": sales\n", ": support\n")), "utf-8")
    node.reload(load_configuration(node.configuration.directory))
    await first
    await sipp(node, "uac_ivr_sales.xml", tmp_path / "second")
    assert [(e.destination, e.target) for e in exits(node)] == [
        ("queue", "sales"),  # the call already in the tree finished on its version
        ("queue", "support"),  # the next call walks the new one
    ]


async def test_a_caller_without_telephone_events_keys_1_as_tones_and_reaches_sales(
    node: Node, tmp_path: Path
) -> None:
    # The shipped trunk's dtmf is auto: an offer without telephone-event means tones.
    await sipp_keys(node, tmp_path / "sipp", "1", events=False)
    [exited] = exits(node)
    assert (exited.destination, exited.target) == ("queue", "sales")
    assert digits(node) == [("1", "inband")]


async def test_keys_sent_both_as_events_and_as_tones_count_once(node: Node, tmp_path: Path) -> None:
    # A gateway that negotiates telephone-events but leaves the tones in the audio too: each
    # key is taken from its events alone, so the account number is not typed twice over.
    await sipp_keys(node, tmp_path / "sipp", "3123456#1", events=True)
    keyed_billing_and_account_123456(node)
    assert digits(node) == [(key, "rfc4733") for key in "3123456#1"]


async def test_a_trunk_set_to_inband_hears_tones_from_a_gateway_that_negotiated_events(
    node: Node, tmp_path: Path
) -> None:
    # A gateway that offers telephone-events and then sends the keys as tones: in auto they
    # would go unheard; the trunk's dtmf: inband listens to the audio whatever was negotiated.
    trunks = node.configuration.directory / "trunks.yaml"
    text = trunks.read_text(encoding="utf-8")
    limit = "    max_calls_per_second: 500\n"
    assert limit in text
    trunks.write_text(text.replace(limit, limit + "    dtmf: inband\n", 1), "utf-8")
    node.reload(load_configuration(node.configuration.directory))
    await sipp_keys(node, tmp_path / "sipp", "1", events=False, offer_events=True)
    [exited] = exits(node)
    assert (exited.destination, exited.target) == ("queue", "sales")
    assert digits(node) == [("1", "inband")]
