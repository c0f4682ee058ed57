"""The IVR interpreter: one sans-IO session per call walking one immutable tree.

The session takes inputs with the current monotonic time ``now`` and returns actions for the
runner plus domain events; it never reads a clock or performs I/O. Its only timer (first-key /
silence timeout, inter-digit timeout, CRM lookup timeout) is exposed by ``next_timer()`` and served
by ``handle_timer(now)``.

Which input is legal in which phase is one table (``_TRANSITIONS``); an input outside it is a
mistake of the runner and raises :class:`IvrUsageError`. Answers to actions the session no longer
waits for (a prompt stopped by barge-in, a lookup that timed out) carry an old id and are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType

from config.ivr.nodes import (
    CallbackNode,
    CollectDigitsNode,
    CollectSpeechNode,
    ConditionNode,
    CrmLookupNode,
    GotoNode,
    HangupNode,
    LanguageNode,
    MenuNode,
    PlayNode,
    QueueNode,
    SetVariableNode,
    TransferNode,
    VoicemailNode,
)
from config.ivr.schema import Prompt
from config.ivr.tree import IvrTree
from ivr.actions import (
    CrmLookup,
    Hangup,
    IvrAction,
    Play,
    RecordVoicemail,
    StopPlayback,
)
from ivr.conditions import ConditionContext, holds
from ivr.events import Destination, IvrEntered, IvrExited, IvrVoicemailRecorded
from ivr.inputs import (
    CallerHungUp,
    CallStarted,
    CrmLookupResult,
    DigitsReceived,
    IvrInput,
    NoInput,
    NoMatch,
    PromptFinished,
    RecordingFinished,
    SpeechRecognized,
)
from ivr.nodes.asking import AskingNode
from ivr.nodes.exits import exit_for
from ivr.session_asking import TYPE_AHEAD_LIMIT, AskingMixin
from ivr.state import IvrOutput, IvrUsageError, Phase
from ivr.templates import prompt_parts, render

__all__ = ["IvrOutput", "IvrSession", "IvrUsageError", "Phase"]

logger = logging.getLogger(__name__)


class _TimerFired:
    """The session's own deadline passed (see ``handle_timer``)."""


_Handler = Callable[["IvrSession", object, float], None]


class IvrSession(AskingMixin):
    """One call walking one tree. Keep the tree object for the whole call: a reload builds new
    trees, and calls already inside keep the version they started with."""

    def __init__(self, tree: IvrTree, *, call_id: str, max_steps_without_input: int = 100) -> None:
        if not call_id:
            raise ValueError("call_id must not be empty")
        super().__init__()
        self.tree = tree
        self.call_id = call_id
        self._phase = Phase.IDLE
        self._max_steps = max_steps_without_input
        self._variables: dict[str, str] = {}
        self._route: list[str] = []
        self._node_id = tree.start
        self._deadline: float | None = None
        self._next_id = 0
        self._awaited_play: int | None = None
        self._awaited_lookup: int | None = None
        self._awaited_record: int | None = None
        self._started_now = 0.0
        self._started_at: datetime | None = None
        self._destination: tuple[Destination, str] | None = None
        self._out: list[IvrOutput] = []

    # Public API ------------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def finished(self) -> bool:
        return self._phase is Phase.FINISHED

    @property
    def destination(self) -> tuple[Destination, str] | None:
        """Where the call went when the walk ended: (kind, queue/target/mailbox/reason)."""
        return self._destination

    @property
    def variables(self) -> Mapping[str, str]:
        return MappingProxyType(dict(self._variables))

    @property
    def route(self) -> tuple[str, ...]:
        return tuple(self._route)

    @property
    def language(self) -> str:
        chosen = self._variables.get("language", "")
        return chosen if chosen in self.tree.languages else self.tree.default_language

    @property
    def listening_for(self) -> str | None:
        """``dtmf``, ``speech`` or ``dtmf+speech`` while a question waits for an answer."""
        if self._phase in {Phase.PROMPTING, Phase.AWAITING_INPUT, Phase.ENTERING_DIGITS}:
            return self._question.listens_for if self._question is not None else None
        return None

    def next_timer(self) -> float | None:
        return self._deadline

    def handle(self, event: IvrInput, now: float) -> list[IvrOutput]:
        if self._is_stale(event):
            logger.debug("call %s: ignoring late %s", self.call_id, type(event).__name__)
            return []
        return self._dispatch(event, now)

    def handle_timer(self, now: float) -> list[IvrOutput]:
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        return self._dispatch(_TimerFired(), now)

    # Dispatch ----------------------------------------------------------------------------------

    def _dispatch(self, event: object, now: float) -> list[IvrOutput]:
        handler = _TRANSITIONS.get((self._phase, type(event)))
        if handler is None:
            raise IvrUsageError(
                f"call {self.call_id}: {type(event).__name__.lstrip('_')} is not expected "
                f"while {self._phase.value} at node {self._node_id!r}"
            )
        handler(self, event, now)
        out, self._out = self._out, []
        return out

    def _is_stale(self, event: IvrInput) -> bool:
        if isinstance(event, PromptFinished):
            return event.play_id != self._awaited_play
        if isinstance(event, CrmLookupResult):
            return event.lookup_id != self._awaited_lookup
        if isinstance(event, RecordingFinished):
            return event.record_id != self._awaited_record
        return False

    def _emit(self, output: IvrOutput) -> None:
        self._out.append(output)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _moment(self, now: float) -> datetime:
        assert self._started_at is not None
        return self._started_at + timedelta(seconds=max(0.0, now - self._started_now))

    # Inputs outside questions ------------------------------------------------------------------

    def _on_start(self, event: object, now: float) -> None:
        assert isinstance(event, CallStarted)
        self._started_now = now
        self._started_at = event.started_at
        self._variables = {
            **self.tree.variables,
            **event.variables,
            "caller_id": event.caller_id,
            "dialed_number": event.dialed_number,
            "call_id": self.call_id,
            "tree": self.tree.tree_id,
        }
        self._variables.setdefault("language", self.tree.default_language)
        self._emit(
            IvrEntered(
                call_id=self.call_id,
                tree_id=self.tree.tree_id,
                node_id=self.tree.start,
                language=self.language,
            )
        )
        self._goto(self.tree.start, now)

    def _on_played(self, event: object, now: float) -> None:
        self._awaited_play = None
        node = self.tree.node(self._node_id)
        if isinstance(node, PlayNode):
            self._goto(node.next, now)
        elif isinstance(node, VoicemailNode):
            self._record(node)
        elif isinstance(node, CallbackNode | HangupNode):
            self._leave(node, now)
        else:  # the exit prompt of a question, before its failure route
            assert self._exit_target is not None
            self._goto(self._exit_target, now)

    def _on_type_ahead(self, event: object, now: float) -> None:
        assert isinstance(event, DigitsReceived)
        self._type_ahead = (self._type_ahead + event.digits)[-TYPE_AHEAD_LIMIT:]
        node = self.tree.node(self._node_id)
        if self._phase is Phase.PLAYING and isinstance(node, PlayNode) and node.barge_in:
            self._emit(StopPlayback())
            self._awaited_play = None
            self._goto(node.next, now)

    def _on_looked_up(self, event: object, now: float) -> None:
        assert isinstance(event, CrmLookupResult)
        node = self.tree.node(self._node_id)
        assert isinstance(node, CrmLookupNode)
        self._awaited_lookup = None
        self._deadline = None
        self._variables["crm.found"] = "true" if event.found else "false"
        if event.found:
            wanted = node.fields or tuple(event.fields)
            for name in wanted:
                if name in event.fields:
                    self._variables[f"crm.{name}"] = event.fields[name]
            self._goto(node.next, now)
        else:
            self._goto(node.on_not_found or node.next, now)

    def _on_lookup_timeout(self, event: object, now: float) -> None:
        node = self.tree.node(self._node_id)
        assert isinstance(node, CrmLookupNode)
        logger.info("call %s: CRM lookup at %r timed out", self.call_id, self._node_id)
        self._awaited_lookup = None
        self._variables["crm.found"] = "false"
        self._goto(node.on_not_found or node.next, now)

    def _on_recorded(self, event: object, now: float) -> None:
        assert isinstance(event, RecordingFinished)
        node = self.tree.node(self._node_id)
        assert isinstance(node, VoicemailNode)
        self._awaited_record = None
        self._emit(
            IvrVoicemailRecorded(
                call_id=self.call_id,
                tree_id=self.tree.tree_id,
                node_id=self._node_id,
                mailbox=node.mailbox,
                recording_id=event.recording_id,
                duration_seconds=event.duration_seconds,
                variables=self.variables,
            )
        )
        if node.next is not None:
            self._goto(node.next, now)
        else:
            self._finish("voicemail", node.mailbox, (Hangup(reason="voicemail"),), now)

    def _on_caller_hung_up(self, event: object, now: float) -> None:
        self._finish("abandoned", "caller_hung_up", (), now)

    def _ignore(self, event: object, now: float) -> None:
        logger.debug(
            "call %s: %s ignored while %s", self.call_id, type(event).__name__, self._phase.value
        )

    # Walking -----------------------------------------------------------------------------------

    def _goto(self, target: str, now: float) -> None:
        """Enter ``target`` and run through nodes that need nothing from outside."""
        next_id: str | None = target
        steps = 0
        while next_id is not None:
            steps += 1
            if steps > self._max_steps:
                logger.warning(
                    "call %s: %d nodes in a row without input; hanging up", self.call_id, steps
                )
                self._finish("hangup", "loop", (Hangup(reason="loop"),), now)
                return
            next_id = self._enter(next_id, now)

    def _enter(self, node_id: str, now: float) -> str | None:
        node = self.tree.node(node_id)
        self._node_id = node_id
        self._route.append(node_id)
        self._deadline = None
        if isinstance(node, GotoNode):
            return node.next
        if isinstance(node, SetVariableNode):
            for name, value in node.assign.items():
                self._variables[name] = render(value, self._variables)
            return node.next
        if isinstance(node, ConditionNode):
            return self._branch(node, now)
        if isinstance(node, MenuNode | LanguageNode | CollectDigitsNode | CollectSpeechNode):
            self._begin_question(now)
            return None
        if isinstance(node, QueueNode | TransferNode):
            self._leave(node, now)
            return None
        if isinstance(node, CrmLookupNode):
            self._awaited_lookup = self._new_id()
            self._emit(
                CrmLookup(
                    lookup_id=self._awaited_lookup,
                    key=render(node.key, self._variables),
                    fields=node.fields,
                    timeout=node.timeout,
                )
            )
            self._phase = Phase.LOOKING_UP
            self._deadline = now + node.timeout
            return None
        if isinstance(node, PlayNode):
            self._play((node.prompt,), barge_in=node.barge_in)
            self._phase = Phase.PLAYING
            return None
        if isinstance(node, VoicemailNode | CallbackNode | HangupNode):
            if node.prompt is None:
                if isinstance(node, VoicemailNode):
                    self._record(node)
                else:
                    self._leave(node, now)
            else:
                self._play((node.prompt,), barge_in=False)
                self._phase = Phase.PLAYING
            return None
        raise AssertionError(f"node type {node.type!r} has no behaviour")

    def _branch(self, node: ConditionNode, now: float) -> str:
        context = ConditionContext(
            variables=self._variables,
            moment=self._moment(now),
            timezone=node.timezone or self.tree.timezone,
            holidays=self.tree.holidays,
        )
        for branch in node.branches:
            if holds(branch.when, context):
                return branch.next
        return node.otherwise

    def _play(self, prompts: tuple[Prompt, ...], *, barge_in: bool) -> None:
        language = self.language
        parts = prompt_parts(
            prompts,
            language=language,
            default_language=self.tree.default_language,
            variables=self._variables,
            folder=self.tree.prompts_dir,
        )
        self._awaited_play = self._new_id()
        self._emit(
            Play(
                play_id=self._awaited_play,
                prompts=parts,
                barge_in=barge_in,
                language=language,
            )
        )

    def _record(self, node: VoicemailNode) -> None:
        self._awaited_record = self._new_id()
        self._emit(
            RecordVoicemail(
                record_id=self._awaited_record,
                mailbox=node.mailbox,
                beep=node.beep,
                max_seconds=node.max_seconds,
            )
        )
        self._phase = Phase.RECORDING

    def _leave(
        self, node: QueueNode | TransferNode | CallbackNode | HangupNode, now: float
    ) -> None:
        if isinstance(node, HangupNode):
            self._finish("hangup", node.reason, (Hangup(reason=node.reason),), now)
            return
        done = exit_for(node, self._variables, self.call_id)
        actions = done.actions
        if isinstance(node, CallbackNode):
            actions = (*actions, Hangup(reason="callback"))
        self._finish(done.destination, done.target, actions, now)

    def _finish(
        self, destination: Destination, target: str, actions: tuple[IvrAction, ...], now: float
    ) -> None:
        for action in actions:
            self._emit(action)
        self._phase = Phase.FINISHED
        self._deadline = None
        self._destination = (destination, target)
        self._emit(
            IvrExited(
                call_id=self.call_id,
                tree_id=self.tree.tree_id,
                node_id=self._node_id,
                destination=destination,
                target=target,
                route=self.route,
                variables=self.variables,
                seconds_in_ivr=max(0.0, now - self._started_now),
            )
        )

    def _asking_node(self) -> AskingNode:
        node = self.tree.node(self._node_id)
        assert isinstance(node, MenuNode | LanguageNode | CollectDigitsNode | CollectSpeechNode)
        return node


def _handlers() -> Mapping[tuple[Phase, type], _Handler]:
    s = IvrSession
    p = Phase
    asking = (p.PROMPTING, p.AWAITING_INPUT)
    table: dict[tuple[Phase, type], _Handler] = {
        (p.IDLE, CallStarted): s._on_start,
        (p.PLAYING, PromptFinished): s._on_played,
        (p.PLAYING, DigitsReceived): s._on_type_ahead,
        (p.PROMPTING, PromptFinished): s._on_prompted,
        (p.AWAITING_INPUT, _TimerFired): s._on_silence,
        (p.ENTERING_DIGITS, DigitsReceived): s._on_digits,
        (p.ENTERING_DIGITS, _TimerFired): s._on_entry_timeout,
        (p.ENTERING_DIGITS, SpeechRecognized): s._ignore,
        (p.ENTERING_DIGITS, NoInput): s._ignore,
        (p.ENTERING_DIGITS, NoMatch): s._ignore,
        (p.LOOKING_UP, CrmLookupResult): s._on_looked_up,
        (p.LOOKING_UP, _TimerFired): s._on_lookup_timeout,
        (p.LOOKING_UP, DigitsReceived): s._on_type_ahead,
        (p.RECORDING, RecordingFinished): s._on_recorded,
        (p.RECORDING, DigitsReceived): s._ignore,
    }
    for phase in asking:
        table[(phase, DigitsReceived)] = s._on_digits
        table[(phase, SpeechRecognized)] = s._on_speech
        table[(phase, NoInput)] = s._on_silence
        table[(phase, NoMatch)] = s._on_no_match
    for phase in p:
        if phase not in {p.IDLE, p.FINISHED}:
            table[(phase, CallerHungUp)] = s._on_caller_hung_up
    # After the walk ended, answers still in flight (a stopped prompt, a late key) are expected.
    for kind in (
        PromptFinished,
        DigitsReceived,
        SpeechRecognized,
        NoInput,
        NoMatch,
        CrmLookupResult,
        RecordingFinished,
        CallerHungUp,
    ):
        table[(p.FINISHED, kind)] = s._ignore
    return MappingProxyType(table)


_TRANSITIONS = _handlers()
