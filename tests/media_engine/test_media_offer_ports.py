"""The RTP port of an SDP offer is bound from the moment it is offered until the call fails.

`reserve_ports` on its own, then the telephony service ringing a SIPp agent phone on 127.0.0.1
that never answers: while it rings, no other program can bind the offered pair; once the server
gave up, the pair is free again and back in the range.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from pathlib import Path

import pytest

from telephony.calls import RingFailure
from telephony.media.runner import MediaRunner, reserve_ports
from telephony.rtp.g711 import Law
from telephony.rtp.ports import PortRangeExhaustedError, RtpPortAllocator
from tests.integration.test_calls_originate import (
    Node,
    agent_phone,
    finished,
    node,  # noqa: F401  (the fixture: the same test server)
    register_agent,
)
from tests.media_engine.udp_peer import free_rtp_port

HOST = "127.0.0.1"


def bind_error(port: int) -> int | None:
    """The errno another program gets binding `port` over UDP, None if it can."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        try:
            other.bind((HOST, port))
        except OSError as exc:
            return exc.errno
    return None


async def test_reserved_ports_are_held_until_the_leg_or_the_reservation_lets_go() -> None:
    base = free_rtp_port()
    ports = RtpPortAllocator(first_port=base, last_port=base + 1)
    bound = reserve_ports(ports, HOST, now=0.0)
    assert bound.port == base and ports.in_use == {base}
    assert bind_error(base) == bind_error(base + 1) == errno.EADDRINUSE
    with pytest.raises(PortRangeExhaustedError):
        reserve_ports(ports, HOST, now=0.0)
    assert ports.refused == 1
    # The leg opened on the reservation receives on exactly those sockets.
    runner = MediaRunner()
    try:
        await runner.open_leg(
            "c1",
            local=bound,
            law=Law.ULAW,
            payload_type=0,
            event_payload_type=None,
            remote=(HOST, 9),
        )
        assert runner.local_address("c1")[1] == base
        runner.close_leg("c1")
        await asyncio.sleep(0)  # the transports close their sockets on the next loop turn
    finally:
        await runner.close()
    ports.release(base)
    assert bind_error(base) is None and bind_error(base + 1) is None
    # A reservation never used is let go by closing it.
    again = reserve_ports(ports, HOST, now=1.0)
    again.close()
    again.close()  # idempotent
    assert bind_error(base) is None


def test_a_port_held_elsewhere_is_skipped_and_counted() -> None:
    base = free_rtp_port()
    ports = RtpPortAllocator(first_port=base, last_port=base + 3)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind((HOST, base + 1))  # the first pair's RTCP port
        bound = reserve_ports(ports, HOST, now=0.0)
        try:
            assert bound.port == base + 2
            assert ports.bind_failures == 1 and ports.unavailable == 1
            assert bind_error(base) is None  # the half it did bind was let go
        finally:
            bound.close()


@pytest.mark.peer
@pytest.mark.timeout(60)
@pytest.mark.parametrize("ending", ["no answer", "withdrawn"])
async def test_an_offered_port_is_bound_while_the_agent_rings_and_freed_after(
    node: Node,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    ending: str,
) -> None:
    service = node.service
    phone_port = await register_agent(node, tmp_path / "register")
    phone = agent_phone(node, "agent_no_answer.xml", phone_port, tmp_path / "agent")
    try:
        ringing = asyncio.create_task(service.originate("1001", ring_timeout=2.0))
        await asyncio.sleep(0)  # the task runs up to the INVITE: port taken, offer made
        (offered,) = service.ports.in_use
        # Another program asking for the offered pair now is refused: the server holds it.
        assert bind_error(offered) == errno.EADDRINUSE
        assert bind_error(offered + 1) == errno.EADDRINUSE
        if ending == "no answer":
            assert await ringing is RingFailure.NO_ANSWER
        else:  # the caller hung up, or the ACD offered the call elsewhere
            await asyncio.sleep(0.3)
            ringing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await ringing
        await finished(phone)  # CANCEL, 487, ACK
    finally:
        if phone.poll() is None:
            phone.kill()
    assert service.ports.in_use == frozenset()
    assert service.ports.available == service.ports.capacity
    assert bind_error(offered) is None and bind_error(offered + 1) is None
