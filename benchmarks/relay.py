"""Micro-benchmark of the media engine's own work per relayed RTP packet, with no sockets.

Two legs bridged in one `MediaEngine` (the sans-IO core under `MediaRunner`); each timed step
hands one datagram of a settled 20 ms stream to `MediaEngine.receive` and gets the packet to
send on the other leg. Cases:

- the relay fast path (`MediaLeg.relay_next`: restamped with one header read, no packet object),
  both legs PCMU, and PCMU to PCMA (one `bytes.translate` per payload);
- the same fast path with 500 bridged calls taking turns, one packet per leg in each 20 ms, as
  a server sees them: each step touches another leg's state, which is no longer in the
  processor's caches (what the per-leg objects' size and layout cost);
- the general path (parse into an `RtpPacket`, statistics, restamp), with the fast path declined;
- opening and closing one leg in the engine (its state, not its sockets).

    python benchmarks/relay.py [--number N]

Prints microseconds per step (best of five runs) and the machine. The socket read and send
around each packet are measured by ``media.py``.
"""

from __future__ import annotations

import argparse
import random
import sys
import timeit
from collections.abc import Callable

from machine import this_machine

from telephony.media.engine import MediaEngine
from telephony.media.leg import MediaLeg
from telephony.rtp.g711 import Law
from telephony.rtp.packet import build_header

CALLER = ("192.0.2.10", 40000)
AGENT = ("192.0.2.20", 42000)
FRAME = 0.020
EVENT_PAYLOAD_TYPE = 101


def _open(engine: MediaEngine, call_id: str, law: Law, remote: tuple[str, int]) -> None:
    engine.open_leg(
        call_id,
        law=law,
        payload_type=0 if law is Law.ULAW else 8,
        event_payload_type=EVENT_PAYLOAD_TYPE,
        remote=remote,
        now=0.0,
    )


class _GeneralPathOnly(MediaLeg):
    """A leg whose fast path declines every datagram."""

    __slots__ = ()

    def relay_next(self, *_: object) -> bytes | None:
        return None


def _bridged(agent_law: Law, *, fast: bool) -> MediaEngine:
    engine = MediaEngine(origin=0.0, rng=random.Random(1))
    _open(engine, "caller", Law.ULAW, CALLER)
    _open(engine, "agent", agent_law, AGENT)
    engine.bridge("caller", "agent")
    if not fast:
        engine.leg("caller").__class__ = _GeneralPathOnly
    return engine


Sender = tuple[str, tuple[str, int]]
"""A leg's call id and the address its datagrams come from."""


def _in_turn(
    engine: MediaEngine, senders: list[Sender], number: int, settle: int
) -> Callable[[], None]:
    """A step that hands the next sender's next datagram to the engine: every sender in turn,
    one 20 ms stream each (never repeating), after ``settle`` rounds that lock the sources and
    validate the SSRCs."""
    rounds = 6 * number // len(senders) + settle + 1  # five timed runs and a warm-up
    datagrams = [
        build_header(0, n == 0, n & 0xFFFF, (160 * n) & 0xFFFFFFFF, 0x1234) + bytes(160)
        for n in range(rounds)
    ]
    position = 0

    def step() -> None:
        nonlocal position
        call_id, source = senders[position % len(senders)]
        round_number = position // len(senders)
        datagram = datagrams[round_number]
        if engine.receive(call_id, datagram, source, round_number * FRAME) is None:
            raise RuntimeError(f"datagram {round_number} of {call_id} was not relayed")
        position += 1

    for _ in range(settle * len(senders)):
        step()
    return step


def relay_step(agent_law: Law, number: int, *, fast: bool) -> Callable[[], None]:
    """One caller datagram per step, 20 ms after the previous one."""
    return _in_turn(_bridged(agent_law, fast=fast), [("caller", CALLER)], number, number // 10)


def relay_many_step(calls: int, number: int) -> Callable[[], None]:
    """Every leg of ``calls`` bridged calls sends one datagram in turn, then the next round."""
    engine = MediaEngine(origin=0.0, rng=random.Random(1))
    legs: list[Sender] = []
    for call in range(calls):
        caller = (f"caller{call}", (f"192.0.2.{call % 250 + 1}", 40000 + 2 * (call // 250)))
        agent = (f"agent{call}", (f"198.51.100.{call % 250 + 1}", 42000 + 2 * (call // 250)))
        for call_id, remote in (caller, agent):
            _open(engine, call_id, Law.ULAW, remote)
        engine.bridge(caller[0], agent[0])
        legs += (caller, agent)
    return _in_turn(engine, legs, number, 10)


def open_close_step() -> Callable[[], None]:
    engine = MediaEngine(origin=0.0, rng=random.Random(1))

    def step() -> None:
        _open(engine, "leg", Law.ULAW, CALLER)
        engine.close_leg("leg", 0.0)

    return step


def best_us(function: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=50000, help="steps per timing run")
    number = parser.parse_args().number
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("relay, fast path, PCMU to PCMU", relay_step(Law.ULAW, number, fast=True), number),
        ("relay, fast path, PCMU to PCMA", relay_step(Law.ALAW, number, fast=True), number),
        (
            "relay, fast path, 500 bridged calls in turn",
            relay_many_step(500, number),
            number,
        ),
        ("relay, general path, PCMU to PCMU", relay_step(Law.ULAW, number, fast=False), number),
        ("open + close one leg (engine state)", open_close_step(), number // 10),
    ]
    out = sys.stdout
    out.write(f"{this_machine()}\n")
    for name, function, runs in cases:
        out.write(f"{best_us(function, runs):8.2f} µs  {name}\n")


if __name__ == "__main__":
    main()
