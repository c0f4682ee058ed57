"""The ACD's telephony port on the call API: what it asks telephony and what it reports back."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from acd.model import OfferFailure
from cxos.telephony_port import CallTelephonyPort
from telephony.calls import AgentLeg, Call, CallOutFailure, RingFailure


class LegControl:
    """What an AgentLeg asks of call control: here, a hang-up ends the leg at once."""

    def __init__(self) -> None:
        self.legs: dict[str, AgentLeg] = {}
        self.hung_up: list[str] = []

    def leg(self, leg_id: str, sip_user: str, call_id: str) -> AgentLeg:
        leg = AgentLeg(self, leg_id=leg_id, sip_user=sip_user, call_id=call_id, media=None)  # type: ignore[arg-type]
        self.legs[leg_id] = leg
        return leg

    def hangup(self, leg_id: str) -> None:
        self.hung_up.append(leg_id)
        self.legs[leg_id].mark_ended()


class FakeCall:
    """A waiting caller whose agent rings are answered by the test."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.ended = False
        self.rings: dict[str, asyncio.Future[AgentLeg | RingFailure]] = {}
        self.cancelled: list[str] = []

    async def originate_agent(self, sip_user: str, ring_timeout: float) -> AgentLeg | RingFailure:
        outcome: asyncio.Future[AgentLeg | RingFailure] = asyncio.get_running_loop().create_future()
        self.rings[sip_user] = outcome
        try:
            return await outcome
        except asyncio.CancelledError:
            self.cancelled.append(sip_user)
            raise


@dataclass
class Callers:
    calls: dict[str, FakeCall] = field(default_factory=dict)
    connected: list[tuple[str, str]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    routed: list[tuple[Any, ...]] = field(default_factory=list)
    accept: bool = True

    def waiting_call(self, call_id: str) -> Any:
        return self.calls.get(call_id)

    def connect(self, call_id: str, agent: AgentLeg) -> bool:
        self.connected.append((call_id, agent.leg_id))
        return self.accept

    def agent_lost(self, call_id: str) -> None:
        self.lost.append(call_id)

    def announce(self, *args: Any) -> None:
        self.routed.append(("announce", *args))

    def route(self, *args: Any) -> None:
        self.routed.append(("route", *args))

    def offer_callback(self, *args: Any) -> None:
        self.routed.append(("offer_callback", *args))

    async def ring_for_callback(
        self, call_id: str, sip_user: str, ring_timeout: float
    ) -> AgentLeg | RingFailure:
        raise AssertionError("no callback is rung here")

    async def call_customer(self, call_id: str, destination: str) -> Call | CallOutFailure:
        raise AssertionError("no customer is called here")


@dataclass
class Reports:
    seen: list[tuple[Any, ...]] = field(default_factory=list)

    def ringing(self, call_id: str, agent_id: str) -> None:
        self.seen.append(("ringing", call_id, agent_id))

    def answered(self, call_id: str, agent_id: str) -> None:
        self.seen.append(("answered", call_id, agent_id))

    def ring_failed(self, call_id: str, agent_id: str, reason: OfferFailure) -> None:
        self.seen.append(("ring_failed", call_id, agent_id, reason))

    def agent_hung_up(self, agent_id: str) -> None:
        self.seen.append(("agent_hung_up", agent_id))

    def caller_hung_up(self, call_id: str) -> None:
        self.seen.append(("caller_hung_up", call_id))

    def transfer_answered(
        self, call_id: str, agent_id: str, queue_id: str, ring_seconds: float
    ) -> None:
        self.seen.append(("transfer_answered", call_id, agent_id, queue_id, ring_seconds))

    def transfer_ended(self, call_id: str, agent_id: str) -> None:
        self.seen.append(("transfer_ended", call_id, agent_id))

    def callback_result(self, call_id: str, connected: bool) -> None:
        self.seen.append(("callback_result", call_id, connected))


@dataclass
class Rig:
    port: CallTelephonyPort
    callers: Callers
    reports: Reports
    control: LegControl
    call: FakeCall


@pytest.fixture
def rig() -> Rig:
    callers = Callers()
    call = FakeCall("c1")
    callers.calls["c1"] = call
    port = CallTelephonyPort(callers)
    reports = Reports()
    port.acd = reports
    return Rig(port, callers, reports, LegControl(), call)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_ringing_answer_and_bridge_are_reported_and_the_agents_hang_up_once(rig: Rig) -> None:
    await rig.port.ring_agent("c1", "alice", "1001", 15.0, {"department": "sales"})
    await settle()
    rig.port.on_ringing("c1", "1001")
    rig.port.on_ringing("c1", "1001")  # 183 after 180: one report
    leg = rig.control.leg("L1", "1001", "c1")
    rig.call.rings["1001"].set_result(leg)
    await settle()
    assert rig.reports.seen == [("ringing", "c1", "alice"), ("answered", "c1", "alice")]

    await rig.port.bridge("c1", "alice")
    assert rig.callers.connected == [("c1", "L1")]
    leg.hangup()  # whoever ends the agent's leg, the ACD hears it once
    await settle()
    assert rig.reports.seen[-1] == ("agent_hung_up", "alice")
    assert rig.reports.seen.count(("agent_hung_up", "alice")) == 1


@pytest.mark.parametrize(
    ("failure", "reported"),
    [
        (RingFailure.NO_ANSWER, OfferFailure.NO_ANSWER),
        (RingFailure.BUSY, OfferFailure.BUSY),
        (RingFailure.REJECTED, OfferFailure.REJECTED),
        (RingFailure.UNREGISTERED, OfferFailure.UNREGISTERED),
    ],
)
async def test_a_failed_ring_is_reported_with_the_acds_name_for_it(
    rig: Rig, failure: RingFailure, reported: OfferFailure
) -> None:
    await rig.port.ring_agent("c1", "alice", "1001", 15.0, {})
    await settle()
    rig.call.rings["1001"].set_result(failure)
    await settle()
    assert rig.reports.seen == [("ring_failed", "c1", "alice", reported)]
    assert rig.port.rings_in_progress == 0


async def test_withdrawing_a_ringing_offer_cancels_the_ring_without_a_report(rig: Rig) -> None:
    await rig.port.ring_agent("c1", "alice", "1001", 15.0, {})
    await settle()
    await rig.port.cancel_ring("c1", "alice", "answered_elsewhere")
    await settle()
    assert rig.call.cancelled == ["1001"]  # telephony sends CANCEL
    assert rig.reports.seen == []


async def test_an_answer_the_acd_no_longer_wants_is_hung_up_and_the_agent_is_not_on_a_call(
    rig: Rig,
) -> None:
    await rig.port.ring_agent("c1", "alice", "1001", 15.0, {})
    await settle()
    leg = rig.control.leg("L1", "1001", "c1")
    rig.call.rings["1001"].set_result(leg)
    await settle()
    await rig.port.cancel_ring("c1", "alice", "stale")
    await settle()
    assert leg.ended and rig.control.hung_up == ["L1"]
    assert rig.reports.seen == [("answered", "c1", "alice")]


async def test_an_agent_gone_before_the_bridge_frees_the_agent_and_requeues_the_caller(
    rig: Rig,
) -> None:
    await rig.port.ring_agent("c1", "alice", "1001", 15.0, {})
    await settle()
    leg = rig.control.leg("L1", "1001", "c1")
    rig.call.rings["1001"].set_result(leg)
    await settle()
    leg.hangup()
    await rig.port.bridge("c1", "alice")
    await settle()
    assert rig.callers.connected == []
    assert rig.callers.lost == ["c1"]
    assert rig.reports.seen[-1] == ("agent_hung_up", "alice")


async def test_a_caller_gone_at_the_bridge_releases_the_agent(rig: Rig) -> None:
    rig.callers.accept = False
    await rig.port.ring_agent("c1", "alice", "1001", 15.0, {})
    await settle()
    leg = rig.control.leg("L1", "1001", "c1")
    rig.call.rings["1001"].set_result(leg)
    await settle()
    await rig.port.bridge("c1", "alice")
    await settle()
    assert leg.ended
    assert rig.reports.seen[-1] == ("agent_hung_up", "alice")


async def test_ringing_for_a_caller_who_left_reports_the_hang_up(rig: Rig) -> None:
    await rig.port.ring_agent("gone", "alice", "1001", 15.0, {})
    assert rig.reports.seen == [("caller_hung_up", "gone")]
    assert rig.port.rings_in_progress == 0


async def test_caller_side_requests_go_to_the_callers_flow(rig: Rig) -> None:
    await rig.port.announce("c1", "sales", 2, 40.0)
    await rig.port.route_call("c1", "sales", "voicemail", "timeout")
    await rig.port.offer_callback("c1", "sales")
    assert rig.callers.routed == [
        ("announce", "c1", "sales", 2, 40.0),
        ("route", "c1", "sales", "voicemail", "timeout"),
        ("offer_callback", "c1", "sales"),
    ]


async def test_a_callback_cannot_be_dialled_and_says_so(rig: Rig) -> None:
    await rig.port.dial_callback("c1", "alice", "5551234", 1)
    assert rig.reports.seen == [("callback_result", "c1", False)]


async def test_closing_stops_every_ring(rig: Rig) -> None:
    await rig.port.ring_agent("c1", "alice", "1001", 15.0, {})
    await settle()
    rig.port.close()
    await settle()
    assert rig.call.cancelled == ["1001"]
    assert rig.port.rings_in_progress == 0
