"""Soak: a steady call rate for a long time, watching the server for leaks.

    python benchmarks/soak.py [--minutes 30] [--rate 10] [--talk 2] [--agents 50]
                              [--interval 10] [--warm-up 30] [--markdown FILE]

`cxos run` with ``cc_day.py``'s configuration (the queue ``day`` and ``--agents`` simulated agents
answering from one SIPp) takes ``--rate`` calls per second (one SIPp caller process, a call
started every 1/rate s), each queued, answered by an agent, held for an exponentially
distributed ``--talk`` seconds and hung up by the agent. Every ``--interval`` seconds it samples
the server process: resident memory (VmRSS), open file descriptors (/proc/PID/fd), threads, and
from ``/metrics`` the asyncio tasks on its event loop (``cxos_asyncio_tasks``), calls in progress
and calls started so far.

Printed: every sample, then four points (idle before the load, the first and last samples under
load after ``--warm-up`` seconds, and idle again once the calls have ended) and, for the samples
under load, the least-squares slope per hour. A server that does not leak ends idle where it
started idle, and its slopes under load are near zero; caches that fill to their bound show a
rise that flattens. The largest of them, the supervisor's KPI journal (``kpi_journal_events``
in api.yaml: 200,000 events shipped, about 0.5 KB each, six a call), would take an hour of this
load to fill; the run bounds it at ``--kpi-journal-events`` (20,000: a few minutes), so that
what still rises after that is a leak rather than the journal filling.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from bench_scenarios import CALLERS
from bench_setup import scratch_directory, tools_present
from cc_day import (
    NUMBER,
    Api,
    metric,
    sipp_command,
    start_agents,
    supervisor_token,
    write_day_config,
)
from machine import this_machine
from report import load_average, markdown_table, write_markdown
from ruamel.yaml import YAML
from sip_cps import free_udp_port, start_server, stop_server


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    at: float
    """Seconds since the load started (negative: before)."""
    rss_mb: float
    fds: int
    threads: int
    tasks: int | None
    active_calls: int | None
    calls_started: int | None

    FIELDS = ("RSS (MB)", "open fds", "threads", "asyncio tasks")

    def values(self) -> tuple[float, float, float, float | None]:
        return (self.rss_mb, self.fds, self.threads, self.tasks)


def _status_field(status: str, name: str) -> int:
    """A number from /proc/PID/status (proc(5)), e.g. ``VmRSS:  51200 kB`` → 51200."""
    found = re.search(rf"^{name}:\s+(\d+)", status, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"/proc status has no {name}")
    return int(found.group(1))


def sample(pid: int, api: Api, at: float) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb, threads = _status_field(status, "VmRSS"), _status_field(status, "Threads")
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    try:
        text = api.metrics()
    except OSError:
        text = ""
    return Sample(
        at=at,
        rss_mb=rss_kb / 1024,
        fds=fds,
        threads=threads,
        tasks=metric(text, "cxos_asyncio_tasks"),
        active_calls=metric(text, "cxos_calls_active"),
        calls_started=metric(text, "cxos_calls_started_total"),
    )


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return None
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return cov / var * 3600


def _row(s: Sample) -> str:
    return (
        f"{s.at:7.0f} {s.rss_mb:9.1f} {s.fds:6d} {s.threads:8d} {_n(s.tasks):>7s} "
        f"{_n(s.active_calls):>7s} {_n(s.calls_started):>9s}"
    )


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def bound_kpi_journal(config: Path, events: int) -> None:
    """The supervisor's KPI journal (api.yaml ``kpi_journal_events``) set to ``events``."""
    yaml = YAML()
    document = yaml.load(config / "api.yaml")
    document["kpi_journal_events"] = events
    with (config / "api.yaml").open("w") as handle:
        yaml.dump(document, handle)


def run(args: argparse.Namespace, work: Path) -> tuple[list[Sample], Sample, Sample]:
    write = sys.stdout.write
    port = free_udp_port()
    config = work / "conf"
    api_port = write_day_config(config, port, args.agents, 20.0)
    bound_kpi_journal(config, args.kpi_journal_events)
    api = Api(api_port, supervisor_token(config))
    server = start_server(config, port, args.server_cpu, work / "server.log")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(start_agents(work, port, api, args.agents, args.talk, args.sipp_cpu))
        time.sleep(2.0)
        idle_before = sample(server.pid, api, -2.0)
        callers = work / "callers"
        callers.mkdir()
        # Every call the SIPp rate starts dials (probability 1): a steady rate, not Poisson.
        (callers / "callers.xml").write_text(
            Template(CALLERS).substitute(probability="1.000001", patience_ms=600_000)
        )
        seconds = args.minutes * 60
        write(
            f"{args.agents} agents, {args.rate:g} calls/s, mean talk {args.talk:g} s, "
            f"{seconds:.0f} s; sampling every {args.interval:g} s\n"
            f"{'t (s)':>7s} {'RSS (MB)':>9s} {'fds':>6s} {'threads':>8s} {'tasks':>7s} "
            f"{'active':>7s} {'started':>9s}\n{_row(idle_before)}  idle\n"
        )
        started = time.monotonic()
        caller_process = subprocess.Popen(
            sipp_command(
                port,
                args.sipp_cpu,
                *("-sf", "callers.xml", "-s", NUMBER, "-p", str(free_udp_port())),
                *("-mp", str(free_udp_port()), "-r", f"{args.rate:g}"),
                *("-m", str(int(args.rate * seconds)), "-l", "100000"),
            ),
            cwd=callers,
            stdout=subprocess.DEVNULL,
            stderr=(callers / "stderr.log").open("wb"),
        )
        processes.append(caller_process)
        samples: list[Sample] = []
        next_at = started + args.interval
        while time.monotonic() < started + seconds:
            time.sleep(max(0.0, min(next_at, started + seconds) - time.monotonic()))
            if time.monotonic() >= next_at:
                next_at += args.interval
                taken = sample(server.pid, api, time.monotonic() - started)
                samples.append(taken)
                write(_row(taken) + "\n")
                sys.stdout.flush()
        try:
            caller_process.wait(args.talk * 10 + 30)
        except subprocess.TimeoutExpired:
            write("callers still in progress\n")
        time.sleep(2.0)
        idle_after = sample(server.pid, api, time.monotonic() - started)
        write(_row(idle_after) + "  idle\n")
        errors = [
            line
            for line in (work / "server.log").read_text(errors="replace").splitlines()
            if " ERROR " in line
        ]
        if errors:
            write(f"server logged {len(errors)} error line(s), first: {errors[0][:200]}\n")
        return samples, idle_before, idle_after
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        stop_server(server)


def summary(
    samples: Sequence[Sample], idle_before: Sample, idle_after: Sample, warm_up: float
) -> list[tuple[str, ...]]:
    loaded = [s for s in samples if s.at >= warm_up] or list(samples)
    first, last = loaded[0], loaded[-1]
    rows: list[tuple[str, ...]] = []
    for index, name in enumerate(Sample.FIELDS):
        digits = 1 if index == 0 else 0
        points = [(s.at, v) for s in loaded if (v := s.values()[index]) is not None]
        slope = slope_per_hour(points)
        rows.append(
            (
                name,
                _n(idle_before.values()[index], digits),
                _n(first.values()[index], digits),
                _n(last.values()[index], digits),
                _n(idle_after.values()[index], digits),
                "-" if slope is None else f"{slope:+.1f}",
            )
        )
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=10.0, help="calls per second")
    parser.add_argument("--talk", type=float, default=2.0, help="mean talk time, seconds")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument(
        "--warm-up", type=float, default=30.0, help="seconds of load before the first point"
    )
    parser.add_argument(
        "--kpi-journal-events",
        type=int,
        default=20_000,
        help="the server's KPI journal bound (api.yaml; shipped: 200,000, which 10 calls/s fill "
        "in about an hour): small enough to be reached within the run",
    )
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--sipp-cpu", type=int, default=1)
    parser.add_argument("--markdown", type=Path, default=None, help="write Markdown here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not tools_present(("sipp", "taskset")):
        return 2
    write = sys.stdout.write
    load_before = load_average()
    write(f"{this_machine()}\nload average {load_before}\n")
    with scratch_directory("cxos-soak-") as work:
        samples, idle_before, idle_after = run(args, work)
    if not samples:
        write("no sample taken under load\n")
        return 1
    load_after = load_average()
    header = (
        "",
        "idle before",
        f"load, {max(args.warm_up, samples[0].at):.0f} s",
        f"load, {samples[-1].at:.0f} s",
        "idle after",
        "slope under load (/h)",
    )
    rows = summary(samples, idle_before, idle_after, args.warm_up)
    calls = (samples[-1].calls_started or 0) - (idle_before.calls_started or 0)
    write(f"\n{'':16s}" + "".join(f"{h:>22s}" for h in header[1:]) + "\n")
    for row in rows:
        write(f"{row[0]:16s}" + "".join(f"{cell:>22s}" for cell in row[1:]) + "\n")
    # The memory curve in a few points: a rise that flattens is a cache at its bound.
    step = max(1, len(samples) // 6)
    curve = ", ".join(f"{s.at / 60:.0f} min {s.rss_mb:.1f}" for s in samples[step - 1 :: step])
    write(f"{calls} calls; RSS (MB): {curve}; load average {load_after}\n")
    write_markdown(
        args.markdown,
        f"{args.minutes:g} min at {args.rate:g} calls/s ({calls} calls through the queue, "
        f"{args.agents} agents, mean talk {args.talk:g} s).\n\n"
        + markdown_table(header, rows)
        + f"\nRSS (MB) along the run: {curve}.\n",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
