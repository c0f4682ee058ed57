"""A queue's callback offer and its answers, as the admin wrote them, in the caller's language;
and a callback's routing (the IVR's priority and skills) on its way to the ACD."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any, cast

import pytest

from acd.actions import OfferCall
from config.loader import Configuration, default_config_dir, load_configuration
from config.queues import CallbackOptions
from crm_bridge.lookup import RoutingAttributes
from cxos.call_flow import CallFlow, FlowServices, QueueStep
from cxos.callcenter import CallCenter, build_call_center
from ivr.actions import OfferCallback
from ivr.runner import RunnerSettings
from telephony.service import TelephonyService
from tests.acd.acd_fixtures import Harness, agent, need, of_type, queue
from tests.callcenter import test_callcenter_flow as flow_fakes
from tests.callcenter.test_callcenter_flow import FakeAcd
from tests.callcenter.test_callcenter_waiting import FakeMedia, Renderer, settle

CALLBACKS = {
    "key": 9,
    "choice_timeout": 6,
    "offer": {"en": "For a callback, press 9.", "es": "Para que le llamemos, pulse 9."},
    "accepted": {"en": "Goodbye, {name}.", "es": "Adiós, {name}."},
    "unavailable": "Sorry, {caller_id} cannot be called back.",
}


class FakeCall(flow_fakes.FakeCall):
    """A caller whose keys are scripted; prompts play on a :class:`FakeMedia`."""

    def __init__(self, keys: str) -> None:
        super().__init__()
        self.waiting_media = FakeMedia()
        self.media = self.waiting_media  # type: ignore[assignment]
        self.keys = keys
        self.asked: list[float] = []

    def hangup(self) -> None:
        self.waiting_media.ended = True
        super().hangup()

    async def play(self, prompts: list[Any], *, barge_in: bool = False) -> str:
        return await self.waiting_media.play(prompts, barge_in=barge_in)

    async def collect_digits(self, max_digits: int, **options: Any) -> SimpleNamespace:
        self.asked.append(options["first_timeout"])
        await settle()  # the caller listens to the offer first
        return SimpleNamespace(digits=self.keys)


class Registrations:
    def __init__(self, *, accept: bool) -> None:
        self.accept = accept
        self.seen: list[tuple[str, QueueStep, str, bool]] = []

    async def __call__(self, call_id: str, step: QueueStep, number: str, queued: bool) -> bool:
        self.seen.append((call_id, step, number, queued))
        return self.accept


@pytest.fixture
def configuration() -> Configuration:
    shipped = load_configuration(default_config_dir())
    queues = dict(shipped.queue_file.queues)
    callbacks = CallbackOptions.model_validate(CALLBACKS)
    queues["sales"] = queues["sales"].model_copy(update={"callbacks": callbacks})
    queue_file = shipped.queue_file.model_copy(update={"queues": queues})
    return dataclasses.replace(shipped, queue_file=queue_file)


def flow(
    configuration: Configuration, keys: str, register: Registrations
) -> tuple[CallFlow, FakeAcd, Renderer]:
    acd, renderer = FakeAcd(), Renderer()
    services = FlowServices(
        acd=acd,  # type: ignore[arg-type]
        renderer=renderer,
        publish=lambda event: None,
        ivr_settings=RunnerSettings(),
        register_callback=register,
    )
    caller = CallFlow(
        FakeCall(keys),  # type: ignore[arg-type]
        configuration=configuration,
        services=services,
        did="200",
        caller_id="5551234",
    )
    caller.variables["name"] = "Ana"  # collected by the IVR
    return caller, acd, renderer


async def waiting(caller: CallFlow, language: str) -> asyncio.Task[object]:
    step = QueueStep("sales", language=language)
    task = asyncio.get_running_loop().create_task(caller._wait_in_queue(step))
    await settle()
    assert caller.waiting
    return task


@pytest.mark.parametrize(
    ("language", "offer", "goodbye"),
    [
        ("es", "es:Para que le llamemos, pulse 9.", "es:Adiós, Ana."),
        # No French version: the first language written, in the caller's voice.
        ("fr", "fr:For a callback, press 9.", "fr:Goodbye, Ana."),
    ],
)
async def test_the_offer_and_its_confirmation_follow_the_callers_language(
    configuration: Configuration, language: str, offer: str, goodbye: str
) -> None:
    register = Registrations(accept=True)
    caller, acd, renderer = flow(configuration, "9", register)
    task = await waiting(caller, language)
    call = cast(FakeCall, caller.call)
    offering = asyncio.get_running_loop().create_task(caller.offer_callback("sales"))
    for _ in range(3):
        await settle()
    assert renderer.texts == [offer, goodbye]
    assert call.asked == [6.0]  # the queue's choice_timeout
    ((call_id, step, number, queued),) = register.seen
    assert (call_id, step.queue_id, number, queued) == ("c1", "sales", "5551234", True)
    assert call.waiting_media.played[-1] == ["/tts/2.wav"]  # the goodbye, the music stopped
    assert caller.waiting  # until the goodbye has been played
    call.waiting_media.stop_playback()  # it has
    await asyncio.wait_for(offering, 1)
    assert await asyncio.wait_for(task, 1) is None
    caller.call.hangup()
    assert acd.seen == [("enqueue", "c1", "sales", 0)]  # no abandon: the ACD keeps the place


async def test_another_key_keeps_the_caller_waiting(configuration: Configuration) -> None:
    register = Registrations(accept=True)
    caller, _, renderer = flow(configuration, "1", register)
    task = await waiting(caller, "en")
    await asyncio.wait_for(caller.offer_callback("sales"), 1)
    assert renderer.texts == ["en:For a callback, press 9."]
    assert register.seen == [] and caller.waiting
    caller.call.hangup()
    await asyncio.wait_for(task, 1)


async def test_a_callback_the_acd_refuses_is_announced_and_the_caller_keeps_waiting(
    configuration: Configuration,
) -> None:
    register = Registrations(accept=False)
    caller, acd, renderer = flow(configuration, "9", register)
    task = await waiting(caller, "en")
    await asyncio.wait_for(caller.offer_callback("sales"), 1)
    await settle()
    assert renderer.texts == [
        "en:For a callback, press 9.",
        "en:Sorry, 5551234 cannot be called back.",
    ]
    assert caller.waiting
    caller.call.hangup()
    await asyncio.wait_for(task, 1)
    assert acd.seen[-1] == ("caller_hung_up", "c1")  # still an abandon


async def test_the_ivrs_callback_is_registered_with_its_priority_skills_and_attributes(
    configuration: Configuration,
) -> None:
    register = Registrations(accept=True)
    caller, _, _ = flow(configuration, "", register)
    offer = OfferCallback(
        queue="support",
        number="+15550009999",
        priority=7,
        skills=MappingProxyType({"spanish": 3}),
        attributes=MappingProxyType({"reason": "outage", "empty": ""}),
        variables=MappingProxyType({"caller_id": "5551234", "account_number": "123456"}),
    )
    await caller._register_callback(offer, "es")
    ((_, step, number, queued),) = register.seen
    assert (step.queue_id, step.priority, dict(step.skills), step.language) == (
        "support",
        7,
        {"spanish": 3},
        "es",
    )
    assert dict(step.attributes) == {
        "caller_id": "5551234",
        "account_number": "123456",
        "reason": "outage",
    }
    assert (number, queued) == ("+15550009999", False)


async def test_the_ivrs_callback_is_routed_by_the_crms_answer_too(
    configuration: Configuration,
) -> None:
    register = Registrations(accept=True)
    caller, _, _ = flow(configuration, "", register)
    asked: list[tuple[str, dict[str, str]]] = []

    async def crm(caller_id: str, attributes: Mapping[str, str]) -> RoutingAttributes:
        asked.append((caller_id, dict(attributes)))
        return RoutingAttributes(
            priority=9,
            skills=MappingProxyType({"french": 1}),
            preferred_agent="1002",
            screen_pop=MappingProxyType({"tier": "gold"}),
        )

    caller.services = dataclasses.replace(caller.services, crm_routing=crm)
    offer = OfferCallback(
        queue="support",
        number="+15550009999",
        priority=2,
        skills=MappingProxyType({"mortgage": 3}),
        attributes=MappingProxyType({}),
        variables=MappingProxyType({}),
    )
    await caller._register_callback(offer, "en")
    assert [caller_id for caller_id, _ in asked] == ["5551234"]
    ((_, step, number, _),) = register.seen
    assert (step.priority, step.preferred_agent, number) == (9, "1002", "+15550009999")
    assert dict(step.skills) == {"mortgage": 3, "french": 1}


def _center(tmp_path: Path) -> CallCenter:
    shipped = load_configuration(default_config_dir())
    return build_call_center(
        shipped, TelephonyService(shipped), publish=lambda event: None, data_dir=tmp_path
    )


async def test_the_call_center_queues_the_callback_with_the_callers_needs(
    tmp_path: Path,
) -> None:
    center = _center(tmp_path)
    await center.start()
    try:
        needs: Mapping[str, int] = MappingProxyType({"billing": 3})
        step = QueueStep("support", priority=4, skills=needs)
        assert await center.register_callback("cb1", step, "+15550009999", False)
        waiting = center.acd.engine.calls["cb1"]
        assert waiting.priority == 4
        assert waiting.callback_destination == "+15550009999"
        assert waiting.required_skills == {"billing": 3}
    finally:
        await center.stop(0.1)


def test_the_acd_routes_a_callback_only_to_an_agent_with_the_callers_skills() -> None:
    h = Harness(
        [queue("q", need("support"), wrapuptime=0)],
        [agent("plain", support=3), agent("bilingual", support=3, spanish=3)],
    )
    h.enqueue("cb1", "q", required_skills={"spanish": 2})
    h.call("request_callback", "cb1", destination="+15550009999")
    assert of_type(h.login("plain"), OfferCall) == []
    (offer,) = of_type(h.login("bilingual"), OfferCall)
    assert (offer.call_id, offer.callback_destination) == ("cb1", "+15550009999")
