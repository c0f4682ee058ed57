"""CDRs folded from the writer's memory are the ones folded from the stored events."""

from __future__ import annotations

from typing import Any

import pytest

from cxos.storage.cdr_cache import CallEventCache, CdrCacheOptions
from cxos.storage.database import Connection, Pool
from cxos.storage.events_store import EventRow, row_from_published, store_events
from tests.storage.storage_scenarios import NODE, Teller, tell_transfer_call

BATCH = 3


def transfer_call_rows(call_id: str) -> list[EventRow]:
    teller = Teller()
    tell_transfer_call(teller, call_id)
    return [row_from_published(p, NODE) for p in teller.published]


async def stored_cdr(connection: Connection, call_id: str) -> tuple[Any, ...]:
    """The call's CDR row and segments as a reader sees them, without its id or write time."""
    cdr = await connection.fetchrow("SELECT * FROM cdrs WHERE call_id = $1", call_id)
    segments = await connection.fetch(
        "SELECT * FROM cdr_segments WHERE call_id = $1 ORDER BY segment_index", call_id
    )
    hidden = {"call_id", "updated_at", "id"}
    cdr_fields = None if cdr is None else {k: v for k, v in cdr.items() if k not in hidden}
    return cdr_fields, [{k: v for k, v in s.items() if k not in hidden} for s in segments]


@pytest.mark.parametrize("disruption", ["none", "restart", "replay", "eviction"])
async def test_memory_and_database_folds_give_the_same_transfer_call_cdr(
    pool: Pool, disruption: str
) -> None:
    memory_rows = transfer_call_rows("from-memory")
    database_rows = transfer_call_rows("from-database")
    options = CdrCacheOptions(max_events=9 if disruption == "eviction" else 1_000)
    cache = CallEventCache(options)
    known: list[bool] = []

    async with pool.acquire() as connection:
        for first in range(0, len(memory_rows), BATCH):
            batch = memory_rows[first : first + BATCH]
            replay = disruption == "replay" and first == 2 * BATCH
            if disruption == "restart" and first == 2 * BATCH:
                cache = CallEventCache(options)  # a new process knows nothing of the call
            await store_events(connection, batch, replay=replay, cache=cache)
            await store_events(connection, database_rows[first : first + BATCH], replay=replay)
            known.append("from-memory" in cache)
            assert await stored_cdr(connection, "from-memory") == await stored_cdr(
                connection, "from-database"
            )
        cdr, segments = await stored_cdr(connection, "from-memory")

    assert [(s["kind"], s["outcome"], s["agent_id"]) for s in segments] == [
        ("ivr", "queue", None),
        ("queue", "answered", "a1"),
        ("agent", "transferred", "a1"),
        ("transfer", "connected", None),
        ("queue", "answered", "a2"),
        ("agent", "completed", "a2"),
    ]
    assert (cdr["end_reason"], cdr["talk_seconds"], cdr["wrap_up_seconds"]) == (
        "normal",
        110.0,
        35.0,
    )
    # Folded from memory while in progress (until a disruption), forgotten once it has ended.
    assert known[0] is True
    assert known[-1] is False
    if disruption == "none":
        assert known.count(True) >= 5
    else:
        assert True not in known[3:]  # and read back from then on


def test_a_rendered_row_stages_the_history_its_stored_json_would_give() -> None:
    rows = transfer_call_rows("rendered")
    assert all(row.parsed is not None for row in rows)
    from_dicts = CallEventCache().staged(
        [(r.call_id, r.type, r.parsed or r.envelope) for r in rows]
    )
    from_json = CallEventCache().staged([(r.call_id, r.type, r.envelope) for r in rows])
    assert from_dicts == from_json
    assert len(from_dicts["rendered"]) == len(rows)
