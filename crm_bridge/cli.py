"""``cxos deadletters``: list and replay webhook deliveries that used up their attempts.

    cxos deadletters list [--endpoint NAME] [--limit N] [--json]
    cxos deadletters replay ID
    cxos deadletters replay-all [--endpoint NAME]

Which database: ``--database-url``, else ``storage.database_url`` of ``--config`` (the shipped
configuration by default), else the embedded PostgreSQL in the data directory — reached
through its socket while the server runs, started for the command otherwise.

``main`` takes the arguments after ``deadletters``. A replayed delivery is sent by the running
server's worker at its next look at the outbox (within ``delivery.poll_interval``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from config.loader import default_config_dir, load_configuration
from config.source import ConfigError
from crm_bridge.deadletters import (
    DeadLetter,
    DeadLetterNotFoundError,
    list_dead_letters,
    replay,
    replay_all,
)
from cxos.storage.database import (
    EMBEDDED_DATABASE,
    Pool,
    create_pool,
    open_database,
    redact_dsn,
)
from cxos.storage.service import resolve_data_dir

logger = logging.getLogger(__name__)

DATABASE_URL_ENV = "CXOS_DATABASE_URL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxos deadletters", description="webhook deliveries that used up their attempts"
    )
    parser.add_argument("--config", type=Path, default=None, help="configuration directory")
    parser.add_argument("--data-dir", type=Path, default=None, help="data directory")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV),
        help=f"postgresql://… (default: ${DATABASE_URL_ENV}, else the configuration's)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="show dead letters, oldest first")
    listing.add_argument("--endpoint", default=None)
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    one = commands.add_parser("replay", help="send one dead letter again")
    one.add_argument("id", type=int, help="the delivery id shown by `list`")
    every = commands.add_parser("replay-all", help="send every dead letter again")
    every.add_argument("--endpoint", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return asyncio.run(_main(args))
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
        return 1
    except DeadLetterNotFoundError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    except (OSError, RuntimeError, asyncpg.PostgresError) as exc:
        sys.stderr.write(f"cannot reach the database: {exc}\n")
        return 1


async def _main(args: argparse.Namespace) -> int:
    async with _database(args) as pool:
        if args.command == "list":
            letters = await list_dead_letters(pool, endpoint=args.endpoint, limit=args.limit)
            sys.stdout.write(_render(letters, as_json=args.json))
        elif args.command == "replay":
            endpoint = await replay(pool, args.id)
            sys.stdout.write(f"delivery {args.id} queued again for {endpoint}\n")
        else:
            count = await replay_all(pool, endpoint=args.endpoint)
            sys.stdout.write(f"{count} dead letter(s) queued again\n")
    return 0


def _render(letters: list[DeadLetter], *, as_json: bool) -> str:
    if as_json:
        return "".join(
            json.dumps(
                {
                    "id": letter.id,
                    "endpoint": letter.endpoint,
                    "event_id": letter.event_id,
                    "event_type": letter.event_type,
                    "ordering_key": letter.ordering_key,
                    "attempts": letter.attempts,
                    "last_status": letter.last_status,
                    "last_error": letter.last_error,
                    "replays": letter.replays,
                    "dead_at": letter.dead_at.isoformat(),
                }
            )
            + "\n"
            for letter in letters
        )
    if not letters:
        return "no dead letters\n"
    lines = [f"{'ID':>8}  {'ENDPOINT':<16} {'EVENT':<22} {'CALL':<24} {'TRIES':>5}  LAST ERROR"]
    for letter in letters:
        lines.append(
            f"{letter.id:>8}  {letter.endpoint:<16.16} {letter.event_type:<22.22} "
            f"{letter.ordering_key:<24.24} {letter.attempts:>5}  {letter.last_error or ''}"
        )
    return "\n".join(lines) + "\n"


@asynccontextmanager
async def _database(args: argparse.Namespace) -> AsyncIterator[Pool]:
    if args.database_url:
        pool = await create_pool(args.database_url, max_size=1)
        try:
            yield pool
        finally:
            await pool.close()
        return
    config_dir = args.config or default_config_dir()
    settings = load_configuration(config_dir).server.storage
    if settings.database_url:
        pool = await create_pool(settings.database_url, max_size=1)
        try:
            yield pool
        finally:
            await pool.close()
        return
    data_dir = args.data_dir or resolve_data_dir(settings, config_dir)
    running = running_embedded_dsn(data_dir / "postgres")
    if running is not None:
        logger.debug("using the running embedded PostgreSQL at %s", redact_dsn(running))
        pool = await create_pool(running, max_size=1)
        try:
            yield pool
        finally:
            await pool.close()
        return
    database = await open_database(settings, data_dir=data_dir, pool_size=1)
    try:
        yield database.pool
    finally:
        await database.close(grace=5.0)


def running_embedded_dsn(cluster: Path) -> str | None:
    """The socket address of the server running on ``cluster``, from its ``postmaster.pid``
    (line 4: port, line 5: socket directory), or None when it is not running."""
    try:
        lines = (cluster / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 5 or not lines[3].strip().isdigit() or not lines[4].strip():
        return None
    host = urllib.parse.quote(lines[4].strip(), safe="")
    return f"postgresql://postgres@/{EMBEDDED_DATABASE}?host={host}&port={lines[3].strip()}"
