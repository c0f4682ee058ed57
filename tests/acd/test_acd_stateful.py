"""Random sequences of inputs never double-offer an agent or connect a caller twice, nor offer
a caller to an agent without the caller's own skills."""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from acd.actions import CancelOffer, OfferCall
from acd.agent_state import STAFFED_STATES, AgentState, IllegalTransitionError
from acd.engine import AcdEngine, Output
from acd.events import AgentAnswered, AgentStateChanged
from acd.model import (
    AgentProfile,
    EngineSettings,
    EscalationStep,
    OfferFailure,
    QueueConfig,
    Strategy,
    relaxed_skills,
)
from acd.waiting import CallStatus
from tests.acd.acd_fixtures import agent, need, queue

AGENTS = ("a1", "a2", "a3", "a4", "a5")  # a5 exists only in the reloaded configuration
QUEUES = ("sales", "support", "all")
OFFER_STATES = ("reserved", "ringing")
OUTSIDE_CALLS = ("t", "own")  # call ids of transfers and agents' own calls: never offered
# Callers' own needs: languages some agents speak at some level, and one nobody speaks.
CALL_SKILLS = (
    {"french": 1},
    {"french": 3},
    {"german": 2},
    {"french": 2, "german": 1},
    {"sales": 4},
    {"klingon": 1},
)


def _queues(reloaded: bool) -> list[QueueConfig]:
    queues = [
        queue(
            "sales",
            need("sales", 3),
            wrapuptime=5,
            autopause=2,
            sticky_wait=10,
            max_wait=60 if reloaded else 120,
            escalation=(
                EscalationStep(after=15, relax_proficiency=2),
                EscalationStep(after=30, overflow_queues=("support",)),
            ),
        ),
        queue(
            "support",
            need("support", 2 if reloaded else 1),
            strategy=Strategy.LINEAR if reloaded else Strategy.ROUND_ROBIN,
            retry=3,
        ),
    ]
    if not reloaded:  # the reload removes "all" (its waiting callers stay until served)
        queues.append(
            queue("all", strategy=Strategy.RING_ALL, leavewhenempty=True, callback_retry=5)
        )
    return queues


def _agents(reloaded: bool) -> list[AgentProfile]:
    if reloaded:  # a2 changes skills, a3 is removed, a5 is added
        return [
            agent("a1", sales=5, french=1),
            agent("a2", support=5, german=3),
            agent("a4", sales=4, support=4, french=4),
            agent("a5", sales=3, support=2, german=2),
        ]
    return [
        agent("a1", sales=5, french=3),
        agent("a2", sales=2, support=3, french=1, german=2),
        agent("a3", support=1, wrapuptime=0),
        agent("a4", sales=4, support=4, german=1),
    ]


def _engine() -> AcdEngine:
    return AcdEngine(
        _queues(False),
        _agents(False),
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
        self.reloaded = False

    # Feeding the engine ---------------------------------------------------------------------

    def _apply(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, OfferCall):
                assert out.agent_id not in self.offer_of, f"double offer to {out.agent_id}"
                assert out.agent_id not in self.connected, f"{out.agent_id} offered while on call"
                runtime = self.engine.agents[out.agent_id]
                assert runtime.transfer_call is None, f"{out.agent_id} offered, a transfer rings"
                assert runtime.own_call is None, f"{out.agent_id} offered on a call of their own"
                self._check_callers_skills(out.call_id, out.agent_id)
                self.offer_of[out.agent_id] = out.call_id
            elif isinstance(out, CancelOffer):
                if out.reason != "stale":
                    assert self.offer_of.get(out.agent_id) == out.call_id
            elif isinstance(out, AgentAnswered):
                assert self.connected.get(out.agent_id) == out.call_id
            elif isinstance(out, AgentStateChanged):
                if out.state == "on_call":
                    assert out.call_id is not None
                    if not out.call_id.startswith(OUTSIDE_CALLS):
                        assert self.offer_of.get(out.agent_id) == out.call_id, "not offered"
                    assert out.call_id not in self.connected.values(), f"{out.call_id} twice"
                    self.connected[out.agent_id] = out.call_id
                else:
                    self.connected.pop(out.agent_id, None)
                if out.state not in OFFER_STATES:
                    self.offer_of.pop(out.agent_id, None)

    def _check_callers_skills(self, call_id: str, agent_id: str) -> None:
        """The agent has each of the caller's own skills, at its level less the proficiency
        the caller's escalation steps so far relaxed (never below 1)."""
        call = self.engine.calls[call_id]
        steps = self.engine.queues[call.queue_id].config.escalation[: call.step]
        relax = sum(step.relax_proficiency for step in steps)
        skills = self.engine.agents[agent_id].skills
        for wanted in call.required:
            assert skills.get(wanted.skill, 0) >= max(1, wanted.min_proficiency - relax), (
                f"{agent_id} offered {call_id}, which needs {wanted}"
            )

    def _try(self, name: str, *args: object, **kw: object) -> None:
        try:
            outputs = getattr(self.engine, name)(*args, now=self.now, **kw)
        except IllegalTransitionError:
            return
        except KeyError as exc:
            # An agent or queue the current configuration does not have (any other lookup
            # failure is a bug and fails the test).
            if "unknown agent" in str(exc) or "unknown queue" in str(exc):
                return
            raise
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
        skills=st.none() | st.sampled_from(CALL_SKILLS),
    )
    def enqueue(
        self,
        queue_id: str,
        priority: int,
        preferred: str | None,
        customer: str | None,
        skills: dict[str, int] | None,
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
            required_skills=skills,
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

    @precondition(lambda self: self.offer_of)
    @rule(data=st.data(), held=st.sampled_from([0.0, 2.0, 10.0]))
    def claimed_by_another_node(self, data: st.DataObject, held: float) -> None:
        agent_id = data.draw(st.sampled_from(sorted(self.offer_of)))
        call_id = self.offer_of[agent_id]
        self._try("offer_claimed_elsewhere", call_id, agent_id, held_until=self.now + held)

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
        if self.connected[agent_id].startswith("own"):
            self._try("direct_call_ended", agent_id, self.connected[agent_id])
        elif call is not None and call.status is CallStatus.DIALING:
            connected = data.draw(st.booleans())
            self._try("callback_result", call.call_id, connected=connected)
        else:
            self._try("call_ended", agent_id)

    @rule(
        agent_id=st.sampled_from(AGENTS),
        call_no=st.integers(1, 3),
        report=st.sampled_from(["ringing", "answered", "failed"]),
    )
    def transfer(self, agent_id: str, call_no: int, report: str) -> None:
        # Another agent's phone transfers a caller to this agent's phone, outside the queues.
        call_id = f"t{call_no}"
        if report == "ringing":
            self._try("transfer_ringing", call_id, agent_id, ring_seconds=20.0)
        elif report == "answered" and call_id not in self.connected.values():
            self._try("transfer_answered", call_id, agent_id, "sales", ring_seconds=1.0)
        else:
            self._try("transfer_failed", call_id, agent_id)

    @rule(agent_id=st.sampled_from(AGENTS), call_no=st.integers(1, 3), ended=st.booleans())
    def own_call(self, agent_id: str, call_no: int, ended: bool) -> None:
        # A call the agent placed from their softphone (whatever state they are in).
        call_id = f"own{call_no}"
        if ended:
            self._try("direct_call_ended", agent_id, call_id)
        elif call_id not in self.connected.values() and all(
            a.own_call != call_id for a in self.engine.agents.values()
        ):
            self._try("direct_call_started", agent_id, call_id)

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

    @rule()
    def reload(self) -> None:
        self.reloaded = not self.reloaded
        self._try("reconfigure", _queues(self.reloaded), _agents(self.reloaded))

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

    @invariant()
    def each_wait_class_ranks_exactly_the_available_agents_who_qualify(self) -> None:
        agents = self.engine.agents
        classes = [cls for runtime in self.engine.queues.values() for cls in runtime.classes]
        for cls in classes + list(self.engine.router.own_classes()):
            expected = {
                agent_id
                for agent_id, agent in agents.items()
                if agent.free and cls.requirement.satisfied_by(agent.skills)
            }
            ranked = cls.free.ordered()
            assert len(ranked) == len(expected) and set(ranked) == expected
            staffed = sum(
                1
                for agent in agents.values()
                if agent.state in STAFFED_STATES and cls.requirement.satisfied_by(agent.skills)
            )
            assert cls.staffed == staffed

    @invariant()
    def classes_of_callers_skills_exist_while_callers_wait_in_them(self) -> None:
        engine = self.engine
        own = {id(cls): cls for cls in engine.router.own_classes()}
        members: dict[int, set[str]] = {key: set() for key in own}
        for call in engine.calls.values():
            cls = call.wait_class
            if cls.own:
                assert id(cls) in own, f"{call.call_id} waits in a dropped class"
                members[id(cls)].add(call.call_id)
            elif call.required:
                steps = engine.queues[call.queue_id].config.escalation[: call.step]
                relax = sum(step.relax_proficiency for step in steps)
                assert cls.requirement.includes(relaxed_skills(call.required, relax)), call
        for key, cls in own.items():
            assert cls.members == members[key] and cls.members, "a class kept without callers"

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
                if runtime.free and call.may_offer_to(agent_id, self.now):
                    assert not call.wait_class.requirement.satisfied_by(runtime.skills), (
                        f"{agent_id} idle while {call.call_id} waits"
                    )


AcdMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestAcdMachine = AcdMachine.TestCase
