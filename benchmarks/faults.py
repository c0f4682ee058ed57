"""Faults under load: Redis restarted, then PostgreSQL stopped for a minute, while callers keep
coming into a queue answered by simulated agents.

    python benchmarks/faults.py [--agents 20] [--occupancy 0.7] [--aht 10] [--baseline 30]
                                [--settle 30] [--outage 60] [--markdown FILE]

`cxos run` is configured with a PostgreSQL and a Redis of the benchmark's own, both started here
on free loopback ports and thrown away after: a PostgreSQL cluster made with the Debian
``initdb``/``pg_ctl`` (as the ``postgres`` account when run as root) and a ``redis-server``
without persistence. Neither the machine's PostgreSQL nor its Redis is touched. Agents and callers
are ``cc_day.py``'s: one SIPp answers for every agent, callers arrive as a Poisson process to
the queue ``day``, and every caller logs when it dialled, was answered, was hung up on by the
server (the agent's BYE relayed) or gave up (``--patience`` after being answered).

Timeline: ``--baseline`` seconds of load; Redis stopped and started again at once (an empty
Redis: every key the server kept there is gone); ``--settle`` seconds; PostgreSQL stopped
(``pg_ctl stop -m fast``) for ``--outage`` seconds and started again; ``--settle`` seconds;
arrivals end and the calls in progress are left to finish.

Reported for each phase, by the time each caller dialled: callers placed, answered (200), ended
by the server's BYE (their agent hung up: the call was connected and torn down properly), gave
up, or never answered; then, for the calls in progress when each fault began, how many still
ended properly. Then the event log: each node numbers its events without gaps (``seq``), so
the events missing from PostgreSQL once the server has caught up are the gaps, and every call
placed should have its ``call.started`` and ``call.ended`` there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from bench_scenarios import CALLERS
from bench_setup import scratch_directory, tools_present
from cc_day import (
    NUMBER,
    TICK_MS,
    Api,
    sipp_command,
    start_agents,
    supervisor_token,
    write_day_config,
)
from machine import this_machine
from report import load_average, markdown_table, write_markdown
from sip_cps import free_tcp_port, free_udp_port, start_server, stop_server

NODE = "bench-1"  # sip_cps.write_config's node name


# --- the private services ------------------------------------------------------------------------


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the postgres account."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not candidates:
        raise SystemExit(f"{name} not found (Debian package postgresql)")
    return str(candidates[-1])


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1:``port`` in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = free_tcp_port()
        directory.mkdir()
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N"]
            ),
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/cxos"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                [
                    *(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-t", "60"),
                    *("-l", str(self.directory / "postgres.log"), "start"),
                ]
            ),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
        )

    def sql(self, query: str, database: str = "cxos") -> list[list[str]]:
        done = subprocess.run(
            [
                *(_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"),
                *("-d", database, "-AtF", "\t", "-c", query),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return [line.split("\t") for line in done.stdout.splitlines() if line]


class PrivateRedis:
    """A ``redis-server`` without persistence on 127.0.0.1:``port``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_tcp_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found (Debian package redis-server)")
        self.process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=(self.directory / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not answer PING")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


# --- what the callers saw -------------------------------------------------------------------------


@dataclass(slots=True)
class Caller:
    sip_call_id: str
    dialled: float
    answered: float | None = None
    ended: float | None = None
    """The server's BYE arrived: the agent hung up and the server tore the call down."""
    gave_up: float | None = None


def read_callers(folder: Path) -> dict[str, Caller]:
    callers: dict[str, Caller] = {}
    for path in folder.glob("*_logs.log"):
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) != 5:
                continue
            step, number, seconds, micros, call_id = parts
            at = float(seconds) + float(micros) / 1e6
            if step == "dial":
                callers[number] = Caller(sip_call_id=call_id, dialled=at)
            elif number in callers:
                setattr(callers[number], step, at)
    return callers


@dataclass(slots=True)
class Phase:
    name: str
    start: float
    end: float
    callers: list[Caller] = field(default_factory=list)

    def row(self, reached_agent: set[str]) -> tuple[str, int, int, int, int, int, int]:
        c = self.callers
        return (
            self.name,
            len(c),
            sum(1 for x in c if x.answered is not None),
            sum(1 for x in c if x.sip_call_id in reached_agent),
            sum(1 for x in c if x.ended is not None),
            sum(1 for x in c if x.gave_up is not None),
            sum(1 for x in c if x.answered is None),
        )


def in_progress_at(callers: Sequence[Caller], instant: float) -> tuple[int, int]:
    """(calls answered before ``instant`` and not over yet, how many of them the server's BYE
    still ended)."""
    live = [
        c
        for c in callers
        if c.answered is not None
        and c.answered < instant
        and min(t for t in (c.ended, c.gave_up, float("inf")) if t is not None) > instant
    ]
    return len(live), sum(1 for c in live if c.ended is not None)


# --- the run --------------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path) -> str:
    write = sys.stdout.write
    postgres = PrivatePostgres(work / "pg")
    redis = PrivateRedis(work / "redis")
    postgres.start()
    processes: list[subprocess.Popen[bytes]] = []
    server = None
    try:
        postgres.sql("CREATE DATABASE cxos", database="postgres")
        redis.start()
        port = free_udp_port()
        config = work / "conf"
        api_port = write_day_config(
            config,
            port,
            args.agents,
            20.0,
            database_url=postgres.url,
            redis_url=redis.url,
        )
        api = Api(api_port, supervisor_token(config))
        server = start_server(config, port, args.server_cpu, work / "server.log")
        processes.append(start_agents(work, port, api, args.agents, args.aht, None))
        rate = args.occupancy * args.agents / args.aht
        total = args.baseline + 2 * args.settle + args.outage
        callers_dir = work / "callers"
        callers_dir.mkdir()
        (callers_dir / "callers.xml").write_text(
            Template(CALLERS).substitute(
                probability=f"{rate * TICK_MS / 1000:.6f}",
                patience_ms=int(args.patience * 1000),
            )
        )
        write(
            f"{args.agents} agents; callers at {rate:.2f}/s for {total:.0f} s; Redis on port "
            f"{redis.port}, PostgreSQL on port {postgres.port} (both private)\n"
        )
        started = time.time()
        callers = subprocess.Popen(
            sipp_command(
                port,
                None,
                *("-sf", "callers.xml", "-s", NUMBER, "-p", str(free_udp_port())),
                *("-mp", str(free_udp_port()), "-r", str(1000 // TICK_MS)),
                *("-m", str(int(total * 1000 / TICK_MS)), "-l", "100000", "-trace_logs"),
            ),
            cwd=callers_dir,
            stdout=subprocess.DEVNULL,
            stderr=(callers_dir / "stderr.log").open("wb"),
        )
        processes.append(callers)

        def until(instant: float) -> None:
            while time.time() < instant:
                time.sleep(min(1.0, max(0.0, instant - time.time())))

        until(started + args.baseline)
        redis_at = time.time()
        redis.stop()
        redis.start()
        write(f"{redis_at - started:5.0f} s  Redis restarted in {time.time() - redis_at:.1f} s\n")
        until(redis_at + args.settle)
        pg_at = time.time()
        postgres.stop()
        write(f"{pg_at - started:5.0f} s  PostgreSQL stopped\n")
        until(pg_at + args.outage)
        pg_back = time.time()
        postgres.start()
        write(f"{pg_back - started:5.0f} s  PostgreSQL started again\n")
        until(pg_back + args.settle)
        ended = time.time()
        write(f"{ended - started:5.0f} s  arrivals over; waiting for the calls in progress\n")
        try:
            callers.wait(args.patience + 30)
        except subprocess.TimeoutExpired:
            write("callers still in progress; stopping them\n")
        sys.stdout.flush()
        stored = _wait_for_events(postgres)
        by_type = dict(
            (kind, int(count))
            for kind, count in postgres.sql("SELECT type, count(*) FROM events GROUP BY type")
        )
        seq = postgres.sql(
            f"SELECT count(*), min(seq), max(seq) FROM events WHERE node = '{NODE}'"
        )[0]
        started_ids = {
            row[0]
            for row in postgres.sql(
                "SELECT envelope->'data'->>'sip_call_id' FROM events WHERE type = 'call.started'"
            )
        }
        # The caller cannot tell an agent from the server: the event log can.
        reached_agent = {
            row[0]
            for row in postgres.sql(
                "SELECT envelope->'data'->>'sip_call_id' FROM events WHERE type = 'call.started' "
                "AND call_id IN (SELECT call_id FROM events WHERE type = 'call.agent_answered')"
            )
        }
        ended_calls = int(
            postgres.sql(
                "SELECT count(DISTINCT call_id) FROM events WHERE type = 'call.ended' AND "
                "call_id IN (SELECT call_id FROM events WHERE type = 'call.started')"
            )[0][0]
        )
        # Why calls that were never answered ended (the CDR's cause), a few of them.
        unanswered = [
            row[0]
            for row in postgres.sql(
                "SELECT envelope->>'data' FROM events WHERE type = 'call.ended' AND call_id NOT "
                "IN (SELECT call_id FROM events WHERE type = 'call.answered') LIMIT 3"
            )
        ]
        log_lines = (work / "server.log").read_text(errors="replace").splitlines()
        log_errors = [line for line in log_lines if " ERROR " in line]
        # The exception each traceback ended with, e.g. "ConnectionError: ...".
        exceptions = sorted(
            {
                line.split(":")[0]
                for line in log_lines
                if line
                and not line[0].isspace()
                and "Error" in line.split(":")[0]
                and " " not in line.split(":")[0]
            }
        )
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        if server is not None:
            stop_server(server)
        redis.stop()
        postgres.stop()

    seen = read_callers(callers_dir)
    phases = [
        Phase(name="baseline", start=started, end=redis_at),
        Phase(name="after the Redis restart", start=redis_at, end=pg_at),
        Phase(name=f"PostgreSQL down ({args.outage:g} s)", start=pg_at, end=pg_back),
        Phase(name="PostgreSQL back", start=pg_back, end=ended + 1),
    ]
    for caller in seen.values():
        for phase in phases:
            if phase.start <= caller.dialled < phase.end:
                phase.callers.append(caller)
    header = (
        "callers dialling",
        "placed",
        "answered",
        "reached an agent",
        "ended by the server",
        "gave up",
        "no answer",
    )
    table = markdown_table(header, [p.row(reached_agent) for p in phases])
    redis_live = in_progress_at(list(seen.values()), redis_at)
    pg_live = in_progress_at(list(seen.values()), pg_at)
    count, low, high = (int(v) if v else 0 for v in seq)
    gaps = (high - low + 1 - count) if count else 0
    placed_ids = {c.sip_call_id for c in seen.values()}
    missing_started = len(placed_ids - started_ids)
    lines = [
        table,
        f"- Calls in progress when Redis restarted: {redis_live[0]}; ended properly by the "
        f"server afterwards: {redis_live[1]}.",
        f"- Calls in progress when PostgreSQL stopped: {pg_live[0]}; ended properly by the "
        f"server afterwards: {pg_live[1]}.",
        f"- Event log after the server caught up ({stored}): {count} events of node `{NODE}`, "
        f"seq {low}–{high}, {gaps} missing; {len(placed_ids)} callers dialled, "
        f"{missing_started} without a `call.started`; {len(started_ids)} `call.started`, "
        f"{ended_calls} of those calls with a `call.ended`.",
        f"- Server log: {len(log_errors)} ERROR line(s)"
        + (f", first: `{log_errors[0][24:200]}`" if log_errors else "")
        + (f"; exceptions: {', '.join(f'`{e}`' for e in exceptions)}" if exceptions else "")
        + ".",
        *(f"- A call never answered ended with: `{data[:300]}`." for data in unanswered),
        f"- Events by type: {', '.join(f'{k} {v}' for k, v in sorted(by_type.items()))}.",
    ]
    return "\n".join(lines) + "\n"


def _wait_for_events(postgres: PrivatePostgres, quiet: float = 5.0, limit: float = 120.0) -> str:
    """Wait until the event count stops growing (the server replays its spool after an outage)."""
    began = time.monotonic()
    last, since = -1, time.monotonic()
    while time.monotonic() - began < limit:
        try:
            count = int(postgres.sql("SELECT count(*) FROM events")[0][0])
        except subprocess.CalledProcessError:
            count = -1
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return f"count steady for {quiet:g} s"
        time.sleep(1.0)
    return f"count still changing after {limit:g} s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--occupancy", type=float, default=0.7)
    parser.add_argument("--aht", type=float, default=10.0, help="mean talk time, seconds")
    parser.add_argument("--patience", type=float, default=120.0)
    parser.add_argument("--baseline", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--outage", type=float, default=60.0, help="PostgreSQL down, seconds")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--markdown", type=Path, default=None, help="write Markdown here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not tools_present(("sipp", "taskset", "redis-server", "redis-cli", "psql"), None):
        return 2
    write = sys.stdout.write
    load_before = load_average()
    write(f"{this_machine()}\nload average {load_before}\n")
    with scratch_directory("cxos-faults-") as work:
        report = run(args, work)
    load_after = load_average()
    write(f"\n{report}load average {load_after}\n")
    write_markdown(
        args.markdown,
        f"{args.agents} agents, callers at {args.occupancy:g} occupancy with {args.aht:g} s "
        f"mean talk; baseline {args.baseline:g} s, {args.settle:g} s after each fault, "
        f"PostgreSQL down {args.outage:g} s.\n\n{report}",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
