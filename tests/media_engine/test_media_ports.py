"""RTP ports held by other programs: calls get the rest of a small range, 503 only when it is full.

The telephony service runs in the test's event loop with a range of 100 pairs; sockets of the
test stand for the other programs; SIPp places the calls on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from config.loader import default_config_dir, load_configuration
from telephony.service import TelephonyService
from tests.integration.peers import SippResult, free_port, run_sipp, write_server_config

pytestmark = [pytest.mark.peer, pytest.mark.timeout(60)]

PAIRS = 100


@pytest.fixture
def base() -> int:
    # Below the kernel's ephemeral ports (32768 up) and above the shipped 20000-29999 range, so
    # that as few other programs as possible hold ports in it.
    return random.randrange(30000, 32768 - 2 * PAIRS, 2)


@pytest.fixture
async def service(tmp_path: Path, base: int) -> AsyncIterator[tuple[TelephonyService, str]]:
    config_dir = tmp_path / "conf"
    shutil.copytree(default_config_dir(), config_dir)
    port = free_port()
    write_server_config(
        config_dir, port, {"rtp": {"port_min": base, "port_max": base + 2 * PAIRS - 1}}
    )
    service = TelephonyService(load_configuration(config_dir))
    await service.start()
    yield service, f"127.0.0.1:{port}"
    await service.stop(1.0)


@pytest.fixture
def occupied() -> Iterator[dict[int, socket.socket]]:
    """Sockets standing for other programs, by port; closed at the end."""
    sockets: dict[int, socket.socket] = {}
    yield sockets
    for sock in sockets.values():
        sock.close()


def occupy(sockets: dict[int, socket.socket], port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sockets[port] = sock


async def call(address: str, workdir: Path) -> SippResult:
    """One call with SIPp's stock UAC: INVITE, 200, ACK, a short pause, BYE."""
    return await asyncio.to_thread(
        run_sipp, address, ["-sn", "uac", "-m", "1", "-d", "300"], workdir
    )


async def test_calls_get_the_ports_other_programs_leave_free(
    service: tuple[TelephonyService, str],
    occupied: dict[int, socket.socket],
    base: int,
    tmp_path: Path,
) -> None:
    telephony, address = service
    # The first 90 pairs are held elsewhere: the RTP port of some, the RTCP port of others.
    for pair in range(90):
        occupy(occupied, base + 2 * pair + pair % 2)
    ports = telephony.ports
    failures = []
    for number in range(3):
        result = await call(address, tmp_path / f"call{number}")
        assert result.returncode == 0, result.stdout[-2000:]
        failures.append(ports.bind_failures)
    # The first call found the taken pairs (any other program's too), one failed bind each;
    # the second and third skipped them.
    assert failures[0] >= 90 and failures[2] == failures[0]
    assert ports.refused == 0


async def test_a_range_truly_full_is_refused_with_503_until_a_port_comes_free(
    service: tuple[TelephonyService, str],
    occupied: dict[int, socket.socket],
    base: int,
    tmp_path: Path,
) -> None:
    telephony, address = service
    for pair in range(PAIRS):
        occupy(occupied, base + 2 * pair)
    refused = await call(address, tmp_path / "refused")
    assert refused.returncode != 0
    assert "503" in refused.stdout + refused.file("_errors.log")
    assert telephony.ports.refused == 1 and telephony.ports.bind_failures >= PAIRS
    # The other program lets one port go; a second on, the allocator tries the taken ports again.
    occupied.pop(base + 2 * 70).close()
    await asyncio.sleep(telephony.ports.retry_exhausted_after + 0.1)
    result = await call(address, tmp_path / "accepted")
    assert result.returncode == 0, result.stdout[-2000:]
