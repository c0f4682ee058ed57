"""The storage component: start-up, CDRs in the database, restart after a crash, embedded server."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.settings import StorageSettings
from cxos.bus import EventBus
from cxos.storage import embedded
from cxos.storage.cdr import SERVER_RESTART
from cxos.storage.database import Pool
from cxos.storage.embedded import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    ServerAccount,
    unreachable_directory,
)
from cxos.storage.service import StorageService
from tests.storage.storage_scenarios import (
    NODE,
    T0,
    SettableClock,
    Teller,
    tell_abandoned_call,
    tell_transfer_call,
)

START = datetime.fromtimestamp(T0, UTC)
REPOSITORY = Path(__file__).resolve().parents[2]


def service_for(
    database_url: str | None, config_dir: Path, data_dir: str = "data"
) -> StorageService:
    settings = StorageSettings(database_url=database_url, data_dir=data_dir)
    return StorageService(settings, node=NODE, config_dir=config_dir)


async def fetch_cdr(pool: Pool, call_id: str) -> dict[str, object]:
    async with pool.acquire() as connection:
        row = await connection.fetchrow("SELECT * FROM cdrs WHERE call_id = $1", call_id)
    assert row is not None, f"no CDR for {call_id}"
    return dict(row.items())


async def test_calls_published_on_the_bus_end_up_as_cdrs(database_url: str, tmp_path: Path) -> None:
    service = service_for(database_url, tmp_path)
    await service.start()
    assert service.next_seq == 1
    teller = Teller()
    service.attach(teller.bus)

    tell_transfer_call(teller)
    tell_abandoned_call(teller, "call-2", start=300)
    assert await service.writer.wait_idle(within=10)

    transfer = await fetch_cdr(service.database.pool, "call-1")
    abandoned = await fetch_cdr(service.database.pool, "call-2")
    async with service.database.pool.acquire() as connection:
        segments = await connection.fetch(
            "SELECT segment_index, kind, queue_id, agent_id, wait_seconds, talk_seconds, "
            "hold_seconds, wrap_up_seconds FROM cdr_segments WHERE call_id = 'call-1' "
            "ORDER BY segment_index"
        )
    await service.stop(grace=2)

    assert transfer["ended_at"] == START + timedelta(seconds=186)
    assert (transfer["end_reason"], transfer["disposition"], transfer["segment_count"]) == (
        "normal",
        "answered",
        6,
    )
    assert (transfer["talk_seconds"], transfer["wait_seconds"], transfer["agents"]) == (
        110.0,
        50.0,
        ["a1", "a2"],
    )
    assert [tuple(s.items()) for s in segments] == [
        tuple(
            zip(
                (
                    "segment_index",
                    "kind",
                    "queue_id",
                    "agent_id",
                    "wait_seconds",
                    "talk_seconds",
                    "hold_seconds",
                    "wrap_up_seconds",
                ),
                values,
                strict=True,
            )
        )
        for values in [
            (1, "ivr", None, None, 0.0, 0.0, 0.0, None),
            (2, "queue", "sales", "a1", 30.0, 0.0, 0.0, None),
            (3, "agent", "sales", "a1", 0.0, 50.0, 10.0, 15.0),
            (4, "transfer", None, None, 0.0, 0.0, 0.0, None),
            (5, "queue", "support", "a2", 20.0, 0.0, 0.0, None),
            (6, "agent", "support", "a2", 0.0, 60.0, 0.0, 20.0),
        ]
    ]
    assert (abandoned["disposition"], abandoned["wait_seconds"]) == ("queue_abandoned", 40.0)


async def test_a_restart_closes_the_calls_that_were_in_progress(
    database_url: str, tmp_path: Path
) -> None:
    first = service_for(database_url, tmp_path)
    await first.start()
    teller = Teller()
    first.attach(teller.bus)
    tell_abandoned_call(teller, "call-2")  # ended before the crash
    everything = Teller()
    tell_transfer_call(everything)
    for published in everything.published:
        if published.time - T0 > 80:  # the node dies while a1 talks to the caller
            break
        teller.at(published.time - T0, published.event)
    assert await first.writer.wait_idle(within=10)
    await first.stop(grace=1)
    stored = len(teller.published)

    second = service_for(database_url, tmp_path)
    await second.start()
    assert second.next_seq == stored + 1
    bus = EventBus(clock=SettableClock(T0 + 3600), first_seq=second.next_seq)
    second.attach(bus)
    assert await second.writer.wait_idle(within=10)

    interrupted = await fetch_cdr(second.database.pool, "call-1")
    untouched = await fetch_cdr(second.database.pool, "call-2")
    async with second.database.pool.acquire() as connection:
        last = await connection.fetchrow(
            "SELECT outcome, talk_seconds FROM cdr_segments WHERE call_id = 'call-1' "
            "ORDER BY segment_index DESC LIMIT 1"
        )
        closing = await connection.fetchrow(
            "SELECT seq, envelope FROM events WHERE type = 'call.ended' AND call_id = 'call-1'"
        )
    await second.stop(grace=1)

    # The node was last heard of at 80 s (a supervisor note): the call ends there.
    assert interrupted["ended_at"] == START + timedelta(seconds=80)
    assert (interrupted["end_reason"], interrupted["hangup_by"]) == (SERVER_RESTART, "server")
    assert interrupted["talk_seconds"] == pytest.approx(26.0)  # 44 → 80 s minus 10 s hold
    assert last is not None and last["outcome"] == SERVER_RESTART
    assert closing is not None and closing["seq"] == stored + 1
    assert untouched["end_reason"] == "normal"

    third = service_for(database_url, tmp_path)
    await third.start()
    third.attach(EventBus(clock=SettableClock(T0 + 7200), first_seq=third.next_seq))
    assert await third.writer.wait_idle(within=10)
    async with third.database.pool.acquire() as connection:
        closings = await connection.fetchval(
            "SELECT count(*) FROM events WHERE type = 'call.ended'"
        )
    await third.stop(grace=1)
    assert closings == 2  # call-2's own and call-1's restart closure: no second closure


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from config.settings import StorageSettings
    from cxos.bus import EventBus
    from cxos.storage.service import StorageService
    from telephony.events import CallStarted
    from ivr.events import IvrEntered

    async def main():
        service = StorageService(
            StorageSettings(database_url=sys.argv[1]), node="node-a", config_dir=Path(sys.argv[2])
        )
        await service.start()
        bus = EventBus(clock=lambda: 1_714_564_800.0, first_seq=service.next_seq)
        service.attach(bus)
        for n in range(20):
            call_id = f"killed-{n}"
            bus.publish(CallStarted(call_id=call_id, trunk_id="t", did="1", caller_id="2",
                                    caller_name="", sip_call_id=call_id))
            bus.publish(IvrEntered(call_id=call_id, tree_id="main", node_id="n", language="en"))
        await service.writer.wait_idle(within=10)
        print("stored", flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
    """
)


@pytest.fixture
def child_script(tmp_path: Path) -> Iterator[Path]:
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    yield script


async def test_sigkill_then_restart_gives_every_started_call_one_closed_cdr(
    database_url: str, tmp_path: Path, child_script: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(child_script),
        database_url,
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        cwd=str(REPOSITORY),
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
    assert line == b"stored\n"
    process.send_signal(signal.SIGKILL)
    await process.wait()

    service = service_for(database_url, tmp_path)
    await service.start()
    service.attach(EventBus(clock=SettableClock(T0 + 10), first_seq=service.next_seq))
    assert await service.writer.wait_idle(within=10)
    async with service.database.pool.acquire() as connection:
        rows = await connection.fetch("SELECT call_id, end_reason, ended_at FROM cdrs")
    await service.stop(grace=1)

    assert len(rows) == 20
    assert {r["end_reason"] for r in rows} == {SERVER_RESTART}
    assert all(r["ended_at"] is not None for r in rows)


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory the unprivileged PostgreSQL account can reach (pytest's tmp is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="cxos-embedded-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def process_running(pid: int) -> bool:
    """True while ``pid`` runs (an exited process waiting to be reaped does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


async def gone(pid: int, within: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while process_running(pid):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_without_a_database_url_an_embedded_postgres_runs_in_the_data_dir(
    reachable_dir: Path, tmp_path: Path
) -> None:
    service = service_for(None, tmp_path, data_dir=str(reachable_dir))
    await service.start()
    pid = postmaster_pid(reachable_dir)
    teller = Teller()
    service.attach(teller.bus)
    tell_abandoned_call(teller)
    assert await service.writer.wait_idle(within=10)
    await service.stop(grace=5)
    assert await gone(pid)
    if os.geteuid() == 0:
        # PostgreSQL refuses root: the cluster belongs to an unprivileged account.
        assert (reachable_dir / "postgres").stat().st_uid != 0

    again = service_for(None, tmp_path, data_dir=str(reachable_dir))
    await again.start()
    assert again.next_seq == len(teller.published) + 1
    abandoned = await fetch_cdr(again.database.pool, "call-2")
    await again.stop(grace=5)
    assert abandoned["disposition"] == "queue_abandoned"


async def test_a_directory_the_server_account_cannot_reach_is_named(
    reachable_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = reachable_dir / "locked"
    locked.mkdir(mode=0o700)
    stranger = ServerAccount("stranger", uid=os.geteuid() + 4242, gid=os.getegid() + 4242)
    monkeypatch.setattr(embedded, "choose_account", lambda pgdata: stranger)

    server = EmbeddedPostgres(locked / "data" / "postgres")
    with pytest.raises(EmbeddedPostgresError, match=rf"{locked} is not searchable") as error:
        await server.start()
    assert "storage.database_url" in str(error.value)
    assert unreachable_directory(locked / "data", stranger) == locked
    assert unreachable_directory(reachable_dir, stranger) is None


async def test_a_second_process_cannot_share_the_embedded_cluster(reachable_dir: Path) -> None:
    first = EmbeddedPostgres(reachable_dir / "postgres")
    await first.start()
    try:
        with pytest.raises(EmbeddedPostgresError, match="in use by another CXOS process"):
            await EmbeddedPostgres(reachable_dir / "postgres").start()
    finally:
        await first.stop(grace=5)
