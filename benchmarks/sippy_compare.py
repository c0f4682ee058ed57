"""Call setup rate of CXOS beside sippy's B2BUA, each on one core, measured the same way.

    python benchmarks/sippy_compare.py [--rates 100,200,250,300,350,400,450,500]
                                       [--cxos-rates 100,200,300,400,500,600,800]
                                       [--seconds 10] [--cost-rate 100]
                                       [--server-cpu 0] [--sipp-cpu 1] [--no-install]
                                       [--markdown FILE]

sippy (PyPI ``sippy``, a Python B2BUA) runs its ``b2bua_simple`` on 127.0.0.1 pinned to one
core, between SIPp's stock ``uac`` and a SIPp ``uas``: every call is two SIP legs, INVITE/200/ACK
and BYE on each, signalling only. CXOS runs as in ``sip_cps.py`` (same configuration, same
warm-up): the shipped IVR answers every call, its events go to the embedded PostgreSQL on the
same core. The rate ramp, the SIPp command and the parsing of its statistics are
``sip_cps.py``'s own. For each system three ceilings are reported, and the ratio CXOS / sippy of
each (the project's target is at least 3). First, the highest rate with 0 failed calls and a
99th percentile INVITE→200 under 50 ms: the bar ``sip_cps.py`` holds CXOS to for its own
target of 500 calls/s, so both servers are judged alike; it puts sippy's capacity where the
project's estimate of it was (about 150-170 calls/s per core). Second, the highest rate with no
retransmission: a server that makes its callers retransmit has answered them more than 500 ms
late (RFC 3261 Timer A) and is overloaded. Third, the highest with 0 failed calls: both servers
go on completing calls, seconds late, for several times the other ceilings before SIPp counts a
failure within the run, so it measures how each collapses more than what it carries. Last, the
ratio of their CPU time per call at ``--cost-rate`` calls/s (CXOS's embedded database included),
which a busy neighbour on a shared machine disturbs less than the failure of one call does.

sippy is not a dependency of CXOS: when it is missing this script installs it into the running
Python environment (``pip install sippy==2.5.0``, also the ``bench`` extra of pyproject.toml),
unless ``--no-install`` is given.

SIPp's stock ``uas`` puts ``;transport=UDP`` in its Contact, and sippy 2.5.0 compares the
transport parameter case-sensitively (RFC 3261 §19.1.4 says it is case-insensitive): its BYE
towards the UAS then fails with "unsupported transport: UDP". The UAS scenario used here is
SIPp's own (``sipp -sd uas``) with that parameter removed. It also leaves out the UAS's 180
Ringing: sippy now and then relays the 180 after the 200 (a provisional response after the
final one), which SIPp's uac counts as a failed call; with the 180 sippy's ramp stops at
failures that are not its capacity.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench_setup import scratch_directory, sipp_binary, tools_present
from machine import this_machine
from report import load_average, markdown_table, write_markdown
from sip_cps import (
    HEADER,
    TARGET_P99_MS,
    RateResult,
    free_udp_port,
    markdown,
    run_rate,
    start_server,
    stop_server,
    write_config,
)

SIPPY_VERSION = "2.5.0"
TARGET_RATIO = 3.0
DEFAULT_SIPPY_RATES = (100, 125, 150, 200, 250, 300, 350, 400, 500, 600, 800, 1000)
DEFAULT_CXOS_RATES = (100, 300, 500, 600, 700, 800, 900, 1000, 1200, 1500)


def ensure_sippy(install: bool) -> bool:
    if importlib.util.find_spec("sippy") is not None:
        return True
    if not install:
        sys.stderr.write(f"sippy is not installed: pip install sippy=={SIPPY_VERSION}\n")
        return False
    sys.stdout.write(
        f"sippy is not installed; installing sippy=={SIPPY_VERSION} into {sys.prefix} for this "
        "benchmark only (not a CXOS dependency)\n"
    )
    sys.stdout.flush()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", f"sippy=={SIPPY_VERSION}"],
        check=False,
    )
    importlib.invalidate_caches()
    return done.returncode == 0 and importlib.util.find_spec("sippy") is not None


def sip_answers(port: int, timeout: float = 0.5) -> bool:
    """True when something answers an OPTIONS on ``port`` with any SIP response (sippy's
    b2bua_simple answers 501, which is enough to know it is up)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        local = sock.getsockname()[1]
        stamp = time.monotonic_ns()
        sock.sendto(
            (
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-probe-{stamp}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@127.0.0.1:{local}>;tag=probe\r\n"
                f"To: <sip:127.0.0.1:{port}>\r\n"
                f"Call-ID: probe-{stamp}\r\n"
                "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            ("127.0.0.1", port),
        )
        sock.settimeout(timeout)
        try:
            return sock.recv(65536).startswith(b"SIP/2.0 ")
        except TimeoutError:
            return False


def start_uas(work: Path, cpu: int) -> tuple[subprocess.Popen[bytes], int]:
    """SIPp's stock UAS without ``;transport=UDP`` in its Contact and without its 180 (see the
    module docstring)."""
    folder = work / "uas"
    folder.mkdir()
    sipp = sipp_binary()
    # `sipp -sd` prints the scenario and exits 99 (its "help" exit status).
    stock = subprocess.run([sipp, "-sd", "uas"], capture_output=True, text=True, check=False)
    if "<scenario" not in stock.stdout:
        raise RuntimeError(f"sipp -sd uas printed no scenario:\n{stock.stderr[-1000:]}")
    scenario = stock.stdout.replace(";transport=[transport]", "")
    # Without its 180: sippy sometimes relays the 180 after the 200 (a provisional response
    # after the final one, which RFC 3261 §17.2.1 does not allow), and SIPp's uac then aborts
    # the call on an unexpected message: about one call in a thousand at 100 calls/s.
    scenario, removed = re.subn(
        r"<send>\s*<!\[CDATA\[\s*SIP/2\.0 180 Ringing.*?\]\]>\s*</send>",
        "",
        scenario,
        count=1,
        flags=re.DOTALL,
    )
    if removed != 1:
        raise RuntimeError("SIPp's uas scenario has no 180 Ringing to remove")
    (folder / "uas.xml").write_text(scenario)
    port = free_udp_port()
    process = subprocess.Popen(
        [
            *("taskset", "-c", str(cpu), sipp, "-sf", "uas.xml"),
            *("-i", "127.0.0.1", "-p", str(port), "-mp", str(free_udp_port()), "-nostdin"),
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=(folder / "stderr.log").open("wb"),
    )
    return process, port


def start_sippy(work: Path, cpu: int, uas_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_udp_port()
    # Warnings only, to stderr (its default is every message at INFO): CXOS logs at WARNING too.
    env = {**os.environ, "SIPLOG_LVL": "WARN", "SIPLOG_BEND": "stderr"}
    with (work / "sippy.log").open("wb") as log:
        process = subprocess.Popen(
            [
                *("taskset", "-c", str(cpu), sys.executable, "-m", "sippy.b2bua_simple"),
                *("-f", "-l", "127.0.0.1", "-p", str(port), "-n", f"127.0.0.1:{uas_port}"),
            ],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sippy exited:\n{(work / 'sippy.log').read_text()[-2000:]}")
        if sip_answers(port):
            return process, port
    stop_server(process)
    raise RuntimeError("sippy did not answer OPTIONS")


def ramp(
    name: str,
    *,
    port: int,
    pid: int,
    rates: Sequence[int],
    seconds: float,
    cpu: int,
    work: Path,
    database_dir: Path,
) -> list[RateResult]:
    """sip_cps.py's method: rising rates, stop after the first with a failed call."""
    write = sys.stdout.write
    write(f"\n{name}\n{HEADER}\n")
    results: list[RateResult] = []
    for index, rate in enumerate(rates):
        result = run_rate(
            port=port,
            pid=pid,
            rate=rate,
            calls=max(1, int(rate * seconds)),
            hold_ms=0,
            cpu=cpu,
            workdir=work / f"{name}-{index}-{rate}",
            database_dir=database_dir,
        )
        results.append(result)
        write(result.row() + "\n")
        sys.stdout.flush()
        if result.failed:
            break
        time.sleep(1.0)  # let the last calls' transactions end before the next rate
    return results


def best(
    results: Sequence[RateResult], *, strict: bool = False, max_p99_ms: float | None = None
) -> RateResult | None:
    """The highest rate with 0 failed calls; with ``strict``, also with no retransmission: a
    rate carried only thanks to the caller's retransmissions (the server answering seconds
    late) is a rate the server did not keep up with; with ``max_p99_ms``, also with its 99th
    percentile INVITE→200 under that (sip_cps.py's bar for the call-rate target)."""
    clean = [
        r
        for r in results
        if r.failed == 0
        and r.attempted > 0
        and not (strict and r.retransmissions)
        and (max_p99_ms is None or (r.percentile(0.99) or 0.0) < max_p99_ms)
    ]
    return max(clean, key=lambda r: r.rate) if clean else None


def compare(
    sippy_results: Sequence[RateResult],
    cxos_results: Sequence[RateResult],
    *,
    strict: bool = False,
    max_p99_ms: float | None = None,
) -> str:
    """The ratio of the two ceilings and the verdict against the target, as one phrase."""
    sippy_best = best(sippy_results, strict=strict, max_p99_ms=max_p99_ms)
    cxos_best = best(cxos_results, strict=strict, max_p99_ms=max_p99_ms)
    if sippy_best is None or cxos_best is None:
        return "- (a server carried no rate tried)"
    ratio = cxos_best.rate / sippy_best.rate
    # A system whose ceiling is the last rate tried may carry more than measured.
    cxos_open = cxos_best is cxos_results[-1]
    sippy_open = sippy_best is sippy_results[-1]
    if ratio >= TARGET_RATIO and not sippy_open:
        verdict = "met"
    elif ratio < TARGET_RATIO and not cxos_open:
        verdict = "missed"
    else:
        verdict = "not settled: widen the rates"
    return (
        f"{ratio:.1f} (sippy {sippy_best.rate}, CXOS {cxos_best.rate} calls/s); "
        f"target >= {TARGET_RATIO:g}: {verdict}"
    )


def call_cost(results: Sequence[RateResult], rate: int) -> float | None:
    """CPU milliseconds per call at ``rate``, the server's database included."""
    found = next((r for r in results if r.rate == rate and r.cpu_ms_per_call is not None), None)
    if found is None:
        return None
    return (found.cpu_ms_per_call or 0.0) + (found.database_ms_per_call or 0.0)


def measure_sippy(args: argparse.Namespace, work: Path) -> list[RateResult]:
    uas, uas_port = start_uas(work, args.sipp_cpu)
    try:
        sippy, port = start_sippy(work, args.server_cpu, uas_port)
        try:
            return ramp(
                f"sippy {SIPPY_VERSION} b2bua_simple (pid {sippy.pid}) on CPU {args.server_cpu}",
                port=port,
                pid=sippy.pid,
                rates=args.rates,
                seconds=args.seconds,
                cpu=args.sipp_cpu,
                work=work,
                database_dir=work / "none",
            )
        finally:
            stop_server(sippy)
            crashes = (work / "sippy.log").read_text(errors="replace").count("Traceback")
            if crashes:
                sys.stdout.write(f"sippy logged {crashes} exception(s); see its log\n")
    finally:
        stop_server(uas)


def measure_cxos(args: argparse.Namespace, work: Path) -> list[RateResult]:
    port = free_udp_port()
    config = work / "conf"
    write_config(config, port, None)
    server = start_server(config, port, args.server_cpu, work / "server.log")
    try:
        database = config / "data" / "postgres"
        # As in sip_cps.py: a few calls held 3 s render the IVR's prompts once, not counted.
        run_rate(
            port=port,
            pid=server.pid,
            rate=5,
            calls=10,
            hold_ms=3000,
            cpu=args.sipp_cpu,
            workdir=work / "warm-up",
            database_dir=database,
        )
        time.sleep(1.0)
        return ramp(
            f"CXOS (pid {server.pid}) on CPU {args.server_cpu}",
            port=port,
            pid=server.pid,
            rates=args.cxos_rates,
            seconds=args.seconds,
            cpu=args.sipp_cpu,
            work=work,
            database_dir=database,
        )
    finally:
        stop_server(server)


def _rates(value: str) -> tuple[int, ...]:
    return tuple(int(r) for r in value.split(",") if r.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rates", type=_rates, default=DEFAULT_SIPPY_RATES, help="sippy's")
    parser.add_argument("--cxos-rates", type=_rates, default=DEFAULT_CXOS_RATES)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each rate")
    parser.add_argument(
        "--cost-rate",
        type=int,
        default=100,
        help="rate (in both lists) at which the CPU per call is compared",
    )
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--sipp-cpu", type=int, default=1)
    parser.add_argument("--no-install", action="store_true", help="do not pip install sippy")
    parser.add_argument("--markdown", type=Path, default=None, help="write a Markdown table here")
    return parser


def _figures(result: RateResult | None) -> tuple[str, str, str]:
    if result is None:
        return "none", "-", "-"
    p99 = result.percentile(0.99)
    cpu = result.cpu_ms_per_call
    return (
        f"{result.rate}",
        "-" if p99 is None else f"{p99:.0f}",
        "-" if cpu is None else f"{cpu:.2f}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not tools_present(("sipp", "taskset")):
        return 2
    if not ensure_sippy(not args.no_install):
        return 2
    write = sys.stdout.write
    load_before = load_average()
    write(f"{this_machine()}\nload average {load_before}\n")
    with scratch_directory("cxos-sippy-") as work:
        sippy_results = measure_sippy(args, work)
        cxos_results = measure_cxos(args, work)
    load_after = load_average()
    sippy_best, cxos_best = best(sippy_results), best(cxos_results)
    write(
        f"\nhighest rate with 0 failed calls: sippy {_figures(sippy_best)[0]} calls/s, "
        f"CXOS {_figures(cxos_best)[0]} calls/s\n"
    )
    ratio_text = compare(sippy_results, cxos_results, strict=False)
    strict_text = compare(sippy_results, cxos_results, strict=True)
    prompt_text = compare(sippy_results, cxos_results, max_p99_ms=TARGET_P99_MS)
    prompt = f"p99 INVITE→200 < {TARGET_P99_MS:g} ms"
    # On a shared machine a neighbour's burst can fail a rate the server would carry; the CPU
    # each call costs at one rate both carry is the steadier comparison.
    sippy_cost = call_cost(sippy_results, args.cost_rate)
    cxos_cost = call_cost(cxos_results, args.cost_rate)
    cost_ratio = sippy_cost / cxos_cost if sippy_cost and cxos_cost else None
    cost_text = (
        "-"
        if cost_ratio is None or sippy_cost is None or cxos_cost is None
        else f"{cost_ratio:.1f} (sippy {sippy_cost:.2f} ms, CXOS {cxos_cost:.2f} ms with its "
        "database)"
    )
    write(
        f"CXOS / sippy, highest rates with 0 failed calls and {prompt}: {prompt_text}\n"
        f"CXOS / sippy, highest rates with no retransmission: {strict_text}\n"
        f"CXOS / sippy, highest rates with 0 failed calls: {ratio_text}\n"
        f"CPU per call, sippy / CXOS, at {args.cost_rate} calls/s: {cost_text}\n"
        f"load average {load_after}\n"
    )
    table = markdown_table(
        (
            "server",
            f"highest rate, {prompt} (calls/s)",
            "highest rate, no retransmission (calls/s)",
            "its p99 INVITE→200 (ms)",
            "its CPU/call (ms)",
            "highest rate, 0 failed (calls/s)",
        ),
        [
            (
                f"sippy {SIPPY_VERSION} `b2bua_simple` (uac → sippy → uas)",
                _figures(best(sippy_results, max_p99_ms=TARGET_P99_MS))[0],
                *_figures(best(sippy_results, strict=True)),
                _figures(sippy_best)[0],
            ),
            (
                "CXOS `cxos run` (uac → IVR)",
                _figures(best(cxos_results, max_p99_ms=TARGET_P99_MS))[0],
                *_figures(best(cxos_results, strict=True)),
                _figures(cxos_best)[0],
            ),
        ],
    )
    write_markdown(
        args.markdown,
        f"Each {args.seconds:g} s per rate; sippy tried {', '.join(map(str, args.rates))}, "
        f"CXOS {', '.join(map(str, args.cxos_rates))} calls/s.\n\n{table}\n"
        f"**CXOS / sippy, highest rates with 0 failed calls and {prompt}: {prompt_text}.**\n"
        f"Highest rates with no retransmission: {strict_text}. "
        f"Highest rates with 0 failed calls: {ratio_text}. "
        f"CPU per call at {args.cost_rate} calls/s, sippy / CXOS: {cost_text}.\n\n"
        f"sippy {SIPPY_VERSION}:\n\n{markdown(sippy_results)}\nCXOS:\n\n{markdown(cxos_results)}",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
