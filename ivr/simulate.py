"""``cxos ivr simulate TREE``: walk an IVR tree in the terminal before callers do.

Shows what the caller would hear, takes keys or words (from ``--input`` arguments, or typed at
the terminal when there are none), and prints the route taken, the call variables and where the
call ends up. A scripted run is an admin's regression check: the exit status is 0 when the tree
loads and the walk ends, 1 when the configuration has problems, 2 for a usage mistake.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from config.ivr import IvrTree, IvrTrees, load_ivr_trees
from config.loader import default_config_dir
from config.source import ConfigError, load_yaml
from ivr.walk import Step, Walker

__all__ = ["main"]

_VERBS = {
    "hear": "caller hears",
    "answer": "caller",
    "crm": "CRM",
    "record": "record",
    "exit": "→",
    "note": "·",
    "listen": "·",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxos ivr simulate",
        description="Walk an IVR tree as a caller would, without a phone.",
        epilog="An answer is keys (1, 1234#), words (sales, or 'sales@0.4' with the recognizer's "
        "confidence), '?' for speech that matches nothing, or empty for silence.",
    )
    parser.add_argument("tree", help="id of the tree (as in ivr/*.yaml)")
    parser.add_argument(
        "--config", type=Path, default=None, help="configuration directory (default: shipped)"
    )
    parser.add_argument(
        "--input",
        action="append",
        default=None,
        metavar="ANSWER",
        help="the caller's next answer; repeat for each step (interactive when absent)",
    )
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--crm",
        action="append",
        default=None,
        metavar="FIELD=VALUE",
        help="the CRM finds the caller with these fields (no record when absent)",
    )
    parser.add_argument(
        "--at",
        default=None,
        metavar="YYYY-MM-DDTHH:MM",
        help="time of the call for business hours (the tree's time zone unless an offset is "
        "given; default: now)",
    )
    parser.add_argument("--caller-id", default="+15555550100")
    parser.add_argument("--dialed", default="100", help="number the caller dialled")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed why
        return int(exc.code or 0)
    out, err = sys.stdout, sys.stderr
    try:
        variables = _pairs(args.var, "--var")
        crm = _pairs(args.crm, "--crm") if args.crm is not None else None
    except ValueError as exc:
        err.write(f"cxos ivr simulate: {exc}\n")
        return 2
    config_dir: Path = args.config or default_config_dir()
    try:
        trees = _load(config_dir, err)
    except ConfigError as exc:
        for problem in exc.problems:
            err.write(f"{problem}\n")
        err.write(f"{len(exc.problems)} problem(s) in {config_dir}\n")
        return 1
    tree = trees.get(args.tree)
    if tree is None:
        known = ", ".join(sorted(trees)) or "none"
        err.write(f"cxos ivr simulate: no IVR tree named {args.tree!r} (trees: {known})\n")
        return 2
    try:
        moment = _moment(args.at, tree)
    except ValueError as exc:
        err.write(f"cxos ivr simulate: --at: {exc}\n")
        return 2
    walker = Walker(
        tree,
        started_at=moment,
        caller_id=args.caller_id,
        dialed_number=args.dialed,
        variables=variables,
        crm_record=crm,
    )
    local = moment.astimezone(ZoneInfo(tree.timezone))
    out.write(
        f"Simulating IVR tree {tree.tree_id!r} from {tree.source.name}, call at "
        f"{local:%Y-%m-%d %H:%M} {tree.timezone} ({local:%A})\n"
    )
    printer = _Printer(walker, out)
    walker.start()
    printer.flush()
    if args.input is not None:
        for answer in args.input:
            if walker.finished:
                out.write(f"(the call already left the tree; {answer!r} and later are unused)\n")
                break
            walker.answer(answer)
            printer.flush()
        if not walker.finished:
            out.write("(no more input: the caller stays silent)\n")
    else:
        _interactive(walker, printer, sys.stdin, out)
    walker.finish_silently()
    printer.flush()
    _summary(walker, out)
    return 0


def _interactive(walker: Walker, printer: _Printer, source: TextIO, out: TextIO) -> None:
    while not walker.finished:
        listening = (walker.waiting_for or "").replace("dtmf", "keys").replace("+", " or ")
        out.write(f"{listening} (empty for silence)> ")
        out.flush()
        line = source.readline()
        if not line:
            out.write("\n(end of input: the caller stays silent)\n")
            return
        walker.answer(line.rstrip("\n"))
        printer.flush()


class _Printer:
    def __init__(self, walker: Walker, out: TextIO) -> None:
        self._walker = walker
        self._out = out
        self._shown = 0

    def flush(self) -> None:
        steps = self._walker.steps
        for step in steps[self._shown :]:
            self._out.write(_line(step) + "\n")
        self._shown = len(steps)


def _line(step: Step) -> str:
    return f"  [{step.node_id}] {_VERBS[step.kind]} {step.text}"


def _summary(walker: Walker, out: TextIO) -> None:
    session = walker.session
    out.write("Route: " + " → ".join(session.route) + "\n")
    out.write("Variables:\n")
    for name, value in sorted(session.variables.items()):
        out.write(f"  {name} = {value}\n")
    kind, target = session.destination or ("hangup", "?")
    out.write(f"Destination: {kind} {target}\n")


def _pairs(items: Sequence[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{option} {item!r}: write NAME=VALUE")
        pairs[name.strip()] = value
    return pairs


def _moment(at: str | None, tree: IvrTree) -> datetime:
    if at is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise ValueError(f"{at!r} is not a date and time like 2026-11-26T10:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tree.timezone))
    return moment


def _load(config_dir: Path, err: TextIO) -> IvrTrees:
    queues = _names(config_dir / "queues.yaml", "queues")
    if queues is None:
        err.write(f"note: no queues.yaml in {config_dir}: queue names are not checked\n")
    return load_ivr_trees(
        config_dir / "ivr",
        queues=queues,
        skills=_skills(config_dir),
        prompts_dir=config_dir / "prompts",
    )


def _names(path: Path, section: str) -> frozenset[str] | None:
    if not path.is_file():
        return None
    data = load_yaml(path).data
    entries = data.get(section) if isinstance(data, dict) else None
    return frozenset(str(name) for name in entries) if isinstance(entries, dict) else frozenset()


def _skills(config_dir: Path) -> frozenset[str] | None:
    """Skills are known from the agents who have them and the queues that ask for them."""
    found: set[str] = set()
    seen_file = False
    for name, section in (("agents.yaml", "agents"), ("queues.yaml", "queues")):
        path = config_dir / name
        if not path.is_file():
            continue
        seen_file = True
        data = load_yaml(path).data
        entries: Any = data.get(section) if isinstance(data, dict) else None
        items = entries.values() if isinstance(entries, dict) else entries or []
        for item in items:
            skills = item.get("skills") if isinstance(item, dict) else None
            if isinstance(skills, dict):
                found.update(str(skill) for skill in skills)
            elif isinstance(skills, list):
                found.update(skill for skill in skills if isinstance(skill, str))
    return frozenset(found) if seen_file else None


if __name__ == "__main__":
    raise SystemExit(main())
