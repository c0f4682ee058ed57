"""Session-wide clean-up shared by every test folder."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.peers import TEST_DATABASE_PREFIX

COMPILED_PACKAGES = tuple(
    Path(__file__).resolve().parent.parent / "telephony" / name for name in ("sip", "sdp")
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test a compiled module older than its source (setup.py compiles them).

    Python imports the compiled module in preference to the source beside it, so an edit made
    after the install would silently go untested.
    """
    stale = [
        compiled.name
        for package in COMPILED_PACKAGES
        for compiled in package.glob("*.so")
        if (source := compiled.with_name(compiled.name.split(".")[0] + ".py")).exists()
        and source.stat().st_mtime > compiled.stat().st_mtime
    ]
    if stale:
        pytest.exit(
            f"compiled modules older than their sources: {', '.join(sorted(stale))}; "
            "compile them again with `make .venv/.installed-test` (or remove them to test the "
            "plain sources)",
            returncode=4,
        )


@pytest.fixture(scope="session", autouse=True)
def drop_test_databases() -> Iterator[None]:
    """Drop the databases that test servers of this session created."""
    yield
    listing = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atc",
            f"SELECT datname FROM pg_database WHERE datname LIKE '{TEST_DATABASE_PREFIX}%'",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    for name in listing.stdout.split():
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qc",
                f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
