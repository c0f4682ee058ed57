"""Run every benchmark and put its latest figures into docs/benchmarks.md (``make bench``).

    python benchmarks/run_all.py [--quick] [--only NAME[,NAME]] [--skip NAME[,NAME]]
                                 [--doc docs/benchmarks.md] [--no-write] [--list]

Each script keeps owning its figures: run_all starts it as its own process with the arguments
listed below (shorter ones with ``--quick``), and pastes what it reported between the markers of
its region in the document::

    <!-- bench:NAME -->
    ... replaced on every run ...
    <!-- /bench:NAME -->

Everything outside the markers (the hand-written analysis) is left alone. A script that takes
``--markdown FILE`` writes its own Markdown there (tables in the document's format); for the
others its printed output is pasted verbatim as a text block. Each region starts with the
command, the date, the load average before and after (the machine may be shared) and the
machine line. A benchmark with no region in the document gets one appended at the end, under a
heading of its own; a failed benchmark leaves its region as it was. The document is read again
and written once per benchmark, so edits made to it meanwhile are kept.

The full run takes about an hour (the soak and fault benchmarks most of it); ``--quick`` about
a quarter of an hour, with figures good enough to see that nothing broke, not to quote.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from machine import this_machine
from report import load_average

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True, slots=True, kw_only=True)
class Benchmark:
    name: str
    """Script name; also the name of its region in the document."""
    title: str
    """Heading used when the document has no region for it yet."""
    args: tuple[str, ...]
    """Arguments for the full run."""
    quick: tuple[str, ...]
    """Arguments for ``--quick``."""
    markdown: bool = False
    """The script takes ``--markdown FILE``."""
    module: bool = False
    """Run as ``python -m benchmarks.NAME`` (its name would shadow a package as a script)."""
    timeout: float = 1800.0
    """Seconds before the script is stopped and counted as failed."""

    def command(self, python: str, *, quick: bool, markdown: Path | None) -> list[str]:
        target = (
            ["-m", f"benchmarks.{self.name}"] if self.module else [f"benchmarks/{self.name}.py"]
        )
        extra = ["--markdown", str(markdown)] if self.markdown and markdown is not None else []
        return [python, *target, *(self.quick if quick else self.args), *extra]


#: In the order they run: micro-benchmarks first (seconds), then what starts servers.
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(name="sip_parse", title="SIP parse and serialise", args=("20000",), quick=("2000",)),
    Benchmark(
        name="rtp_parse", title="RTP parse", args=("--number", "20000"), quick=("--number", "2000")
    ),
    Benchmark(name="g711", title="G.711", args=("--frames", "20000"), quick=("--frames", "2000")),
    Benchmark(
        name="relay",
        title="Media relay per packet",
        args=("--number", "50000"),
        quick=("--number", "5000"),
    ),
    Benchmark(
        name="events_bus",
        title="Event bus",
        args=("--events", "200000"),
        quick=("--events", "20000"),
    ),
    Benchmark(
        name="acd_routing",
        title="ACD routing decisions",
        args=("--decisions", "5000"),
        quick=("--decisions", "500"),
    ),
    Benchmark(
        name="events_store",
        title="Event log into PostgreSQL",
        args=("--rate", "2000", "--seconds", "30"),
        quick=("--rate", "2000", "--seconds", "5"),
    ),
    Benchmark(
        name="events",
        title="Events end to end",
        args=("--rate", "2000", "--seconds", "10"),
        quick=("--rate", "500", "--seconds", "3"),
    ),
    Benchmark(
        name="supervisor",
        title="Supervisor WebSocket fan-out",
        args=("--clients", "500", "--rate", "20", "--seconds", "10"),
        quick=("--clients", "50", "--rate", "20", "--seconds", "3"),
    ),
    Benchmark(
        name="speech",
        title="Speech",
        args=("--streams", "1,2,4,8"),
        quick=("--streams", "1", "--skip-vosk"),
        module=True,
    ),
    Benchmark(
        name="media",
        title="Media relay and playout",
        # The server on a core of its own, as sip_cps.py pins it: unpinned, the scheduler now
        # and then runs a load process on the server's core.
        args=(
            "--bridged",
            "100,250,500,600,700",
            "--playing",
            "200,400,800,1000,1200",
            "--seconds",
            "10",
            "--pin",
        ),
        quick=("--bridged", "50", "--playing", "100", "--seconds", "3"),
    ),
    Benchmark(
        name="media_sipp",
        title="Bridged calls with SIPp on both sides through the whole server",
        args=("--calls", "100,250,500"),
        quick=("--calls", "50", "--window", "3"),
    ),
    Benchmark(
        name="sip_cps",
        title="SIP call setup rate",
        args=("--keep-going",),
        quick=("--rates", "100,200", "--seconds", "3"),
        markdown=True,
    ),
    Benchmark(
        name="sippy_compare",
        title="CXOS against sippy's B2BUA",
        args=(),
        quick=("--rates", "50,100", "--seconds", "3", "--cxos-rates", "100,200,400"),
        markdown=True,
    ),
    Benchmark(
        name="cc_day",
        title="A contact-center day in minutes",
        args=("--minutes", "10"),
        quick=("--minutes", "2"),
        markdown=True,
    ),
    Benchmark(
        name="faults",
        title="Faults under load",
        args=(),
        quick=("--outage", "15", "--settle", "10"),
        markdown=True,
    ),
    Benchmark(
        name="soak",
        title="Soak",
        args=("--minutes", "30"),
        quick=("--minutes", "3"),
        markdown=True,
        timeout=3600.0,
    ),
)


# --- the document -------------------------------------------------------------------------------


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def replace_region(document: str, benchmark: Benchmark, content: str) -> str:
    """``document`` with the region of ``benchmark`` holding ``content``; a region is appended
    (with a heading) when the document has none."""
    start, end = _markers(benchmark.name)
    body = f"{start}\n{content.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(document):
        # A function as replacement: the content is pasted literally (no backslash escapes).
        return pattern.sub(lambda _: body, document, count=1)
    heading = f"## {benchmark.title}: latest run (`benchmarks/{benchmark.name}.py`)"
    return f"{document.rstrip()}\n\n{heading}\n\n{body}\n"


def region_content(
    benchmark: Benchmark,
    command: Sequence[str],
    *,
    output: str,
    markdown: str | None,
    began: datetime.datetime,
    seconds: float,
    load_before: str,
    load_after: str,
) -> str:
    # As a reader would type it, without run_all's temporary --markdown file.
    shown = " ".join(shlex.quote(part) for part in command[1:])
    machine = str(this_machine()).removeprefix("machine: ")
    lines = [
        f"Latest run: `.venv/bin/python {shown}`",
        f"({began:%Y-%m-%d %H:%M} UTC, {seconds:.0f} s; load average {load_before} before, "
        f"{load_after} after;",
        f"{machine}).",
        "",
    ]
    if markdown and markdown.strip():
        lines.append(markdown.rstrip())
    else:
        lines += ["```text", output.rstrip(), "```"]
    return "\n".join(lines) + "\n"


# --- running ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    name: str
    returncode: int
    seconds: float


def _run_echoing(command: Sequence[str], timeout: float) -> tuple[str, int]:
    """Run ``command``, echoing its output line by line as it comes (a soak prints for half an
    hour) and keeping it; killed after ``timeout`` seconds (exit status -9 then)."""
    lines: list[str] = []
    with subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # lines as they are printed
    ) as process:
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            for line in process.stdout or ():
                lines.append(line)
                sys.stdout.write(line)
                sys.stdout.flush()
            returncode = process.wait()
        finally:
            watchdog.cancel()
    if returncode == -9:
        lines.append(f"(stopped after {timeout:g} s)\n")
    return "".join(lines), returncode


def run_one(benchmark: Benchmark, *, quick: bool, doc: Path | None) -> Outcome:
    write = sys.stdout.write
    with tempfile.TemporaryDirectory(prefix="cxos-bench-md-") as scratch:
        fragment = Path(scratch) / f"{benchmark.name}.md"
        command = benchmark.command(sys.executable, quick=quick, markdown=fragment)
        write(f"\n=== {benchmark.name}: {' '.join(command[1:])}\n")
        sys.stdout.flush()
        load_before = load_average()
        began = datetime.datetime.now(datetime.UTC)
        started = time.monotonic()
        output, returncode = _run_echoing(command, benchmark.timeout)
        seconds = time.monotonic() - started
        if returncode != 0:
            write(
                f"=== {benchmark.name} FAILED (exit {returncode}): its region is left as it was\n"
            )
            return Outcome(name=benchmark.name, returncode=returncode, seconds=seconds)
        if doc is not None:
            content = region_content(
                benchmark,
                benchmark.command(sys.executable, quick=quick, markdown=None),
                output=output,
                markdown=fragment.read_text() if fragment.exists() else None,
                began=began,
                seconds=seconds,
                load_before=load_before,
                load_after=load_average(),
            )
            # Read just before writing: the analysis around the regions may have been edited.
            doc.write_text(replace_region(doc.read_text(), benchmark, content))
            write(f"=== {benchmark.name}: {seconds:.0f} s, region written to {doc.name}\n")
        return Outcome(name=benchmark.name, returncode=0, seconds=seconds)


def _names(value: str | None) -> set[str]:
    return {n.strip() for n in (value or "").split(",") if n.strip()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test")
    parser.add_argument("--only", default=None, help="comma-separated benchmark names")
    parser.add_argument("--skip", default=None, help="comma-separated benchmark names")
    parser.add_argument("--doc", type=Path, default=DOC, help="document holding the regions")
    parser.add_argument(
        "--no-write", action="store_true", help="run and print, leave the document alone"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    write = sys.stdout.write
    known = {b.name for b in BENCHMARKS}
    only, skip = _names(args.only), _names(args.skip)
    unknown = sorted((only | skip) - known)
    if unknown:
        write(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}\n")
        return 2
    if args.list:
        for b in BENCHMARKS:
            write(
                f"{b.name:15s} {' '.join(b.args) or '(defaults)'}  --quick: {' '.join(b.quick)}\n"
            )
        return 0
    chosen = [b for b in BENCHMARKS if (not only or b.name in only) and b.name not in skip]
    write(f"{this_machine()}\nload average {load_average()}\n")
    write(f"command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}\n")
    doc = None if args.no_write else args.doc.resolve()
    outcomes = [run_one(b, quick=args.quick, doc=doc) for b in chosen]
    write("\nsummary:\n")
    for outcome in outcomes:
        status = "ok" if outcome.returncode == 0 else f"FAILED (exit {outcome.returncode})"
        write(f"  {outcome.name:15s} {outcome.seconds:6.0f} s  {status}\n")
    write(f"load average {load_average()}\n")
    return 0 if all(o.returncode == 0 for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
