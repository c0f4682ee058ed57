"""Media engine load: bridged calls and prompt-playing legs through one server process.

A server process (one worker: `MediaRunner` on uvloop) opens the legs; load processes
(``--load-processes``, 2 by default) play the phones on 127.0.0.1. With ``--pin`` the server gets
a core of its own and the load processes share the others (on an idle machine; on a shared one
pinning only stops the scheduler from moving a starved process):

- ``bridged``: N calls, each two legs bridged by the server. Every phone sends a 20 ms G.711
  packet every 20 ms, at its own phase in the frame (ten phases, 2 ms apart, as calls that
  started at different instants); the server relays it to the other leg's phone. Each packet
  carries its own index, so the load process knows when each one was sent and when (if) it
  came back.
- ``playing``: N legs, each playing a prompt (a paced 20 ms stream from the server's tick).

Arrival instants are the kernel's receive timestamps (SO_TIMESTAMPNS), not the instant a load
process got round to reading the datagram: a load process that runs late does not count as
server delay. Reported per level:

- loss, and added jitter. For a bridged call, the 99th percentile minus the median of the
  one-way delay through the server. For playing legs, two figures: ``gap`` is the 99th
  percentile of |arrival gap - 20 ms|; ``late`` is the 99th percentile minus the median of each
  packet's lateness against its RTP timestamp (arrival minus media time) — what a receiver's
  jitter buffer must absorb, the same measure as for bridged calls.
- the server's CPU (per call, and per packet received for bridged calls); with ``--pin``, how
  busy the server's core was (``core %``: what was not idle, so it also counts anything else
  that ran there) and the share of it spent in softirq (``sirq %``: on loopback the kernel
  delivers each datagram the server sends to its phone within the send);
- where the time goes on a shared machine: the share of wall time the server's and the load
  processes' main threads were runnable but waiting for a core (``wait %``, from
  /proc/PID/schedstat), the datagrams the kernel dropped because a socket buffer was full
  (``drops``, /proc/net/udp), and the load processes' own read lag.

Each mode's knee is its highest level, counted up to the first level that fails, with less than
0.1 % loss and less than 10 ms added jitter (both figures for playing legs): the calls one server
process carries on its core. The project's targets are 500 bridged calls and 800 playing legs.

    python benchmarks/media.py [--bridged 100,250,500] [--playing 200,400,800] [--seconds 10]
        [--load-processes 2] [--server-nice -10] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from machine import this_machine
from media_server import serve
from report import load_average

SCRIPT = Path(__file__).resolve()
HERE = SCRIPT.parent
_HEADER = struct.Struct("!BBHII")
_STAMP_AND_INDEX = struct.Struct("!4xI4xI")
FRAME = 0.020
_PHASES = 10
"""Send phases per frame on the load side: 2 ms apart."""
SAMPLES = 160
MAX_LOSS_PCT = 0.1
MAX_ADDED_JITTER_MS = 10.0
TARGETS = {"bridged": 500, "playing": 800}
Array = np.ndarray[Any, Any]


# ---------------------------------------------------------------------------------- load side

# Linux (asm-generic/socket.h): the kernel stamps each datagram with the CLOCK_REALTIME instant
# it reached the socket. Delays are measured from those stamps, so a load process that runs late
# (a shared machine, its own backlog) does not add its lateness to the server's figures.
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
#: The read lag is sampled on every this many packets of a phone (a second's worth).
_LAG_SAMPLE = 50


class Phone:
    """One client leg: when each of its packets was sent, and when each packet reached it."""

    def __init__(self, packets: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.sent_at = np.full(packets, np.nan)
        self.indexes: list[int] = []
        self.timestamps: list[int] = []
        self.arrivals: list[float] = []
        self.read_lag: list[float] = []
        """Seconds between a datagram's arrival and this process reading it (its own lag)."""

    def on_readable(self) -> None:
        # One datagram per call: the loop calls again while more wait, which costs less than a
        # read that fails with EAGAIN (and its exception) after nearly every datagram.
        try:
            data, ancillary, _, _ = self.sock.recvmsg(512, 64)
        except (BlockingIOError, InterruptedError):
            return
        arrival = 0.0
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                arrival = seconds + nanoseconds * 1e-9
        if len(data) < _STAMP_AND_INDEX.size or data[1] & 0x7F:
            # Not PCMU: an RTCP report the server sent to "RTP port + 1", which may be
            # another phone's port.
            return
        timestamp, index = _STAMP_AND_INDEX.unpack_from(data)
        self.arrivals.append(arrival)
        self.timestamps.append(timestamp)
        self.indexes.append(index)
        if arrival and not index % _LAG_SAMPLE:
            self.read_lag.append(time.time() - arrival)

    def reset(self) -> None:
        self.indexes.clear()
        self.timestamps.clear()
        self.arrivals.clear()
        self.read_lag.clear()

    def received_at(self) -> Array:
        """Arrival instant of each of the peer's packets by index (NaN: never arrived)."""
        received = np.full(len(self.sent_at), np.nan)
        indexes = np.asarray(self.indexes, dtype=np.int64)
        arrivals = np.asarray(self.arrivals)
        valid = (indexes >= 0) & (indexes < len(received))
        received[indexes[valid]] = arrivals[valid]
        return received

    def frames_due(self) -> int:
        """Frames the server's media clock covered from the first to the last packet received
        (a frame it never sent, e.g. a skipped tick, counts as lost)."""
        if not self.timestamps:
            return 0
        return ((self.timestamps[-1] - self.timestamps[0]) & 0xFFFFFFFF) // SAMPLES + 1

    def lateness(self) -> Array:
        """Each packet's arrival minus its media time (RTP timestamp), relative to the median."""
        if len(self.arrivals) < 2:
            return np.empty(0)
        stamps = np.asarray(self.timestamps, dtype=np.int64)
        media = ((stamps - stamps[0]) & 0xFFFFFFFF) / 8000.0
        late: Array = np.asarray(self.arrivals) - self.arrivals[0] - media
        centred: Array = late - float(np.median(late))
        return centred


def _cpu_seconds(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def sched_times(pid: int) -> tuple[float, float]:
    """Seconds a process's main thread ran, and waited runnable for a core (/proc schedstat)."""
    with open(f"/proc/{pid}/schedstat") as stat:
        running, waiting, _ = stat.read().split()
    return int(running) / 1e9, int(waiting) / 1e9


def core_times(core: int) -> tuple[float, float, float]:
    """A core's idle and softirq seconds since boot (/proc/stat), and the monotonic instant.

    Busy is measured as what is not idle over the elapsed time: the per-core tick counts of a
    virtual machine need not add up to the elapsed time."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if name == f"cpu{core}":
                idle = int(fields[3]) + int(fields[4])
                return idle / tick, int(fields[6]) / tick, time.monotonic()
    raise LookupError(f"cpu{core} not in /proc/stat")


def udp_drops() -> dict[int, int]:
    """Every IPv4 UDP socket bound on this machine: port -> datagrams the kernel dropped.

    The ``drops`` column of /proc/net/udp counts datagrams the kernel discarded because the
    socket's receive buffer was full: loss that no process ever saw."""
    drops: dict[int, int] = {}
    with open("/proc/net/udp") as table:
        next(table)
        for line in table:
            fields = line.split()
            drops[int(fields[1].split(":")[1], 16)] = int(fields[-1])
    return drops


def _reply(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


async def load_worker() -> None:
    """A load process: its share of the phones. Reads its orders on stdin, answers on stdout:
    setup (bind the phones, answer their ports), go (run from the given instant, answer when
    done), results (write the figures to the given file)."""
    loop = asyncio.get_running_loop()
    read = sys.stdin.readline
    setup = json.loads(read())
    mode: str = setup["mode"]
    seconds: float = setup["seconds"]
    packets = int(seconds / FRAME)
    phones = [Phone(packets) for _ in range(setup["legs"])]
    for phone in phones:
        loop.add_reader(phone.sock.fileno(), phone.on_readable)
    _reply(sys.stdout, {"ports": [phone.port for phone in phones]})
    go = json.loads(await loop.run_in_executor(None, read))
    server_ports: list[int] = go["server_ports"]
    start = time.monotonic() + (go["start"] - time.time())
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    for phone in phones:
        phone.reset()  # what arrived before the start (the first prompt frames) is not measured
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sched = sched_times(os.getpid())
    timer_late: list[float] = []
    if mode == "bridged":
        payload = bytes(156)
        senders = [
            (phone.sent_at, phone.sock.sendto, ("127.0.0.1", port))
            for phone, port in zip(phones, server_ports, strict=True)
        ]
        # Phones' 20 ms clocks have their own phases (calls start at any instant): each group
        # of phones sends at its own offset in the frame, rather than all at once, which would
        # queue a whole frame's packets in front of the server at the same instant.
        groups = [senders[phase::_PHASES] for phase in range(_PHASES)]
        # The load processes share the machine with the server: their own cost per packet is
        # kept low (no context manager or attribute look-up per packet), so that what limits
        # the measured rate is the server rather than its load.
        now = time.time
        for index in range(packets):
            datagram = _HEADER.pack(0x80, 0, index & 0xFFFF, index * SAMPLES, 0) + struct.pack(
                "!I", index
            )
            datagram += payload
            for phase, group in enumerate(groups):
                deadline = start + index * FRAME + phase * FRAME / _PHASES
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
                timer_late.append(time.monotonic() - deadline)
                for sent_at, sendto, destination in group:
                    sent_at[index] = now()
                    try:  # noqa: SIM105 - contextlib.suppress costs a context manager per packet
                        sendto(datagram, destination)
                    except BlockingIOError:  # a full buffer: a lost packet
                        pass
        await asyncio.sleep(0.3)  # the last packets' way back
        snapshot = [len(phone.arrivals) for phone in phones]
    else:
        await asyncio.sleep(seconds)
        snapshot = [len(phone.arrivals) for phone in phones]
    own = resource.getrusage(resource.RUSAGE_SELF)
    sched_end = sched_times(os.getpid())
    wall = time.monotonic() - start
    _reply(
        sys.stdout,
        {
            "cpu": _cpu_seconds(own) - _cpu_seconds(usage),
            "wait": sched_end[1] - sched[1],
            "wall": wall,
        },
    )
    results = json.loads(await loop.run_in_executor(None, read))
    for phone in phones:
        loop.remove_reader(phone.sock.fileno())
        phone.sock.close()
    for phone, count in zip(phones, snapshot, strict=True):
        del phone.arrivals[count:], phone.indexes[count:], phone.timestamps[count:]
    figures: dict[str, Array] = {
        "read_lag": np.concatenate([np.asarray(p.read_lag) for p in phones] + [np.empty(0)]),
        "received": np.asarray(sum(snapshot)),
    }
    if mode == "bridged":
        delays, lost, expected = [], 0, 0
        for leg, phone in enumerate(phones):
            source = phones[leg ^ 1]
            valid = ~np.isnan(source.sent_at)
            expected += int(valid.sum())
            received_at = phone.received_at()
            lost += int(np.isnan(received_at[valid]).sum())
            delay = received_at - source.sent_at
            delays.append(delay[~np.isnan(delay)])
        figures["delay"] = np.concatenate([*delays, np.empty(0)])
        figures["lost"] = np.asarray(lost)
        figures["expected"] = np.asarray(expected)
        figures["timer_late"] = np.asarray(timer_late)
    else:
        figures["gaps"] = np.concatenate(
            [np.diff(p.arrivals) for p in phones if len(p.arrivals) > 1] + [np.empty(0)]
        )
        figures["lateness"] = np.concatenate([p.lateness() for p in phones] + [np.empty(0)])
        figures["expected"] = np.asarray(sum(phone.frames_due() for phone in phones))
    np.savez(results["path"], **figures)  # type: ignore[arg-type]
    _reply(sys.stdout, {})


# ---------------------------------------------------------------------------------- orchestration


class Child:
    """A server or load process spoken to in JSON lines."""

    def __init__(self, args: list[str], nice: int = 0) -> None:
        prefix = ["nice", "-n", str(nice)] if nice else []
        self.process = subprocess.Popen(
            [*prefix, sys.executable, str(SCRIPT), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(HERE.parent)},
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        reply: dict[str, Any] = json.loads(self.process.stdout.readline())
        return reply

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


def _shares(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if part < total % parts else 0) for part in range(parts)]


def drive(
    mode: str,
    calls: int,
    seconds: float,
    *,
    base_port: int,
    pin: bool,
    nice: int,
    load_processes: int,
    catch_up_spacing: float,
) -> dict[str, float]:
    # Both legs of a bridged call belong to one load process, which measures the call's delay.
    shares = [2 * share if mode == "bridged" else share for share in _shares(calls, load_processes)]
    workers = [Child(["--load-worker"]) for _ in shares]
    for worker, legs in zip(workers, shares, strict=True):
        worker.send({"mode": mode, "legs": legs, "seconds": seconds})
    worker_ports = [worker.receive()["ports"] for worker in workers]
    server = Child(["--serve", str(base_port), "--catch-up-spacing", str(catch_up_spacing)], nice)
    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[0] if pin and len(cores) >= 2 else None
    if server_core is not None:
        os.sched_setaffinity(server.pid, {server_core})
        for worker in workers:
            os.sched_setaffinity(worker.pid, set(cores[1:]))
    peers = [port for ports in worker_ports for port in ports]
    server.send({"op": "open", "mode": mode, "peers": peers})
    server_ports: list[int] = server.receive()["ports"]
    time.sleep(0.5)
    server.send({"op": "start"})
    server.receive()
    server_sched = sched_times(server.pid)
    core_before = core_times(server_core) if server_core is not None else None
    drops_before = udp_drops()
    start = time.time() + 0.1
    offset = 0
    for worker, legs in zip(workers, shares, strict=True):
        worker.send({"server_ports": server_ports[offset : offset + legs], "start": start})
        offset += legs
    load = [worker.receive() for worker in workers]
    server_sched_end = sched_times(server.pid)
    core_after = core_times(server_core) if server_core is not None else None
    drops_after = udp_drops()
    server.send({"op": "stop"})
    result = server.receive()
    server.close()
    collected: list[dict[str, Array]] = []
    with tempfile.TemporaryDirectory() as directory:
        for number, worker in enumerate(workers):
            path = os.path.join(directory, f"load{number}.npz")
            worker.send({"path": path})
            worker.receive()
            worker.close()
            with np.load(path) as data:
                collected.append({key: data[key] for key in data.files})

    def joined(key: str) -> Array:
        return np.concatenate([part[key].ravel() for part in collected])

    def dropped(ports: list[int]) -> int:
        return sum(drops_after.get(port, 0) - drops_before.get(port, 0) for port in ports)

    wall = result["wall"]
    figures = {
        "server_cpu_per_call_pct": 100 * result["cpu"] / wall / calls,
        "server_cpu_pct": 100 * result["cpu"] / wall,
        "load_cpu_pct": 100 * sum(part["cpu"] / part["wall"] for part in load),
        "skipped_ticks": result["skipped_ticks"],
        # Time each process was runnable but had no core: on a shared machine this, not the
        # work itself, is what delays packets.
        "server_wait_pct": 100 * (server_sched_end[1] - server_sched[1]) / wall,
        "load_wait_pct": 100 * float(np.mean([part["wait"] / part["wall"] for part in load])),
        "server_drops": dropped(server_ports),
        "load_drops": dropped(peers),
        "send_dropped": result["send_dropped"],
        "flood": result["flood"],
        "gc_max_ms": result["gc_max_ms"],
        "gc_full": result["gc_full"],
    }
    if core_before is not None and core_after is not None:
        idle, softirq, elapsed = (
            after - before for after, before in zip(core_after, core_before, strict=True)
        )
        figures["core_busy_pct"] = 100 * max(0.0, 1 - idle / elapsed)
        figures["core_softirq_pct"] = 100 * softirq / elapsed
    lag = joined("read_lag")
    figures["load_read_lag_p99_ms"] = float(np.percentile(lag, 99) * 1000) if len(lag) else 0.0
    expected = float(joined("expected").sum())
    if mode == "bridged":
        delay = joined("delay") * 1000
        figures["loss_pct"] = 100 * float(joined("lost").sum()) / max(1.0, expected)
        figures["delay_p50_ms"] = float(np.percentile(delay, 50))
        figures["added_jitter_ms"] = float(np.percentile(delay, 99) - np.percentile(delay, 50))
        figures["load_timer_p99_ms"] = float(np.percentile(joined("timer_late"), 99) * 1000)
        figures["server_us_per_packet"] = 1e6 * result["cpu"] / max(1, result["received"])
    else:
        gaps = joined("gaps")
        late = joined("lateness") * 1000
        figures["loss_pct"] = max(0.0, 100 * (1 - float(joined("received").sum()) / expected))
        figures["added_jitter_ms"] = float(np.percentile(np.abs(gaps - FRAME), 99) * 1000)
        figures["late_jitter_ms"] = float(np.percentile(late, 99) - np.percentile(late, 50))
        figures["gap_mean_ms"] = float(np.mean(gaps) * 1000)
    return figures


def _optional(figures: dict[str, float], key: str, digits: int = 1) -> str:
    """A figure only some modes or runs have, formatted; "-" where it is missing."""
    value = figures.get(key)
    return "-" if value is None else f"{value:.{digits}f}"


def meets_bar(figures: dict[str, float]) -> bool:
    """Loss and added jitter (for playing legs both the gap and the lateness figure) in bounds."""
    jitter = max(figures["added_jitter_ms"], figures.get("late_jitter_ms", 0.0))
    return figures["loss_pct"] < MAX_LOSS_PCT and jitter < MAX_ADDED_JITTER_MS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bridged", default="100,250,500", help="bridged calls per level")
    parser.add_argument("--playing", default="200,400,800", help="playing legs per level")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per level")
    parser.add_argument("--base-port", type=int, default=12000, help="server's first RTP port")
    parser.add_argument(
        "--load-processes", type=int, default=2, help="processes sharing the phones"
    )
    parser.add_argument(
        "--pin", action="store_true", help="pin server and load to separate cores (idle machine)"
    )
    parser.add_argument(
        "--server-nice",
        type=int,
        default=0,
        help="run the server at this nice value (negative needs root): the share of a busy "
        "machine's cores that a media server deployed with a raised priority gets",
    )
    parser.add_argument(
        "--catch-up-spacing",
        type=float,
        default=0.0,
        help="the server's EngineSettings.catch_up_spacing (seconds; 0: late ticks at once)",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.serve is not None:
        uvloop.run(serve(args.serve, args.catch_up_spacing))
        return 0
    if args.load_worker:
        uvloop.run(load_worker())
        return 0
    out = sys.stdout
    out.write(f"{this_machine()}\n")
    out.write(
        f"uvloop {metadata.version('uvloop')}; {args.seconds:.0f} s per level; "
        f"{args.load_processes} load processes; server nice {args.server_nice}; "
        f"catch-up spacing {args.catch_up_spacing * 1000:.0f} ms; "
        f"load average {load_average()}\n"
    )
    out.write(
        f"{'mode':<8} {'calls':>6} {'loss %':>7} {'jitter ms':>9} {'late ms':>8} "
        f"{'CPU/call %':>10} {'srv CPU %':>9} {'µs/pkt':>7} {'core %':>6} {'sirq %':>6} "
        f"{'load CPU %':>10} "
        f"{'skipped':>7} {'srv wait %':>10} {'load wait %':>11} {'drops':>9} {'flood':>7} "
        f"{'load lag ms':>11} {'GC max ms':>9} {'full GCs':>8}\n"
    )
    levels = [("bridged", int(n)) for n in args.bridged.split(",") if n] + [
        ("playing", int(n)) for n in args.playing.split(",") if n
    ]
    knees = {mode: 0 for mode in TARGETS}
    failed: set[str] = set()
    for mode, calls in levels:
        figures = drive(
            mode,
            calls,
            args.seconds,
            base_port=args.base_port,
            pin=args.pin,
            nice=args.server_nice,
            load_processes=args.load_processes,
            catch_up_spacing=args.catch_up_spacing,
        )
        drops = f"{figures['server_drops']:.0f}/{figures['load_drops']:.0f}"
        out.write(
            f"{mode:<8} {calls:>6} {figures['loss_pct']:>7.3f} {figures['added_jitter_ms']:>9.2f} "
            f"{_optional(figures, 'late_jitter_ms', 2):>8} "
            f"{figures['server_cpu_per_call_pct']:>10.3f} {figures['server_cpu_pct']:>9.1f} "
            f"{_optional(figures, 'server_us_per_packet'):>7} "
            f"{_optional(figures, 'core_busy_pct'):>6} {_optional(figures, 'core_softirq_pct'):>6} "
            f"{figures['load_cpu_pct']:>10.1f} {figures['skipped_ticks']:>7.0f} "
            f"{figures['server_wait_pct']:>10.1f} {figures['load_wait_pct']:>11.1f} "
            f"{drops:>9} {figures['flood']:>7.0f} {figures['load_read_lag_p99_ms']:>11.1f} "
            f"{figures['gc_max_ms']:>9.1f} {figures['gc_full']:>8.0f}\n"
        )
        out.flush()
        if mode not in failed and meets_bar(figures):
            knees[mode] = max(knees[mode], calls)
        else:
            failed.add(mode)
    for mode, target in TARGETS.items():
        if not any(level_mode == mode for level_mode, _ in levels):
            continue
        if knees[mode] >= target:
            verdict = "met"
        elif mode in failed:
            verdict = "missed"
        else:
            verdict = "not settled: no level as high was tried"
        out.write(
            f"{mode} knee (< {MAX_LOSS_PCT} % loss, < {MAX_ADDED_JITTER_MS:.0f} ms added jitter): "
            f"{knees[mode]} {'calls' if mode == 'bridged' else 'legs'} on one server core; "
            f"target >= {target}: {verdict}\n"
        )
    out.write(f"load average after: {load_average()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
