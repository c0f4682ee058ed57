"""The ``cxos`` command: run the server, check a configuration."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from config.loader import default_config_dir, load_configuration
from config.source import ConfigError

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxos", description="CXOS contact center server")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="start the server")
    run.add_argument(
        "--config",
        type=Path,
        default=None,
        help="configuration directory (default: the configuration shipped with CXOS)",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="database, spool and recordings (default: storage.data_dir of the configuration; "
        "./cxos-data with the shipped configuration)",
    )

    check = commands.add_parser("check-config", help="validate a configuration directory and exit")
    check.add_argument("directory", type=Path, nargs="?", default=None)

    ivr = commands.add_parser("ivr", help="IVR tools")
    ivr_commands = ivr.add_subparsers(dest="ivr_command", required=True)
    simulate = ivr_commands.add_parser(
        "simulate",
        help="walk an IVR tree in the terminal (see `cxos ivr simulate --help`)",
        add_help=False,
    )
    simulate.add_argument("rest", nargs=argparse.REMAINDER)
    letters = commands.add_parser(
        "deadletters",
        help="list and replay webhook deliveries that gave up (see `cxos deadletters --help`)",
        add_help=False,
    )
    letters.add_argument("rest", nargs=argparse.REMAINDER)
    demo = commands.add_parser(
        "demo",
        help="simulated callers and agents for a running server (see `cxos demo --help`)",
        add_help=False,
    )
    demo.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:2] == ["ivr", "simulate"]:
        # The simulator owns its options; hand it everything after the sub-command.
        from ivr.simulate import main as simulate

        return simulate(arguments[2:])
    if arguments[:1] == ["deadletters"]:
        # Webhook deliveries that gave up: list and replay them (crm_bridge.cli).
        from crm_bridge.cli import main as deadletters

        return deadletters(arguments[1:])
    if arguments[:1] == ["demo"]:
        # Simulated callers and agents for a running server (SIPp); see cxos.demo.
        from cxos.demo import main as demo

        return demo(arguments[1:])
    args = _parser().parse_args(arguments)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "check-config":
        return _check_config(args.directory or default_config_dir())
    if args.command == "run":
        data_dir = args.data_dir
        if data_dir is None and args.config is None:
            # The shipped configuration lives inside the installed package: keep data out of it.
            data_dir = Path.cwd() / "cxos-data"
        return _run(args.config or default_config_dir(), data_dir)
    return 2


def _check_config(directory: Path) -> int:
    try:
        configuration = load_configuration(directory)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
        sys.stderr.write(f"{len(exc.problems)} problem(s) in {directory}\n")
        return 1
    sys.stdout.write(
        f"{directory}: OK ({len(configuration.trunks)} trunks, {len(configuration.agents)} agents, "
        f"{len(configuration.dialplan.numbers)} numbers)\n"
    )
    return 0


def _run(directory: Path, data_dir: Path | None) -> int:
    from cxos.app import run_server  # imported here so check-config stays light

    try:
        configuration = load_configuration(directory)
    except ConfigError as exc:
        for problem in exc.problems:
            logger.error("%s", problem)
        logger.error("refusing to start: %d configuration problem(s)", len(exc.problems))
        return 1
    return run_server(configuration, data_dir)


if __name__ == "__main__":
    raise SystemExit(main())
