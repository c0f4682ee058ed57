"""Agent state history across a restart, against a real PostgreSQL.

A node publishes its agents' state changes and stops without logging them out (as a killed
process does). When it starts again, the agents it last saw logged in get a state change to
``logged_out`` with reason ``server restart``, whose time in the previous state runs until the
node was last heard of; agents already logged out, and agents another node saw last, are left
alone; and a second restart closes nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from acd.events import AgentStateChanged, AgentStateName
from config.settings import StorageSettings
from cxos.bus import EventBus
from cxos.storage.cdr import SERVER_RESTART
from cxos.storage.database import Pool
from cxos.storage.service import StorageService
from tests.storage.storage_scenarios import T0, SettableClock


def service_for(database_url: str, config_dir: Path, node: str) -> StorageService:
    return StorageService(
        StorageSettings(database_url=database_url), node=node, config_dir=config_dir
    )


def change(agent: str, previous: AgentStateName, state: AgentStateName) -> AgentStateChanged:
    return AgentStateChanged(
        agent_id=agent, state=state, previous_state=previous, reason="test", seconds_in_previous=1
    )


async def run_node(
    database_url: str,
    config_dir: Path,
    node: str,
    at: float,
    changes: Sequence[tuple[float, AgentStateChanged]] = (),
) -> None:
    """Start ``node`` (closing what its last run left open), publish ``changes`` at their
    offsets after ``at``, and stop without any clean-up of agents."""
    service = service_for(database_url, config_dir, node)
    await service.start()
    clock = SettableClock(at)
    bus = EventBus(clock=clock, first_seq=service.next_seq)
    service.attach(bus)
    for offset, event in changes:
        clock.now = at + offset
        bus.publish(event)
    assert await service.writer.wait_idle(within=10)
    await service.stop(grace=1)


async def history(pool: Pool) -> list[tuple[str, str, str, str, str, float]]:
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT node, agent_id, previous_state, state, reason, seconds_in_previous "
            "FROM agent_state_history ORDER BY node, seq"
        )
    return [
        (
            row["node"],
            row["agent_id"],
            row["previous_state"],
            row["state"],
            row["reason"],
            row["seconds_in_previous"],
        )
        for row in rows
    ]


async def test_a_restart_logs_out_the_agents_the_node_left_logged_in(
    database_url: str, pool: Pool, tmp_path: Path
) -> None:
    await run_node(
        database_url,
        tmp_path / "a",
        "node-a",
        T0,
        [
            (0, change("alice", "logged_out", "available")),
            (5, change("bob", "logged_out", "available")),
            (10, change("alice", "available", "on_call")),
            (20, change("bob", "available", "logged_out")),
            (30, change("carol", "logged_out", "paused")),
        ],
    )
    # Carol moved to node-b since: node-a's restart must not touch her.
    await run_node(
        database_url,
        tmp_path / "b",
        "node-b",
        T0 + 40,
        [(0, change("carol", "paused", "available"))],
    )
    # node-a was last heard of at T0 + 30 (carol's pause).
    await run_node(database_url, tmp_path / "a", "node-a", T0 + 600)

    closed = [row for row in await history(pool) if row[4] == SERVER_RESTART]
    expected: list[tuple[object, ...]] = [
        ("node-a", "alice", "on_call", "logged_out", SERVER_RESTART, pytest.approx(20.0))
    ]
    assert closed == expected

    await run_node(database_url, tmp_path / "a", "node-a", T0 + 1200)
    again = [row for row in await history(pool) if row[4] == SERVER_RESTART]
    assert again == closed
