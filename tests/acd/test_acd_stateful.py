"""Random sequences of inputs never double-offer an agent or connect a caller twice."""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from acd.actions import CancelOffer, OfferCall
from acd.agent_state import AgentState, IllegalTransitionError
from acd.engine import AcdEngine, Output
from acd.events import AgentAnswered, AgentStateChanged
from acd.model import EngineSettings, EscalationStep, OfferFailure, Strategy
from acd.waiting import CallStatus
from tests.acd.acd_fixtures import agent, need, queue

AGENTS = ("a1", "a2", "a3", "a4")
QUEUES = ("sales", "support", "all")
OFFER_STATES = ("reserved", "ringing")


def _engine() -> AcdEngine:
    return AcdEngine(
        [
            queue(
                "sales",
                need("sales", 3),
                wrapuptime=5,
                autopause=2,
                sticky_wait=10,
                max_wait=120,
                escalation=(
                    EscalationStep(after=15, relax_proficiency=2),
                    EscalationStep(after=30, overflow_queues=("support",)),
                ),
            ),
            queue("support", need("support"), strategy=Strategy.ROUND_ROBIN, retry=3),
            queue("all", strategy=Strategy.RING_ALL, leavewhenempty=True, callback_retry=5),
        ],
        [
            agent("a1", sales=5),
            agent("a2", sales=2, support=3),
            agent("a3", support=1, wrapuptime=0),
            agent("a4", sales=4, support=4),
        ],
        rng=random.Random(0),
        settings=EngineSettings(offer_lease=8),
    )


class AcdMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = _engine()
        self.now = 0.0
        self.next_call = 0
        self.offer_of: dict[str, str] = {}  # agent -> call, from the output stream
        self.connected: dict[str, str] = {}  # agent -> call

    # Feeding the engine ---------------------------------------------------------------------

    def _apply(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, OfferCall):
                assert out.agent_id not in self.offer_of, f"double offer to {out.agent_id}"
                assert out.agent_id not in self.connected, f"{out.agent_id} offered while on call"
                self.offer_of[out.agent_id] = out.call_id
            elif isinstance(out, CancelOffer):
                if out.reason != "stale":
                    assert self.offer_of.get(out.agent_id) == out.call_id
            elif isinstance(out, AgentAnswered):
                assert self.connected.get(out.agent_id) == out.call_id
            elif isinstance(out, AgentStateChanged):
                if out.state == "on_call":
                    assert out.call_id is not None
                    assert self.offer_of.get(out.agent_id) == out.call_id, "answer without offer"
                    assert out.call_id not in self.connected.values(), f"{out.call_id} twice"
                    self.connected[out.agent_id] = out.call_id
                else:
                    self.connected.pop(out.agent_id, None)
                if out.state not in OFFER_STATES:
                    self.offer_of.pop(out.agent_id, None)

    def _try(self, name: str, *args: object, **kw: object) -> None:
        try:
            outputs = getattr(self.engine, name)(*args, now=self.now, **kw)
        except IllegalTransitionError:
            return
        self._apply(outputs)

    # Rules ------------------------------------------------------------------------------------

    @rule(agent_id=st.sampled_from(AGENTS))
    def login(self, agent_id: str) -> None:
        self._try("agent_login", agent_id)

    @rule(agent_id=st.sampled_from(AGENTS))
    def logout(self, agent_id: str) -> None:
        self._try("agent_logout", agent_id)

    @rule(agent_id=st.sampled_from(AGENTS), reason=st.sampled_from(["break", "lunch"]))
    def pause(self, agent_id: str, reason: str) -> None:
        self._try("agent_pause", agent_id, reason=reason)

    @rule(agent_id=st.sampled_from(AGENTS))
    def unpause(self, agent_id: str) -> None:
        self._try("agent_unpause", agent_id)

    @rule(
        queue_id=st.sampled_from(QUEUES),
        priority=st.integers(0, 3),
        preferred=st.none() | st.sampled_from(AGENTS),
        customer=st.none() | st.sampled_from(["k1", "k2"]),
    )
    def enqueue(
        self, queue_id: str, priority: int, preferred: str | None, customer: str | None
    ) -> None:
        self.next_call += 1
        attributes = {"customer_id": customer} if customer else {}
        self._try(
            "enqueue",
            f"c{self.next_call}",
            queue_id,
            priority=priority,
            attributes=attributes,
            preferred_agent=preferred,
        )

    @precondition(lambda self: self.offer_of)
    @rule(data=st.data(), action=st.sampled_from(["ring", "answer", "fail"]))
    def respond_to_offer(self, data: st.DataObject, action: str) -> None:
        agent_id = data.draw(st.sampled_from(sorted(self.offer_of)))
        call_id = self.offer_of[agent_id]
        if action == "ring":
            self._try("offer_ringing", call_id, agent_id)
        elif action == "answer":
            self._try("offer_answered", call_id, agent_id)
        else:
            reason = data.draw(st.sampled_from(list(OfferFailure)))
            self._try("offer_failed", call_id, agent_id, reason)

    @precondition(lambda self: self.offer_of)
    @rule(data=st.data())
    def answer_offer(self, data: st.DataObject) -> None:
        agent_id = data.draw(st.sampled_from(sorted(self.offer_of)))
        self._try("offer_answered", self.offer_of[agent_id], agent_id)

    @rule(agent_id=st.sampled_from(AGENTS), call_no=st.integers(1, 30))
    def stale_report(self, agent_id: str, call_no: int) -> None:
        # Late reports from the phone side: must never disturb the current offer.
        if self.offer_of.get(agent_id) != f"c{call_no}":
            self._try("offer_ringing", f"c{call_no}", agent_id)
            self._try("offer_failed", f"c{call_no}", agent_id, OfferFailure.NO_ANSWER)
            self._try("offer_answered", f"c{call_no}", agent_id)

    @precondition(lambda self: self.connected)
    @rule(data=st.data())
    def hang_up(self, data: st.DataObject) -> None:
        agent_id = data.draw(st.sampled_from(sorted(self.connected)))
        call = self.engine.calls.get(self.connected[agent_id])
        if call is not None and call.status is CallStatus.DIALING:
            connected = data.draw(st.booleans())
            self._try("callback_result", call.call_id, connected=connected)
        else:
            self._try("call_ended", agent_id)

    @rule(call_no=st.integers(1, 30))
    def abandon(self, call_no: int) -> None:
        self._try("caller_abandoned", f"c{call_no}")

    @rule(data=st.data(), action=st.sampled_from(["priority", "move", "callback"]))
    def command_on_waiting(self, data: st.DataObject, action: str) -> None:
        waiting = sorted(
            c.call_id
            for q in self.engine.queues.values()
            for c in q.entries.values()
            if not c.is_callback
        )
        if not waiting:
            return
        call_id = data.draw(st.sampled_from(waiting))
        if action == "priority":
            self._try("set_priority", call_id, data.draw(st.integers(0, 5)))
        elif action == "move":
            target = data.draw(st.sampled_from(QUEUES))
            if target != self.engine.calls[call_id].queue_id:
                self._try("move_call", call_id, target)
        else:
            self._try("request_callback", call_id, destination="+15550100")

    @rule(seconds=st.sampled_from([0.5, 1.0, 3.0, 6.0, 20.0]))
    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while (deadline := self.engine.next_timer()) is not None and deadline <= target:
            self.now = max(self.now, deadline)
            self._apply(self.engine.on_timer(self.now))
        self.now = target

    # Invariants -------------------------------------------------------------------------------

    @invariant()
    def engine_agrees_with_its_outputs(self) -> None:
        for agent_id, runtime in self.engine.agents.items():
            state = runtime.state
            if state in (AgentState.RESERVED, AgentState.RINGING):
                assert self.offer_of.get(agent_id) == runtime.call_id
                call = self.engine.calls[runtime.call_id or ""]
                assert agent_id in call.offers
            else:
                assert agent_id not in self.offer_of
            if state is AgentState.ON_CALL:
                assert self.connected.get(agent_id) == runtime.call_id
            assert (agent_id in self.engine.router.available) == (state is AgentState.AVAILABLE)

    @invariant()
    def one_offer_per_call_except_ring_all(self) -> None:
        for call in self.engine.calls.values():
            if call.status is CallStatus.OFFERED:
                assert call.offers
                if call.queue_id != "all":
                    assert len(call.offers) == 1, call.offers
            elif call.status is CallStatus.WAITING:
                assert not call.offers

    @invariant()
    def no_available_agent_could_take_a_waiting_caller(self) -> None:
        engine = self.engine
        for call in engine.calls.values():
            if call.status is not CallStatus.WAITING or call.held_until is not None:
                continue
            if call.sticky_until is not None and self.now < call.sticky_until:
                continue
            for agent_id, runtime in engine.agents.items():
                if runtime.state is AgentState.AVAILABLE and call.may_offer_to(agent_id, self.now):
                    assert not call.wait_class.requirement.satisfied_by(runtime.skills), (
                        f"{agent_id} idle while {call.call_id} waits"
                    )


AcdMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestAcdMachine = AcdMachine.TestCase
