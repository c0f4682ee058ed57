"""Parse + serialise cost of typical SIP messages (INVITE, 200 OK, ACK), in microseconds.

Run: python benchmarks/sip_parse.py [iterations]
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

from telephony.sip.message import parse_message

INVITE = (
    b"INVITE sip:+15551230000@cxos.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---7327937047a68e64;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:+15559870000@192.0.2.10:5060>\r\n"
    b"To: <sip:+15551230000@cxos.example.com>\r\n"
    b'From: "Caller" <sip:+15559870000@trunk.example.net>;tag=25d4854f\r\n'
    b"Call-ID: kvJ0NOFD9AQei6iUs-FjCg..\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, INFO, UPDATE\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: ExampleTrunk/1.0\r\n"
    b"Content-Length: 142\r\n"
    b"\r\n"
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
)
OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---7327937047a68e64;"
    b"rport=5060;received=192.0.2.10\r\n"
    b"To: <sip:+15551230000@cxos.example.com>;tag=cx-9f2a\r\n"
    b'From: "Caller" <sip:+15559870000@trunk.example.net>;tag=25d4854f\r\n'
    b"Call-ID: kvJ0NOFD9AQei6iUs-FjCg..\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:cxos@198.51.100.5:5060>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
ACK = (
    b"ACK sip:cxos@198.51.100.5:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---aa7c9d;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:+15551230000@cxos.example.com>;tag=cx-9f2a\r\n"
    b'From: "Caller" <sip:+15559870000@trunk.example.net>;tag=25d4854f\r\n'
    b"Call-ID: kvJ0NOFD9AQei6iUs-FjCg..\r\n"
    b"CSeq: 1 ACK\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def measure(data: bytes, iterations: int) -> tuple[float, float]:
    for _ in range(200):
        parse_message(data).to_bytes()
    start = time.perf_counter()
    for _ in range(iterations):
        parse_message(data)
    parse_us = (time.perf_counter() - start) / iterations * 1e6
    msg = parse_message(data)
    start = time.perf_counter()
    for _ in range(iterations):
        msg.to_bytes()
    serialise_us = (time.perf_counter() - start) / iterations * 1e6
    return parse_us, serialise_us


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    sys.stdout.write(
        f"machine: {platform.platform()}, {cpu_model()}, Python {platform.python_version()}\n"
    )
    for name, data in (("INVITE", INVITE), ("200 OK", OK), ("ACK", ACK)):
        parse_us, serialise_us = measure(data, iterations)
        sys.stdout.write(
            f"{name:7s} {len(data):4d} bytes  parse {parse_us:6.1f} us  "
            f"serialise {serialise_us:5.1f} us  total {parse_us + serialise_us:6.1f} us\n"
        )


if __name__ == "__main__":
    main()
