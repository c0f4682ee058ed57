"""Media engine load: bridged calls and prompt-playing legs through one server process.

A server process (one worker: `MediaRunner` on uvloop) opens the legs; a load process (this one)
plays the phones on 127.0.0.1. With ``--pin`` each gets its own core (on an otherwise idle machine;
on a shared one pinning only stops the scheduler from moving a starved process):

- ``bridged``: N calls, each two legs bridged by the server. Every phone sends a 20 ms G.711
  packet every 20 ms; the server relays it to the other leg's phone. Each packet carries its own
  index, so the load process knows when each one was sent and when (if) it came back.
- ``playing``: N legs, each playing a prompt (a paced 20 ms stream from the server's tick).

Reported per level: packet loss, added jitter, server CPU per call. Added jitter for a bridged
call is the 99th percentile minus the median of the one-way delay through the server (what a
receiver's jitter buffer must absorb on top of the network); for playing legs, the 99th
percentile of |arrival gap - 20 ms|. The load process's own send-timer jitter is printed too,
since it is part of what is measured.

    python benchmarks/media.py [--bridged 100,250,500] [--playing 200,400,800] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from machine import this_machine

SCRIPT = Path(__file__).resolve()
HERE = SCRIPT.parent
_INDEX = struct.Struct("!I")
_HEADER = struct.Struct("!BBHII")
FRAME = 0.020


# ---------------------------------------------------------------------------------- server side


async def serve(base_port: int) -> None:
    """The server process: reads one JSON command per line on stdin, answers on stdout."""
    from telephony.media.runner import MediaRunner
    from telephony.rtp.g711 import Law

    runner = MediaRunner()
    prompt = tuple(bytes([0x55 ^ (i & 0x7F)]) * 160 for i in range(3000))  # one minute
    loop = asyncio.get_running_loop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        if command["op"] == "open":
            peers: list[int] = command["peers"]
            ports: list[int] = []
            port = base_port
            for index, peer_port in enumerate(peers):
                while True:  # skip ports other programs hold
                    try:
                        await runner.open_leg(
                            f"leg{index}",
                            local=("127.0.0.1", port),
                            law=Law.ULAW,
                            payload_type=0,
                            event_payload_type=101,
                            remote=("127.0.0.1", peer_port),
                        )
                    except OSError:
                        port += 2
                        continue
                    ports.append(port)
                    port += 2
                    break
            if command["mode"] == "bridged":
                for index in range(0, len(peers), 2):
                    runner.engine.bridge(f"leg{index}", f"leg{index + 1}")
            else:
                for index in range(len(peers)):
                    runner.engine.play(f"leg{index}", (prompt,))
            runner.arm()
            reply: dict[str, Any] = {"ports": ports}
        elif command["op"] == "start":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            started = time.monotonic()
            reply = {}
        elif command["op"] == "stop":
            now = resource.getrusage(resource.RUSAGE_SELF)
            cpu = now.ru_utime - usage.ru_utime + now.ru_stime - usage.ru_stime
            reply = {
                "cpu": cpu,
                "wall": time.monotonic() - started,
                "send_dropped": runner.send_dropped,
                "skipped_ticks": runner.engine.skipped_ticks,
            }
            await runner.close()
        else:
            break
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------------------------- load side


class Phone(asyncio.DatagramProtocol):
    """One client leg: records when each of its packets was sent, and what arrives."""

    def __init__(self, packets: int) -> None:
        self.sent_at = np.full(packets, np.nan)
        self.received_at = np.full(packets, np.nan)
        self.arrivals: list[float] = []
        self.sock: socket.socket | None = None
        self.index = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = time.monotonic()
        self.arrivals.append(now)
        if len(data) >= 16:
            index = _INDEX.unpack_from(data, 12)[0]
            if index < len(self.received_at):
                self.received_at[index] = now


def start_server(base_port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--serve", str(base_port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
    )


async def drive(
    mode: str, calls: int, seconds: float, base_port: int, pin: bool
) -> dict[str, float]:
    legs = 2 * calls if mode == "bridged" else calls
    packets = int(seconds / FRAME)
    loop = asyncio.get_running_loop()
    phones: list[Phone] = []
    for _ in range(legs):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        sock.setblocking(False)
        phone = Phone(packets)
        phone.sock = sock
        await loop.create_datagram_endpoint(lambda phone=phone: phone, sock=sock)  # type: ignore[misc]
        phones.append(phone)
    server = start_server(base_port)
    if pin and len(os.sched_getaffinity(0)) >= 2:
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(server.pid, {cores[0]})
        os.sched_setaffinity(0, {cores[1]})

    def call(command: dict[str, Any]) -> dict[str, Any]:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(json.dumps(command) + "\n")
        server.stdin.flush()
        reply: dict[str, Any] = json.loads(server.stdout.readline())
        return reply

    ports = [p.sock.getsockname()[1] for p in phones if p.sock is not None]
    server_ports = (await asyncio.to_thread(call, {"op": "open", "mode": mode, "peers": ports}))[
        "ports"
    ]
    await asyncio.sleep(0.5)
    for phone in phones:
        phone.arrivals.clear()
    await asyncio.to_thread(call, {"op": "start"})
    usage = resource.getrusage(resource.RUSAGE_SELF)
    timer_late: list[float] = []
    start = time.monotonic() + 0.05
    if mode == "bridged":
        payload = bytes(156)
        for index in range(packets):
            deadline = start + index * FRAME
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            timer_late.append(time.monotonic() - deadline)
            header = _HEADER.pack(0x80, 0, index & 0xFFFF, index * 160, 0) + _INDEX.pack(index)
            for leg, phone in enumerate(phones):
                assert phone.sock is not None
                phone.sent_at[index] = time.monotonic()
                with contextlib.suppress(BlockingIOError):  # a full buffer: a lost packet
                    phone.sock.sendto(header + payload, ("127.0.0.1", server_ports[leg]))
    else:
        await asyncio.sleep(seconds)
    await asyncio.sleep(0.3)
    own = resource.getrusage(resource.RUSAGE_SELF)
    result = await asyncio.to_thread(call, {"op": "stop"})
    server.stdin.close()  # type: ignore[union-attr]
    server.wait(10)
    figures = {
        "server_cpu_per_call_pct": 100 * result["cpu"] / result["wall"] / calls,
        "server_cpu_pct": 100 * result["cpu"] / result["wall"],
        "load_cpu_pct": 100
        * (own.ru_utime - usage.ru_utime + own.ru_stime - usage.ru_stime)
        / result["wall"],
        "skipped_ticks": result["skipped_ticks"],
    }
    if mode == "bridged":
        delays, lost, expected = [], 0, 0
        for leg, phone in enumerate(phones):
            source = phones[leg ^ 1]
            valid = ~np.isnan(source.sent_at)
            expected += int(valid.sum())
            lost += int(np.isnan(phone.received_at[valid]).sum())
            delay = phone.received_at - source.sent_at
            delays.append(delay[~np.isnan(delay)])
        delay = np.concatenate(delays) * 1000
        figures["loss_pct"] = 100 * lost / max(1, expected)
        figures["delay_p50_ms"] = float(np.percentile(delay, 50))
        figures["added_jitter_ms"] = float(np.percentile(delay, 99) - np.percentile(delay, 50))
        figures["load_timer_p99_ms"] = float(np.percentile(timer_late, 99) * 1000)
    else:
        gaps = np.concatenate([np.diff(p.arrivals) for p in phones if len(p.arrivals) > 1])
        received = sum(len(p.arrivals) for p in phones)
        due = calls * (seconds + 0.3) / FRAME
        figures["loss_pct"] = max(0.0, 100 * (1 - received / due))
        figures["added_jitter_ms"] = float(np.percentile(np.abs(gaps - FRAME), 99) * 1000)
        figures["gap_mean_ms"] = float(np.mean(gaps) * 1000)
    for phone in phones:
        phone.transport.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bridged", default="100,250,500", help="bridged calls per level")
    parser.add_argument("--playing", default="200,400,800", help="playing legs per level")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per level")
    parser.add_argument("--base-port", type=int, default=12000, help="server's first RTP port")
    parser.add_argument(
        "--pin", action="store_true", help="pin server and load to separate cores (idle machine)"
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.serve is not None:
        uvloop.run(serve(args.serve))
        return 0
    out = sys.stdout
    out.write(f"{this_machine()}\n")
    out.write(f"uvloop {metadata.version('uvloop')}; {args.seconds:.0f} s per level\n")
    out.write(
        f"{'mode':<8} {'calls':>6} {'loss %':>8} {'added jitter ms':>16} "
        f"{'CPU/call %':>11} {'server CPU %':>13} {'load CPU %':>11} {'skipped':>8}\n"
    )
    levels = [("bridged", int(n)) for n in args.bridged.split(",") if n] + [
        ("playing", int(n)) for n in args.playing.split(",") if n
    ]
    for mode, calls in levels:
        figures = uvloop.run(drive(mode, calls, args.seconds, args.base_port, args.pin))
        out.write(
            f"{mode:<8} {calls:>6} {figures['loss_pct']:>8.3f} {figures['added_jitter_ms']:>16.2f} "
            f"{figures['server_cpu_per_call_pct']:>11.3f} {figures['server_cpu_pct']:>13.1f} "
            f"{figures['load_cpu_pct']:>11.1f} {figures['skipped_ticks']:>8.0f}\n"
        )
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
