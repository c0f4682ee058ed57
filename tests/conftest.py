"""Session-wide clean-up shared by every test folder."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.peers import TEST_DATABASE_PREFIX


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
