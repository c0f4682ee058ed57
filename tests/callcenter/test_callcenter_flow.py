"""One caller's flow: where destinations lead, and the queue phase against a fake ACD."""

from __future__ import annotations

import asyncio
import dataclasses
import types
from pathlib import Path
from typing import Any, cast

import pytest

from config.loader import Configuration, default_config_dir, load_configuration
from config.settings import Dialplan, EntryPoint
from cxos.call_flow import CallFlow, FlowServices, IvrStep, QueueStep
from ivr.runner import RunnerSettings
from telephony.calls import AgentLeg
from telephony.rtp.audio import PromptCache
from telephony.rtp.g711 import Law


class FakeMedia:
    call_id = "c1"
    law = Law.ULAW
    prompts = PromptCache()
    ended = False

    async def play(self, prompts: Any, *, barge_in: bool = False) -> str:
        await asyncio.Event().wait()  # plays until stopped (cancelled)
        return "stopped"

    def stop_playback(self) -> None:
        pass


class FakeCall:
    def __init__(self) -> None:
        self.call_id = "c1"
        self.media = FakeMedia()
        self.on_hangup: Any = None
        self.bridged: Any = None
        self._ended = asyncio.Event()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    def hangup(self) -> None:
        if not self.ended:
            self._ended.set()
            if self.on_hangup is not None:
                self.on_hangup()

    def bridge(self, agent: Any) -> None:
        self.bridged = agent


class FakeAcd:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    async def enqueue(self, call_id: str, queue_id: str, **options: Any) -> None:
        self.seen.append(("enqueue", call_id, queue_id, options["priority"]))

    def caller_hung_up(self, call_id: str) -> None:
        self.seen.append(("caller_hung_up", call_id))

    def last(self) -> tuple[Any, ...]:
        """What the ACD was told last (a call, so each look reads the list afresh)."""
        return self.seen[-1]


class Renderer:
    async def render(self, text: str, *, language: str) -> Path:
        raise AssertionError("nothing is announced here")


@pytest.fixture
def configuration() -> Configuration:
    shipped = load_configuration(default_config_dir())
    numbers = {"200": EntryPoint(queue="sales"), "300": EntryPoint(ivr="main")}
    return dataclasses.replace(shipped, dialplan=Dialplan(numbers=numbers))


def flow(
    configuration: Configuration,
    acd: FakeAcd | None = None,
    did: str = "200",
    call: FakeCall | None = None,
) -> CallFlow:
    services = FlowServices(
        acd=acd or FakeAcd(),  # type: ignore[arg-type]
        renderer=Renderer(),
        publish=lambda event: None,
        ivr_settings=RunnerSettings(),
    )
    return CallFlow(
        call or FakeCall(),  # type: ignore[arg-type]
        configuration=configuration,
        services=services,
        did=did,
        caller_id="5551234",
    )


def test_destinations_are_numbers_trees_queues_then_tree_nodes(
    configuration: Configuration,
) -> None:
    caller = flow(configuration)
    assert caller.resolve("300") == IvrStep("main")
    assert caller.resolve("main") == IvrStep("main")
    assert caller.resolve("support") == QueueStep("support")
    assert caller.resolve("main/voicemail") == IvrStep("main", "voicemail")
    # A bare node name needs a tree the caller came through; this one came straight to a queue.
    assert caller.resolve("voicemail") is None
    assert caller.resolve("main/nowhere") is None


async def test_a_queue_entry_point_waits_until_routed_then_follows_the_exit(
    configuration: Configuration,
) -> None:
    acd = FakeAcd()
    caller = flow(configuration, acd)
    running = asyncio.get_running_loop().create_task(caller.run())
    for _ in range(10):
        await asyncio.sleep(0)
    assert acd.seen == [("enqueue", "c1", "sales", 0)]
    assert caller.waiting
    caller.route("sales", "support", "timeout")  # max wait passed: on to support
    for _ in range(10):
        await asyncio.sleep(0)
    assert acd.last() == ("enqueue", "c1", "support", 0)
    caller.call.hangup()
    await asyncio.wait_for(running, 1)
    assert acd.last() == ("caller_hung_up", "c1")  # an abandon, as far as the ACD knows


async def test_the_agents_answer_bridges_the_caller_until_the_call_ends(
    configuration: Configuration,
) -> None:
    acd = FakeAcd()
    call = FakeCall()
    caller = flow(configuration, acd, call=call)
    running = asyncio.get_running_loop().create_task(caller.run())
    for _ in range(10):
        await asyncio.sleep(0)
    agent = cast(AgentLeg, types.SimpleNamespace(sip_user="1001"))
    assert caller.connect(agent)
    assert call.bridged is agent and not caller.waiting
    assert not caller.connect(agent)  # once only
    caller.route("sales", "support", "timeout")  # too late: ignored
    for _ in range(10):
        await asyncio.sleep(0)
    assert not running.done()
    caller.call.hangup()
    await asyncio.wait_for(running, 1)
    assert [s[0] for s in acd.seen] == ["enqueue", "caller_hung_up"]
