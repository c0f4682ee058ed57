"""Micro-benchmark of the media engine's own work per relayed RTP packet, with no sockets.

Two legs bridged in one `MediaEngine` (the sans-IO core under `MediaRunner`); each timed step
hands one datagram of a settled 20 ms stream to `MediaEngine.receive` and gets the packet to
send on the other leg. Cases:

- the relay fast path (`MediaLeg.relay_next`: restamped with one header read, no packet object),
  both legs PCMU, and PCMU to PCMA (one `bytes.translate` per payload);
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


def _bridged(agent_law: Law, *, fast: bool) -> MediaEngine:
    engine = MediaEngine(origin=0.0, rng=random.Random(1))
    _open(engine, "caller", Law.ULAW, CALLER)
    _open(engine, "agent", agent_law, AGENT)
    engine.bridge("caller", "agent")
    if not fast:
        leg = engine.leg("caller")
        leg.relay_next = lambda *_: None  # type: ignore[method-assign]
    return engine


def relay_step(agent_law: Law, number: int, *, fast: bool) -> Callable[[], None]:
    """One caller datagram per call, 20 ms after the previous one (the stream never repeats)."""
    engine = _bridged(agent_law, fast=fast)
    total = 6 * number  # five timed runs and a warm-up
    datagrams = [
        build_header(0, n == 0, n & 0xFFFF, (160 * n) & 0xFFFFFFFF, 0x1234) + bytes(160)
        for n in range(total)
    ]
    position = 0

    def step() -> None:
        nonlocal position
        if engine.receive("caller", datagrams[position], CALLER, position * FRAME) is None:
            raise RuntimeError(f"datagram {position} was not relayed")
        position += 1

    step_count = number // 10  # settle the stream (lock the source, validate the SSRC)
    for _ in range(step_count):
        step()
    return step


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
        ("relay, general path, PCMU to PCMU", relay_step(Law.ULAW, number, fast=False), number),
        ("open + close one leg (engine state)", open_close_step(), number // 10),
    ]
    out = sys.stdout
    out.write(f"{this_machine()}\n")
    for name, function, runs in cases:
        out.write(f"{best_us(function, runs):8.2f} µs  {name}\n")


if __name__ == "__main__":
    main()
