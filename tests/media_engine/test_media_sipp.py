"""Media through the telephony service with SIPp as the caller, on 127.0.0.1.

The service runs in the test's event loop (so the test can give it a call handler and read its
events); SIPp runs as a separate process.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from config.loader import default_config_dir, load_configuration
from telephony.media.calls import MediaCall
from telephony.media.events import DigitReceived, MediaLegClosed, MediaSourceLocked
from telephony.rtp.g711 import encode_ulaw
from telephony.service import TelephonyService
from tests.integration.peers import SCENARIOS, SippResult, free_port, run_sipp, write_server_config
from tests.media_engine.media_helpers import tone
from tests.media_engine.udp_peer import UdpPeer

pytestmark = [pytest.mark.peer, pytest.mark.timeout(60)]

SIPP_PCAPS = Path("/usr/share/sip-tester")


@dataclass
class Server:
    service: TelephonyService
    events: list[object]
    address: str


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    config_dir = tmp_path / "conf"
    shutil.copytree(default_config_dir(), config_dir)
    port = free_port()
    # A private RTP range: other programs on this machine may use the default one.
    # write_server_config gives the node a private RTP range below the ephemeral ports.
    write_server_config(config_dir, port)
    events: list[object] = []
    service = TelephonyService(load_configuration(config_dir), publish=events.append)
    await service.start()
    yield Server(service, events, f"127.0.0.1:{port}")
    await service.stop(1.0)


async def sipp(server: Server, args: Sequence[str], workdir: Path) -> SippResult:
    result = await asyncio.to_thread(run_sipp, server.address, args, workdir)
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.file('_errors.log')[-2000:]}"
    return result


def pcap_dir(workdir: Path, *names: str) -> None:
    (workdir / "pcap").mkdir(parents=True)
    for name in names:
        shutil.copy(SIPP_PCAPS / name, workdir / "pcap" / name)


async def wait_for(events: list[object], kind: type, count: int = 1) -> list[object]:
    for _ in range(200):
        found = [e for e in events if isinstance(e, kind)]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    return [e for e in events if isinstance(e, kind)]


async def test_pcap_audio_from_sipp_is_received_without_loss(
    server: Server, tmp_path: Path
) -> None:
    workdir = tmp_path / "sipp"
    # SIPp's stock uac_pcap plays 7 s of A-law speech, then the key 1 as telephone-events.
    pcap_dir(workdir, "g711a.pcap", "dtmf_2833_1.pcap")
    await sipp(server, ["-sn", "uac_pcap", "-m", "1", "-s", "100"], workdir)
    closed = await wait_for(server.events, MediaLegClosed)
    assert len(closed) == 1
    leg = closed[0]
    assert isinstance(leg, MediaLegClosed)
    # 236 audio packets and 10 telephone-event packets (two are retransmissions of the end).
    assert leg.packets_received >= 240
    assert leg.packets_lost == 0
    # The key's stream has its own SSRC: its first packet is held back until the new source is
    # confirmed (RFC 3550 §A.1), and the key is still reported, once.
    assert leg.dropped <= 1
    assert [e.digit for e in server.events if isinstance(e, DigitReceived)] == ["1"]
    locked = [e for e in server.events if isinstance(e, MediaSourceLocked)]
    assert len(locked) == 1 and not locked[0].latched  # SIPp sends from its SDP address


async def test_rfc4733_digits_from_sipp_are_detected_exactly_once(
    server: Server, tmp_path: Path
) -> None:
    collected: list[str] = []

    async def handler(call: MediaCall) -> None:
        result = await call.collect_digits(8, terminator="#", first_timeout=5)
        collected.append(result.digits + "|" + result.reason)

    server.service.call_handler = handler
    workdir = tmp_path / "sipp"
    pcap_dir(workdir, *(f"dtmf_2833_{key}.pcap" for key in ("1", "2", "3", "pound")))
    await sipp(
        server, ["-sf", str(SCENARIOS / "uac_dtmf_pcap.xml"), "-m", "1", "-s", "100"], workdir
    )
    digits = await wait_for(server.events, DigitReceived, 4)
    assert [(e.digit, e.source) for e in digits] == [  # type: ignore[attr-defined]
        ("1", "rfc4733"),
        ("2", "rfc4733"),
        ("3", "rfc4733"),
        ("#", "rfc4733"),
    ]
    assert all(e.duration_ms == 280 for e in digits)  # type: ignore[attr-defined]
    assert collected == ["123|terminator"]


async def test_prompt_played_by_the_server_reaches_the_caller_paced(
    server: Server, tmp_path: Path
) -> None:
    receiver = await UdpPeer.open()
    prompt = tuple(
        encode_ulaw(tone(400 + 20 * index)) for index in range(50)
    )  # one second, every frame different

    async def handler(call: MediaCall) -> None:
        await call.play([prompt])
        call.hangup()

    server.service.call_handler = handler
    scenario = str(SCENARIOS / "uac_media_port.xml")
    args = ["-sf", scenario, "-m", "1", "-s", "100", "-set", "rtp_port", str(receiver.address[1])]
    try:
        await sipp(server, args, tmp_path / "sipp")
    finally:
        receiver.close()
    packets = receiver.packets()
    assert [p.payload for p in packets] == list(prompt)
    assert packets[0].marker and {p.payload_type for p in packets} == {0}
    gaps = np.diff([t for t, _ in receiver.arrivals])
    assert float(np.mean(gaps)) == pytest.approx(0.020, abs=0.002)
    assert float(np.percentile(np.abs(gaps - 0.020), 95)) < 0.008
    assert server.service.ports.available == server.service.ports.capacity  # port released
