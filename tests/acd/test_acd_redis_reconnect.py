"""A Redis restart under the ACD store: the next command reconnects instead of failing.

The store's client keeps connections in a pool; when Redis restarts, each pooled connection is
closed by the server, and the first command sent on it used to fail with ConnectionError (and
with it the call whose routing issued it). This test restarts a Redis of its own, on a free
port, so the machine's Redis is never touched."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from acd.redis_store import RedisAcdStore
from tests.integration.peers import free_port


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.port = free_port(socket.SOCK_STREAM)
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (scripts/start-services.sh installs it)")
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


async def test_store_reconnects_after_redis_restarts(private_redis: PrivateRedis) -> None:
    store = RedisAcdStore.from_url(f"redis://127.0.0.1:{private_redis.port}/0")
    try:
        await store.set_last_offered("sales", "alice")
        private_redis.stop()
        private_redis.start()  # empty: nothing was persisted
        assert await store.last_offered("sales") is None
        await store.set_last_offered("sales", "bob")
        assert await store.last_offered("sales") == "bob"
    finally:
        await store.close()
