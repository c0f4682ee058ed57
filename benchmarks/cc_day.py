"""A contact-center day in minutes: 100 simulated agents at about 80 % occupancy, callers
arriving at random, the server's own KPIs beside what Erlang C predicts for the same traffic.

    python benchmarks/cc_day.py [--minutes 10] [--agents 100] [--occupancy 0.8] [--aht 20]
                                [--sl-seconds 20] [--patience 300] [--server-cpu 0]
                                [--sipp-cpu 1] [--markdown FILE]

`cxos run` starts on the shipped configuration plus one queue, ``day`` (longest idle, no
wrap-up, one skill every bench agent has), reached by dialling 200, and ``--agents`` agents
written into a temporary agents.yaml. One SIPp process registers every agent (each its own
user, digest authentication, all with the same Contact) and a second SIPp, listening on that
Contact, answers for all of them at once: it answers each INVITE at once, talks for an
exponentially distributed time (mean ``--aht``) and hangs up. The agents are logged in through
the REST API.

Callers come from a third SIPp as a Poisson process of rate λ = occupancy × agents / AHT: SIPp
starts a call every 20 ms, and each goes on to dial with probability λ × 20 ms (a thinned
lattice; gaps between callers are geometric, i.e. exponential to within 20 ms). The server
answers each caller and queues it; a caller who is not connected and hung up within
``--patience`` seconds of being answered gives up (abandons).

After the arrival window the calls in progress are left to end (up to ``--drain-aht`` mean
handle times). Then it reads ``GET /api/kpis/queues`` and ``/api/kpis/agents`` for the arrival
window without its first part (``--warm-up``, by default three mean handle times or half the
run: the centre starts empty, and the number of busy agents approaches its steady state as
1 − e^(−t/AHT)), and prints service level (answered within ``--sl-seconds``), ASA, abandon rate
and occupancy beside Erlang C's prediction for the traffic actually offered: the arrival rate
measured in that window times the mean handle time of every call of the run. Erlang C (M/M/N)
assumes exponential handle times, callers who never give up and no delay between an agent
becoming free and taking the next caller; every difference beyond those is the server's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from string import Template
from typing import Any

from bench_scenarios import AGENT_PHONES, CALLERS
from bench_setup import scratch_directory, sipp_binary, tools_present
from erlang import DayResult, ErlangC, comparison_text, rows
from machine import this_machine
from report import load_average, markdown_table, write_markdown
from ruamel.yaml import YAML
from sip_cps import cpu_seconds, free_udp_port, start_server, stop_server, write_config

from cxos.demo import SCENARIOS

QUEUE = "day"
NUMBER = "200"
#: SIPp starts one (possible) caller per tick; each dials with probability rate × tick.
TICK_MS = 20


# --- configuration and SIPp scenarios ------------------------------------------------------------


def agent_ids(count: int) -> list[tuple[str, str, str]]:
    """(agent id, SIP user, password) of each simulated agent."""
    return [(f"bench{i:03d}", f"7{i:03d}", f"bench-secret-{i:03d}") for i in range(1, count + 1)]


def write_day_config(
    directory: Path,
    port: int,
    agents: int,
    sl_seconds: float,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
) -> int:
    """The benchmark's configuration in ``directory``; returns the API port. Without
    ``database_url`` the server starts its embedded PostgreSQL; without ``redis_url`` it keeps
    queues and agents in process."""
    write_config(directory, port, database_url)
    yaml = YAML()
    server = yaml.load(directory / "server.yaml")
    if redis_url is not None:
        server.setdefault("storage", {})["redis_url"] = redis_url
        with (directory / "server.yaml").open("w") as handle:
            yaml.dump(server, handle)
    # Tokens and the dial plan stay as shipped, with the bench's queue added beside them.
    agents_doc = yaml.load(directory / "agents.yaml")
    for agent_id, user, password in agent_ids(agents):
        agents_doc["agents"].append(
            {"id": agent_id, "sip_user": user, "password": password, "skills": {QUEUE: 1}}
        )
    queues_doc = yaml.load(directory / "queues.yaml")
    queues_doc["queues"][QUEUE] = {
        "name": "A day in minutes",
        "skills": {QUEUE: 1},
        "strategy": "longest_idle",
        "servicelevel": sl_seconds,
        "timeout": 15,
        "wrapuptime": 0,
    }
    dialplan_doc = yaml.load(directory / "dialplan.yaml")
    dialplan_doc["numbers"][NUMBER] = {"queue": QUEUE}
    api_doc = yaml.load(directory / "api.yaml")
    api_doc.setdefault("queues", {})[QUEUE] = {
        "service_level_seconds": sl_seconds,
        "service_level_percent": 80,
    }
    for name, document in (
        ("agents.yaml", agents_doc),
        ("queues.yaml", queues_doc),
        ("dialplan.yaml", dialplan_doc),
        ("api.yaml", api_doc),
    ):
        with (directory / name).open("w") as handle:
            yaml.dump(document, handle)
    return int(server["api"]["port"])


def supervisor_token(directory: Path) -> str:
    tokens = YAML().load(directory / "api.yaml")["tokens"]
    return str(next(t["token"] for t in tokens if t["role"] in ("supervisor", "admin")))


def sipp_command(
    port: int,
    cpu: int | None,
    *args: str,
    server: str = "127.0.0.1",
    local: str = "127.0.0.1",
) -> list[str]:
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    return [*pin, sipp_binary(), f"{server}:{port}", *("-i", local, "-nostdin"), *args]


def register_agents(
    work: Path, server_port: int, phone_port: int, agents: int, expires: int = 3600
) -> None:
    """One SIPp run registering every agent from ``phone_port`` (their shared Contact)."""
    folder = work / "register"
    folder.mkdir()
    scenario = folder / "register.xml"
    text = Template((SCENARIOS / "agent_register.xml").read_text()).substitute(expires=expires)
    scenario.write_text(text)
    users = folder / "users.csv"
    users.write_text(
        "SEQUENTIAL\n"
        + "".join(
            f"{user};[authentication username={user} password={password}]\n"
            for _, user, password in agent_ids(agents)
        )
    )
    command = sipp_command(
        server_port,
        None,
        *("-sf", str(scenario), "-inf", str(users), "-m", str(agents), "-r", "20"),
        *("-p", str(phone_port), "-timeout", "60s", "-timeout_error"),
    )
    done = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=90, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"registering the agents failed (SIPp {done.returncode}):\n{done.stdout[-2000:]}"
        )


# --- the supervisor API --------------------------------------------------------------------------


class Api:
    def __init__(self, port: int, token: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def request(self, method: str, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=b"{}" if method == "POST" else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}")
        return body

    def metrics(self) -> str:
        """The server's ``/metrics`` page (Prometheus text format)."""
        request = urllib.request.Request(
            f"{self.base}/metrics", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(response.read().decode())


def metric(text: str, name: str) -> int | None:
    """The value of an unlabelled series of a ``/metrics`` page, or None without it."""
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else None


def rfc3339(instant: float) -> str:
    return datetime.datetime.fromtimestamp(instant, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def start_agents(
    work: Path,
    port: int,
    api: Api,
    agents: int,
    talk_s: float,
    cpu: int | None,
    *,
    echo: bool = False,
) -> subprocess.Popen[bytes]:
    """Register ``agents`` agents, start the one SIPp that answers for all of them (talk times
    drawn from an exponential distribution of mean ``talk_s`` seconds; with ``echo``, exactly
    ``talk_s`` seconds, sending back the audio it gets) and log them in through the API;
    returns that SIPp process."""
    talk_ms = int(talk_s * 1000)
    if echo:
        talk, pause = f"{talk_ms} ms", f'<pause milliseconds="{talk_ms}"/>'
    else:
        talk = f"exponentially distributed, mean {talk_ms} ms"
        pause = f'<pause distribution="exponential" mean="{talk_ms}"/>'
    phone_port = free_udp_port()
    register_agents(work, port, phone_port, agents)
    phones = work / "phones"
    phones.mkdir()
    (phones / "agents.xml").write_text(Template(AGENT_PHONES).substitute(talk=talk, pause=pause))
    process = subprocess.Popen(
        sipp_command(
            port,
            cpu,
            *("-sf", "agents.xml", "-p", str(phone_port), "-mp", str(free_udp_port())),
            *("-l", "100000"),
            *(("-rtp_echo",) if echo else ()),
        ),
        cwd=phones,
        stdout=subprocess.DEVNULL,
        stderr=(phones / "stderr.log").open("wb"),
    )
    for agent_id, _, _ in agent_ids(agents):
        status, _ = api.request("POST", f"/api/agents/{agent_id}/login")
        if status not in (202, 409):  # 409: already logged in
            process.terminate()
            raise RuntimeError(f"login of {agent_id}: HTTP {status}")
    return process


# --- the run -------------------------------------------------------------------------------------


def run_day(args: argparse.Namespace, work: Path) -> DayResult:
    write = sys.stdout.write
    rate = args.occupancy * args.agents / args.aht
    probability = rate * TICK_MS / 1000
    if probability >= 1:
        raise SystemExit(f"{rate:.1f} calls/s is more than one per {TICK_MS} ms tick")
    port = free_udp_port()
    config = work / "conf"
    api_port = write_day_config(config, port, args.agents, args.sl_seconds)
    api = Api(api_port, supervisor_token(config))
    server = start_server(config, port, args.server_cpu, work / "server.log")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(start_agents(work, port, api, args.agents, args.aht, args.sipp_cpu))
        time.sleep(1.0)
        available = sum(1 for a in api.get("/api/agents")["agents"] if a["state"] == "available")
        write(
            f"{args.agents} agents registered and logged in ({available} available); "
            f"callers at {rate:.2f}/s (Poisson), mean handle time {args.aht:g} s, "
            f"offered {rate * args.aht:.1f} erlangs\n"
        )
        duration = args.minutes * 60
        ticks = int(duration * 1000 / TICK_MS)
        callers = work / "callers"
        callers.mkdir()
        (callers / "callers.xml").write_text(
            Template(CALLERS).substitute(
                probability=f"{probability:.6f}", patience_ms=int(args.patience * 1000)
            )
        )
        cpu_before = cpu_seconds(server.pid)
        started = time.time()
        caller_process = subprocess.Popen(
            sipp_command(
                port,
                args.sipp_cpu,
                *("-sf", "callers.xml", "-s", NUMBER, "-p", str(free_udp_port())),
                *("-mp", str(free_udp_port()), "-r", str(1000 // TICK_MS), "-m", str(ticks)),
                *("-l", "100000", "-trace_err"),
            ),
            cwd=callers,
            stdout=subprocess.DEVNULL,
            stderr=(callers / "stderr.log").open("wb"),
        )
        processes.append(caller_process)
        warm_up = args.warm_up if args.warm_up is not None else min(3 * args.aht, duration / 2)
        next_status = started + 10
        while time.time() < started + duration:
            time.sleep(1.0)
            if time.time() >= next_status:
                next_status += 10
                _status(api, started)
        ended = time.time()
        cpu_used = cpu_seconds(server.pid) - cpu_before
        # Calls still in progress end by themselves: every call's handle time is then known
        # (a mean over the calls that ended in the window alone would favour short ones).
        try:
            caller_process.wait(args.drain_aht * args.aht)
        except subprocess.TimeoutExpired:
            write(f"calls still in progress after {args.drain_aht:g} AHT; AHT leaves them out\n")
        drained = time.time()
        window = f"from={rfc3339(started + warm_up)}&to={rfc3339(ended)}"
        queue = _queue_kpis(api, window)
        whole = _queue_kpis(api, f"from={rfc3339(started)}&to={rfc3339(drained)}")
        bench = {a for a, _, _ in agent_ids(args.agents)}
        agent_rows = [
            a for a in api.get(f"/api/kpis/agents?{window}")["agents"] if a["agent_id"] in bench
        ]
        occupancies = [a["occupancy"] for a in agent_rows if a["occupancy"] is not None]
        window_s = ended - started - warm_up
        offered, aht = int(queue["offered"]), whole["aht_seconds"]
        return DayResult(
            agents=args.agents,
            minutes=args.minutes,
            window_s=window_s,
            offered=offered,
            answered=int(queue["answered"]),
            abandoned=int(queue["abandoned"]),
            service_level=queue["service_level"],
            asa=queue["asa_seconds"],
            abandon_rate=queue["abandon_rate"],
            aht=aht,
            occupancy=sum(occupancies) / len(occupancies) if occupancies else None,
            sl_seconds=args.sl_seconds,
            predicted=(
                ErlangC(agents=args.agents, traffic=offered / window_s * aht, aht=aht)
                if offered and aht
                else None
            ),
            server_cpu_pct=cpu_used / (ended - started) * 100,
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
                process.wait(5)
        stop_server(server)


def _queue_kpis(api: Api, window: str) -> dict[str, Any]:
    rows = api.get(f"/api/kpis/queues?{window}")["queues"]
    return dict(next(q for q in rows if q["queue_id"] == QUEUE))


def _status(api: Api, started: float) -> None:
    try:
        queue = next(q for q in api.get("/api/queues")["queues"] if q["queue_id"] == QUEUE)
        states: dict[str, int] = {}
        for agent in api.get("/api/agents")["agents"]:
            if agent["agent_id"].startswith("bench"):
                states[agent["state"]] = states.get(agent["state"], 0) + 1
    except (RuntimeError, OSError, StopIteration) as exc:
        sys.stdout.write(f"{time.time() - started:5.0f} s  API: {exc}\n")
        return
    sys.stdout.write(
        f"{time.time() - started:5.0f} s  waiting {queue['waiting']:3d}  agents "
        + " ".join(f"{k} {v}" for k, v in sorted(states.items()))
        + "\n"
    )
    sys.stdout.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="arrival window")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--occupancy", type=float, default=0.8, help="offered load per agent")
    parser.add_argument("--aht", type=float, default=20.0, help="mean handle time, seconds")
    parser.add_argument("--sl-seconds", type=float, default=20.0, help="service level threshold")
    parser.add_argument(
        "--patience", type=float, default=300.0, help="seconds a caller waits before hanging up"
    )
    parser.add_argument(
        "--warm-up",
        type=float,
        default=None,
        help="seconds left out of the figures at the start (default: 3 AHT, at most half the run)",
    )
    parser.add_argument(
        "--drain-aht",
        type=float,
        default=5.0,
        help="after the arrivals, wait up to this many AHT for the calls in progress to end",
    )
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--sipp-cpu", type=int, default=1)
    parser.add_argument("--markdown", type=Path, default=None, help="write a Markdown table here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not tools_present(("sipp", "taskset")):
        return 2
    write = sys.stdout.write
    load_before = load_average()
    write(f"{this_machine()}\nload average {load_before}\n")
    with scratch_directory("cxos-day-") as work:
        result = run_day(args, work)
    table = rows(result)
    write(comparison_text(table))
    load_after = load_average()
    write(
        f"window {result.window_s:.0f} s of {result.minutes * 60:.0f} s; "
        f"server CPU {result.server_cpu_pct:.0f} % of a core; "
        f"load average {load_after}\n"
    )
    write_markdown(
        args.markdown,
        f"{result.agents} agents, {result.minutes:g} min of Poisson arrivals, figures over the "
        f"last {result.window_s:.0f} s; server CPU {result.server_cpu_pct:.0f} % of a core."
        "\n\n" + markdown_table(("figure", "measured", "Erlang C"), table),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
