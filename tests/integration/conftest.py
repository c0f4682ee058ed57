"""Fixtures: a real CXOS server process on loopback with a copy of the shipped configuration."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.loader import default_config_dir
from tests.integration.peers import RunningServer, free_port, start_server, write_server_config


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(default_config_dir(), target)
    return target


@pytest.fixture
def server(config_dir: Path, tmp_path: Path) -> Iterator[RunningServer]:
    port = free_port()
    write_server_config(config_dir, port)
    running = start_server(config_dir, port, tmp_path / "server.log")
    yield running
    code = running.stop()
    assert code == 0, f"server exited with {code}:\n{running.log()[-4000:]}"
