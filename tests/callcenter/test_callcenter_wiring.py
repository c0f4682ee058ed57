"""How the call center is assembled from a configuration, and what it does with telephony events."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from acd.redis_store import RedisAcdStore
from acd.store import InProcessAcdStore
from config.loader import Configuration, default_config_dir, load_configuration
from cxos.callcenter import CallCenter, build_call_center
from telephony.events import CallEnded, CallStarted
from telephony.service import TelephonyService


def configuration(redis_url: str | None = None) -> Configuration:
    shipped = load_configuration(default_config_dir())
    if redis_url is None:
        return shipped
    storage = shipped.server.storage.model_copy(update={"redis_url": redis_url})
    server = shipped.server.model_copy(update={"storage": storage})
    return dataclasses.replace(shipped, server=server)


def center(tmp_path: Path, redis_url: str | None = None) -> CallCenter:
    config = configuration(redis_url)
    return build_call_center(
        config, TelephonyService(config), publish=lambda event: None, data_dir=tmp_path
    )


def test_a_single_node_keeps_the_acd_state_in_process(tmp_path: Path) -> None:
    built = center(tmp_path)
    assert isinstance(built.acd.store, InProcessAcdStore)
    assert sorted(built.acd.engine.queues) == ["billing", "sales", "support"]
    assert {a: built.acd.engine.agent_state(a).value for a in built.acd.engine.agents} == {
        "alice": "logged_out",
        "bob": "logged_out",
        "carol": "logged_out",
    }


async def test_a_redis_url_shares_the_acd_state_between_nodes(tmp_path: Path) -> None:
    built = center(tmp_path, "redis://127.0.0.1:6379/0")
    assert isinstance(built.acd.store, RedisAcdStore)
    await built.start()
    await built.stop(0.1)  # closes the store's client


async def test_the_call_center_answers_telephonys_calls_while_it_runs(tmp_path: Path) -> None:
    built = center(tmp_path)
    await built.start()
    assert built.telephony.call_handler == built.handle_call
    await built.stop(0.1)
    assert built.telephony.call_handler is None


def test_calls_announced_but_never_answered_are_forgotten(tmp_path: Path) -> None:
    built = center(tmp_path)
    for number in range(3):
        built.observe(
            CallStarted(
                call_id=f"c{number}",
                trunk_id="t",
                did="100",
                caller_id="5551234",
                caller_name="",
                sip_call_id=f"s{number}",
            )
        )
    built.observe(
        CallEnded(
            call_id="c1",
            cause="cancelled",
            hangup_by="caller",
            duration_seconds=1.0,
            talk_seconds=0.0,
        )
    )
    assert list(built._starting) == ["c0", "c2"]


async def test_a_reload_applies_queues_and_agents_to_the_running_acd(tmp_path: Path) -> None:
    built = center(tmp_path)
    await built.start()
    try:
        fewer = configuration()
        queue_file = fewer.queue_file.model_copy(
            update={"queues": {"sales": fewer.queue_file.queues["sales"]}}
        )
        changed = dataclasses.replace(fewer, queue_file=queue_file, agents=fewer.agents[:2])
        built.reconfigure(changed)
        await built.acd.drain()
        assert built.configuration is changed  # new calls follow it
        assert sorted(built.acd.engine.queues) == ["sales"]
        assert sorted(built.acd.engine.agents) == ["alice", "bob"]
    finally:
        await built.stop(0.1)
