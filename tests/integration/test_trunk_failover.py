"""A carrier with two edges found by DNS SRV (RFC 3263): the first answers 503, the call goes out
through the second.

The telephony service runs in the test's event loop; its trunk names the carrier by a DNS name
with no port, so the server asks SRV records of a small DNS server of the test's own on
127.0.0.1. Both edges are SIPp on 127.0.0.1: the preferred one (lower SRV priority) answers
503 Service Unavailable, the other is SIPp's stock ``uas``, which answers and waits for BYE.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config.loader import default_config_dir, load_configuration
from telephony.calls import Call
from telephony.events import CallOutFailure, TrunkLegAnswered, TrunkLegFailed
from telephony.service import TelephonyService
from telephony.sip.resolver import SipResolver
from tests.integration.peers import SCENARIOS, free_port, write_server_config
from tests.sip.test_trunk_dns import Zone

pytestmark = [pytest.mark.peer, pytest.mark.timeout(60)]

TRUNKS = """\
default_outbound: carrier
trunks:
  - id: local-test
    sources: [127.0.0.0/8]
  - id: carrier
    sources: [192.0.2.1/32]
    outbound:
      host: carrier.test
      transport: udp
"""


def edge(scenario: list[str], port: int, workdir: Path) -> subprocess.Popen[str]:
    """One of the carrier's edges: SIPp on ``port`` taking one call."""
    workdir.mkdir(parents=True)
    command = [
        shutil.which("sipp") or "sipp",
        *scenario,
        *("-i", "127.0.0.1", "-p", str(port), "-mp", str(free_port())),
        *("-m", "1", "-nostdin", "-trace_err", "-timeout", "40s", "-timeout_error"),
    ]
    return subprocess.Popen(
        command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[TelephonyService, list[object]]]:
    config_dir = tmp_path / "conf"
    shutil.copytree(default_config_dir(), config_dir)
    write_server_config(config_dir, free_port())
    (config_dir / "trunks.yaml").write_text(TRUNKS)
    events: list[object] = []
    running = TelephonyService(load_configuration(config_dir), publish=events.append)
    await running.start()
    yield running, events
    await running.stop(1.0)


async def test_a_carrier_edge_answering_503_gives_way_to_the_next_srv_target(
    service: tuple[TelephonyService, list[object]], tmp_path: Path
) -> None:
    running, events = service
    first, second = free_port(), free_port()
    records = {
        ("_sip._udp.carrier.test", "SRV"): [
            f"10 0 {first} edge1.carrier.test.",
            f"20 0 {second} edge2.carrier.test.",
        ],
        ("edge1.carrier.test", "A"): ["127.0.0.1"],
        ("edge2.carrier.test", "A"): ["127.0.0.1"],
    }
    loop = asyncio.get_running_loop()
    transport, zone = await loop.create_datagram_endpoint(
        lambda: Zone(records), local_addr=("127.0.0.1", 0)
    )
    running.control.resolver = SipResolver(
        nameservers=[("127.0.0.1", transport.get_extra_info("sockname")[1])], lifetime=2.0
    )
    unavailable = edge(["-sf", str(SCENARIOS / "carrier_unavailable.xml")], first, tmp_path / "a")
    answering = edge(["-sn", "uas"], second, tmp_path / "b")
    try:
        outcome = await running.call_out("0049301234567", ring_timeout=15)
        assert isinstance(outcome, Call), outcome
        outcome.hangup()
        codes = await asyncio.gather(
            asyncio.to_thread(unavailable.wait, 30), asyncio.to_thread(answering.wait, 30)
        )
    finally:
        transport.close()
        for process in (unavailable, answering):
            if process.poll() is None:
                process.kill()
    assert list(codes) == [0, 0], [p.communicate()[1][-2000:] for p in (unavailable, answering)]
    assert ("_sip._udp.carrier.test", "SRV") in zone.asked
    (failed,) = [e for e in events if isinstance(e, TrunkLegFailed)]
    (answered,) = [e for e in events if isinstance(e, TrunkLegAnswered)]
    assert failed.reason is CallOutFailure.UNREACHABLE and failed.status == 503
    assert answered.leg_id != failed.leg_id and answered.trunk_id == "carrier"
