"""Micro-benchmark of the per-packet RTP work: parse, serialise, header building, and the
receive path of one leg (parse, statistics, jitter buffer).

    python benchmarks/rtp_parse.py [--number N]

Prints nanoseconds per packet (best of five runs) and the machine it ran on.
"""

from __future__ import annotations

import argparse
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

from telephony.rtp.jitter import JitterBuffer
from telephony.rtp.packet import (
    HeaderExtension,
    RtpPacket,
    build_header,
    pack_header_into,
    parse,
)
from telephony.rtp.rtcp import (
    ReceiverReport,
    ReportBlock,
    SdesChunk,
    SdesItem,
    SdesItemType,
    SourceDescription,
    parse_compound,
    serialize_compound,
)
from telephony.rtp.stats import ReceiverStatistics


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def best_ns(function: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e9


def receive_path(number: int) -> Callable[[], None]:
    """One leg receiving a clean 20 ms stream: parse, account, buffer, play out."""
    # One datagram per timed call (best_ns makes five runs), so the stream never goes back.
    datagrams = [
        build_header(0, n == 0, n & 0xFFFF, 160 * n, 0x1234) + bytes(160) for n in range(5 * number)
    ]
    stats = ReceiverStatistics(clock_rate=8000)
    buffer = JitterBuffer()
    position = 0

    def step() -> None:
        nonlocal position
        now = position * 0.020
        packet = parse(datagrams[position])
        stats.receive(
            ssrc=packet.ssrc, sequence=packet.sequence, timestamp=packet.timestamp, now=now
        )
        buffer.push(packet, now)
        buffer.pop(now)
        position += 1

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000, help="calls per timing run")
    number = parser.parse_args().number

    plain = RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=0x1234, payload=bytes(160))
    rich = RtpPacket(
        payload_type=8,
        sequence=2,
        timestamp=320,
        ssrc=0x1234,
        payload=bytes(160),
        csrc=(1, 2),
        extension=HeaderExtension(profile=0xBEDE, data=bytes(4)),
        padding=4,
    )
    plain_bytes, rich_bytes = plain.serialize(), rich.serialize()
    buffer = bytearray(12 + 160)
    rtcp = serialize_compound(
        (
            ReceiverReport(
                ssrc=1,
                reports=(
                    ReportBlock(
                        ssrc=2, fraction_lost=3, cumulative_lost=4, highest_sequence=5, jitter=6
                    ),
                ),
            ),
            SourceDescription(
                chunks=(
                    SdesChunk(
                        ssrc=1, items=(SdesItem(item_type=SdesItemType.CNAME, value="cxos@host"),)
                    ),
                )
            ),
        )
    )

    cases: list[tuple[str, Callable[[], object]]] = [
        ("parse, plain 12-octet header + 160 octets", lambda: parse(plain_bytes)),
        ("parse, CSRC + extension + padding", lambda: parse(rich_bytes)),
        ("serialize, plain", plain.serialize),
        ("serialize, CSRC + extension + padding", rich.serialize),
        ("build_header", lambda: build_header(0, False, 1, 160, 0x1234)),
        (
            "pack_header_into (reused buffer)",
            lambda: pack_header_into(
                buffer, payload_type=0, marker=False, sequence=1, timestamp=160, ssrc=0x1234
            ),
        ),
        ("parse_compound, RR + SDES", lambda: parse_compound(rtcp)),
        ("receive path: parse + stats + jitter push/pop", receive_path(number)),
    ]
    out = sys.stdout
    out.write(f"machine: {platform.platform()}, {cpu_model()}\n")
    out.write(f"python:  {platform.python_implementation()} {platform.python_version()}\n")
    for name, function in cases:
        out.write(f"{best_ns(function, number):10.0f} ns  {name}\n")


if __name__ == "__main__":
    main()
