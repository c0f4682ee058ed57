"""How an IVR session asks a question and counts retries (FreeSWITCH's menu semantics).

The greeting plays with barge-in; the first key or utterance stops it. An invalid answer plays
the invalid prompt and the short greeting, a silence the timeout prompt and the short greeting;
after ``max_failures`` invalid answers or ``max_timeouts`` silences the call leaves through the
node's failure (or timeout) route, after its exit prompt if it has one. Menus remember the menus
above them so that ``back`` and ``top`` work.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from config.ivr.nodes import CollectDigitsNode, LanguageNode, MenuNode
from config.ivr.schema import Prompt
from config.ivr.tree import IvrTree
from ivr.actions import CollectDigits, ListenSpeech, StopPlayback
from ivr.events import InputOutcome, IvrInput
from ivr.inputs import DigitsReceived, SpeechRecognized
from ivr.nodes.asking import (
    Answer,
    AskingNode,
    Question,
    digits_complete,
    judge_digits,
    judge_speech,
    question,
)
from ivr.state import IvrOutput, IvrUsageError, Phase
from ivr.templates import render

__all__ = ["TYPE_AHEAD_LIMIT", "AskingMixin"]

#: Keys typed ahead of the next question that are kept for it (FreeSWITCH's digit buffer).
TYPE_AHEAD_LIMIT = 32


class AskingMixin:
    """Question handling of :class:`ivr.interpreter.IvrSession` (split out for size)."""

    tree: IvrTree
    call_id: str
    _phase: Phase
    _node_id: str
    _deadline: float | None
    _awaited_play: int | None
    _variables: dict[str, str]

    def __init__(self) -> None:
        self._question: Question | None = None
        self._type_ahead = ""
        self._entry = ""
        self._failures = 0
        self._timeouts = 0
        self._confirming = False
        self._exit_target: str | None = None
        self._menu_stack: list[str] = []

    # Provided by the session.
    def _emit(self, output: IvrOutput) -> None:
        raise NotImplementedError

    def _play(self, prompts: tuple[Prompt, ...], *, barge_in: bool) -> None:
        raise NotImplementedError

    def _goto(self, target: str, now: float) -> None:
        raise NotImplementedError

    def _asking_node(self) -> AskingNode:
        raise NotImplementedError

    # Asking ------------------------------------------------------------------------------------

    def _begin_question(self, now: float) -> None:
        node = self._asking_node()
        if isinstance(node, MenuNode):
            if self._node_id in self._menu_stack:
                del self._menu_stack[self._menu_stack.index(self._node_id) + 1 :]
            else:
                self._menu_stack.append(self._node_id)
        self._failures = self._timeouts = 0
        self._confirming = False
        self._exit_target = None
        self._ask(now, first=True, preface=None)

    def _ask(self, now: float, *, first: bool, preface: Prompt | None) -> None:
        node = self._asking_node()
        asked = question(node, confirming=self._confirming)
        self._question = asked
        self._entry = ""
        if asked.digits is None:
            self._type_ahead = ""  # keys typed ahead of a voice-only question are dropped
        if self._type_ahead:
            self._listen(asked)
            self._phase = Phase.AWAITING_INPUT
            self._deadline = now + asked.silence_timeout
            keys, self._type_ahead = self._type_ahead, ""
            self._take_digits(keys, now)
            return
        greeting = asked.greeting if first else asked.again
        self._play((greeting,) if preface is None else (preface, greeting), barge_in=True)
        self._listen(asked)
        self._phase = Phase.PROMPTING
        self._deadline = None

    def _listen(self, asked: Question) -> None:
        if asked.digits is not None:
            rule = asked.digits
            self._emit(
                CollectDigits(
                    max_digits=rule.max_digits,
                    min_digits=rule.min_digits,
                    terminator=rule.terminator,
                    first_timeout=rule.first_timeout,
                    inter_digit_timeout=rule.inter_digit_timeout,
                )
            )
        if asked.speech is not None:
            speech = asked.speech
            self._emit(
                ListenSpeech(
                    phrases=speech.phrases,
                    confidence_threshold=speech.confidence_threshold,
                    no_input_timeout=speech.no_input_timeout,
                    max_speech_seconds=speech.max_speech_seconds,
                    dtmf_allowed=asked.digits is not None,
                    language=self._language_now(),
                )
            )

    def _language_now(self) -> str:
        chosen = self._variables.get("language", "")
        return chosen if chosen in self.tree.languages else self.tree.default_language

    def _current_question(self) -> Question:
        assert self._question is not None
        return self._question

    # Inputs --------------------------------------------------------------------------------------

    def _on_prompted(self, event: object, now: float) -> None:
        self._awaited_play = None
        self._phase = Phase.AWAITING_INPUT
        self._deadline = now + self._current_question().silence_timeout

    def _barge_in(self) -> None:
        if self._phase is Phase.PROMPTING:
            self._emit(StopPlayback())
            self._awaited_play = None

    def _on_digits(self, event: object, now: float) -> None:
        assert isinstance(event, DigitsReceived)
        self._barge_in()
        if self._current_question().digits is None:
            self._reject(now, "invalid", digits=event.digits)
            return
        self._take_digits(event.digits, now)

    def _take_digits(self, keys: str, now: float) -> None:
        rule = self._current_question().digits
        assert rule is not None
        rest = ""
        for index, key in enumerate(keys):
            if rule.terminator is not None and key == rule.terminator:
                rest = keys[index + 1 :]
                break
            self._entry += key
            if digits_complete(rule, self._entry):
                rest = keys[index + 1 :]
                break
        else:
            self._phase = Phase.ENTERING_DIGITS
            self._deadline = now + rule.inter_digit_timeout
            return
        self._type_ahead = rest[-TYPE_AHEAD_LIMIT:]
        self._judge_entry(now)

    def _on_entry_timeout(self, event: object, now: float) -> None:
        self._judge_entry(now)

    def _judge_entry(self, now: float) -> None:
        entry, self._entry = self._entry, ""
        self._deadline = None
        answer = judge_digits(self._asking_node(), entry, confirming=self._confirming)
        if answer is None:
            self._reject(now, "invalid", digits=entry)
        else:
            self._accept(answer, now, digits=entry)

    def _on_speech(self, event: object, now: float) -> None:
        assert isinstance(event, SpeechRecognized)
        if self._current_question().speech is None:
            raise IvrUsageError(
                f"call {self.call_id}: speech result at {self._node_id!r}, which does not listen"
            )
        self._barge_in()
        verdict = judge_speech(self._asking_node(), event)
        if isinstance(verdict, Answer):
            self._accept(verdict, now, speech=event.text, confidence=event.confidence)
        else:
            self._reject(now, verdict, speech=event.text, confidence=event.confidence)

    def _on_no_match(self, event: object, now: float) -> None:
        self._barge_in()
        self._reject(now, "no_match")

    def _on_silence(self, event: object, now: float) -> None:
        self._barge_in()
        node = self._asking_node()
        self._report("no_input")
        self._timeouts += 1
        if self._timeouts >= node.max_timeouts:
            self._give_up(node.on_timeout or self._failure_route(node), now)
        else:
            self._ask(now, first=False, preface=node.timeout_prompt)

    # Verdicts ------------------------------------------------------------------------------------

    def _report(
        self,
        outcome: InputOutcome,
        *,
        digits: str | None = None,
        speech: str | None = None,
        confidence: float | None = None,
    ) -> None:
        kind: Literal["dtmf", "speech", "none"] = (
            "dtmf" if digits is not None else "speech" if speech is not None else "none"
        )
        event = IvrInput(
            call_id=self.call_id,
            tree_id=self.tree.tree_id,
            node_id=self._node_id,
            kind=kind,
            digits=digits,
            speech=speech,
            confidence=confidence,
            outcome=outcome,
            attempt=self._failures + self._timeouts + 1,
        )
        self._emit(event)

    def _reject(
        self,
        now: float,
        outcome: InputOutcome,
        *,
        digits: str | None = None,
        speech: str | None = None,
        confidence: float | None = None,
    ) -> None:
        node = self._asking_node()
        self._report(outcome, digits=digits, speech=speech, confidence=confidence)
        self._failures += 1
        if self._failures >= node.max_failures:
            self._give_up(self._failure_route(node), now)
        else:
            self._ask(now, first=False, preface=node.invalid_prompt)

    @staticmethod
    def _failure_route(node: AskingNode) -> str:
        if isinstance(node, LanguageNode):
            return node.on_failure or node.next
        assert node.on_failure is not None
        return node.on_failure

    def _give_up(self, target: str, now: float) -> None:
        node = self._asking_node()
        self._question = None
        if node.exit_prompt is None:
            self._goto(target, now)
            return
        self._exit_target = target
        self._play((node.exit_prompt,), barge_in=False)
        self._phase = Phase.PLAYING
        self._deadline = None

    def _accept(
        self,
        answer: Answer,
        now: float,
        *,
        digits: str | None = None,
        speech: str | None = None,
        confidence: float | None = None,
    ) -> None:
        node = self._asking_node()
        self._report("accepted", digits=digits, speech=speech, confidence=confidence)
        self._store(answer.assign, answer)
        if answer.action == "confirm":
            self._confirming = True
            self._variables[_variable_of(node)] = answer.value  # the read-back can say it
            self._ask(now, first=True, preface=None)
            return
        if answer.action == "reenter":
            self._confirming = False
            self._variables.pop(_variable_of(node), None)
            self._ask(now, first=True, preface=None)
            return
        self._question = None
        if answer.action == "repeat":
            self._goto(self._node_id, now)
        elif answer.action == "back":
            stack = self._menu_stack
            self._goto(stack[-2] if len(stack) >= 2 else self._node_id, now)
        elif answer.action == "top":
            self._goto(self._menu_stack[0] if self._menu_stack else self._node_id, now)
        else:
            assert answer.next is not None
            self._goto(answer.next, now)

    def _store(self, templates: Mapping[str, str], answer: Answer) -> None:
        for name, value in templates.items():
            self._variables[name] = render(value, self._variables)
        if answer.collected is not None:
            name, value = answer.collected
            self._variables[name] = value
        if answer.language is not None:
            self._variables["language"] = answer.language


def _variable_of(node: AskingNode) -> str:
    assert isinstance(node, CollectDigitsNode)
    return node.variable
