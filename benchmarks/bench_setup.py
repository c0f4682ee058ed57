"""What the benchmark scripts set up the same way: the peers they need, a scratch directory,
a throw-away PostgreSQL database.

Imported by the scripts in this directory (run as ``python benchmarks/NAME.py``).
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg

#: The PostgreSQL the benchmarks create their throw-away databases on.
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Where SIPp and taskset come from, for the message when they are missing.
SIPP_PACKAGES = "Debian packages sip-tester, util-linux"


def tools_present(tools: tuple[str, ...], packages: str | None = SIPP_PACKAGES) -> bool:
    """Whether every one of ``tools`` is on PATH; the first missing one is named on stderr,
    with the ``packages`` that provide them. A script returns 2 when this is False."""
    for tool in tools:
        if shutil.which(tool) is None:
            hint = f" ({packages})" if packages else ""
            sys.stderr.write(f"{tool} not found{hint}\n")
            return False
    return True


def sipp_binary() -> str:
    """SIPp's path (its name when it is not on PATH, so the error names it)."""
    return shutil.which("sipp") or "sipp"


@contextmanager
def scratch_directory(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed afterwards, that other accounts may enter: the embedded
    PostgreSQL runs as its own account and keeps its data directory inside it."""
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        work = Path(scratch)
        work.chmod(0o755)
        yield work


@asynccontextmanager
async def temporary_database(admin_dsn: str = ADMIN_DSN) -> AsyncIterator[str]:
    """A new database ``cxos_bench_<random>`` on ``admin_dsn``'s server, dropped afterwards;
    yields its URL."""
    name = f"cxos_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield admin_dsn.rpartition("/")[0] + "/" + name
    finally:
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
