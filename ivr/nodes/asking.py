"""Nodes that ask the caller something: what to listen for, and how an answer is judged.

Menus, language selection, digit collection (with its optional read-back confirmation) and speech
collection share one shape: a greeting (long, then short on a retry), keys and/or speech to listen
for, and a verdict on each complete answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from config.ivr.nodes import (
    CollectDigitsNode,
    CollectSpeechNode,
    LanguageNode,
    MenuNode,
)
from config.ivr.schema import Prompt
from ivr.inputs import SpeechRecognized
from ivr.matching import match_phrase

__all__ = [
    "MENU_SPEECH_SECONDS",
    "Answer",
    "AskingNode",
    "DigitRule",
    "Question",
    "Rejection",
    "SpeechRule",
    "digits_complete",
    "judge_digits",
    "judge_speech",
    "question",
]

AskingNode = MenuNode | LanguageNode | CollectDigitsNode | CollectSpeechNode

#: Longest answer to a menu, in seconds, before the speech layer must have reported.
MENU_SPEECH_SECONDS = 10.0

Rejection = Literal["invalid", "low_confidence", "no_match"]


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitRule:
    min_digits: int
    max_digits: int
    terminator: str | None
    first_timeout: float
    inter_digit_timeout: float
    #: A menu's keys: an entry equal to one of them (and prefix of no longer one) is complete.
    keys: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechRule:
    phrases: tuple[str, ...]
    confidence_threshold: float
    no_input_timeout: float
    max_speech_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Question:
    greeting: Prompt
    again: Prompt
    digits: DigitRule | None
    speech: SpeechRule | None

    @property
    def listens_for(self) -> str:
        return "+".join(
            kind
            for kind, rule in (("dtmf", self.digits), ("speech", self.speech))
            if rule is not None
        )

    @property
    def silence_timeout(self) -> float:
        """Seconds after the greeting before the session itself declares a silence; with speech
        it leaves room for the speech layer's own no-input timeout and the longest answer."""
        if self.speech is not None:
            return self.speech.no_input_timeout + self.speech.max_speech_seconds
        assert self.digits is not None
        return self.digits.first_timeout


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A valid answer and what it leads to."""

    value: str
    next: str | None = None
    #: ``repeat``/``back``/``top`` for menu navigation; ``reenter`` when a read-back is denied;
    #: ``confirm`` when the value must be read back first.
    action: Literal["repeat", "back", "top", "reenter", "confirm"] | None = None
    #: Templates to set (a menu choice's ``set``).
    assign: Mapping[str, str] = field(default_factory=_empty)
    #: (variable, value) of a collection, stored as given.
    collected: tuple[str, str] | None = None
    language: str | None = None


def question(node: AskingNode, *, confirming: bool) -> Question:
    if isinstance(node, MenuNode):
        keys = frozenset(c.dtmf for c in node.choices if c.dtmf is not None)
        phrases = tuple(p for c in node.choices for p in c.phrases)
        return Question(
            greeting=node.greet_long,
            again=node.greet_short or node.greet_long,
            digits=_key_rule(keys, node.timeout, node.inter_digit_timeout),
            speech=_phrase_rule(phrases, node.confidence_threshold, node.timeout),
        )
    if isinstance(node, LanguageNode):
        keys = frozenset(c.dtmf for c in node.choices if c.dtmf is not None)
        phrases = tuple(p for c in node.choices for p in c.phrases)
        return Question(
            greeting=node.prompt,
            again=node.prompt,
            digits=_key_rule(keys, node.timeout, node.timeout),
            speech=_phrase_rule(phrases, node.confidence_threshold, node.timeout),
        )
    if isinstance(node, CollectDigitsNode):
        if confirming and node.confirm is not None:
            keys = frozenset({node.confirm.yes, node.confirm.no})
            rule = _key_rule(keys, node.first_timeout, node.inter_digit_timeout)
            return Question(
                greeting=node.confirm.prompt, again=node.confirm.prompt, digits=rule, speech=None
            )
        rule = DigitRule(
            min_digits=node.min_length,
            max_digits=node.max_length,
            terminator=node.terminator,
            first_timeout=node.first_timeout,
            inter_digit_timeout=node.inter_digit_timeout,
        )
        return Question(greeting=node.prompt, again=node.prompt, digits=rule, speech=None)
    fallback = node.dtmf
    return Question(
        greeting=node.prompt,
        again=node.prompt,
        digits=None
        if fallback is None
        else DigitRule(
            min_digits=fallback.min_length,
            max_digits=fallback.max_length,
            terminator=fallback.terminator,
            first_timeout=node.timeout,
            inter_digit_timeout=fallback.inter_digit_timeout,
        ),
        speech=SpeechRule(
            phrases=node.phrases,
            confidence_threshold=node.confidence_threshold,
            no_input_timeout=node.timeout,
            max_speech_seconds=node.max_speech,
        ),
    )


def _key_rule(keys: frozenset[str], first: float, inter: float) -> DigitRule | None:
    if not keys:
        return None
    return DigitRule(
        min_digits=1,
        max_digits=max(len(key) for key in keys),
        terminator=None,
        first_timeout=first,
        inter_digit_timeout=inter,
        keys=keys,
    )


def _phrase_rule(phrases: tuple[str, ...], threshold: float, timeout: float) -> SpeechRule | None:
    if not phrases:
        return None
    return SpeechRule(
        phrases=phrases,
        confidence_threshold=threshold,
        no_input_timeout=timeout,
        max_speech_seconds=MENU_SPEECH_SECONDS,
    )


def digits_complete(rule: DigitRule, entry: str) -> bool:
    """Whether ``entry`` needs no more keys (a terminator also ends it, handled by the caller)."""
    if len(entry) >= rule.max_digits:
        return True
    if rule.keys:
        longer = any(key != entry and key.startswith(entry) for key in rule.keys)
        return not longer  # an exact key, or a prefix of none: waiting would not help
    return False


def judge_digits(node: AskingNode, entry: str, *, confirming: bool) -> Answer | None:
    """The answer a complete key entry gives, or ``None`` when it is invalid."""
    if isinstance(node, MenuNode):
        for choice in node.choices:
            if choice.dtmf == entry:
                return Answer(
                    value=entry, next=choice.next, action=choice.action, assign=choice.assign
                )
        return None
    if isinstance(node, LanguageNode):
        for option in node.choices:
            if option.dtmf == entry:
                return Answer(value=entry, next=node.next, language=option.language)
        return None
    if isinstance(node, CollectDigitsNode):
        if confirming and node.confirm is not None:
            if entry == node.confirm.yes:
                return Answer(value=entry, next=node.next)
            if entry == node.confirm.no:
                return Answer(value=entry, action="reenter")
            return None
        if not _valid_entry(entry, node.min_length, node.max_length, node.pattern):
            return None
        if node.confirm is not None:
            return Answer(value=entry, action="confirm")
        return Answer(value=entry, next=node.next, collected=(node.variable, entry))
    fallback = node.dtmf
    if fallback is None or not _valid_entry(
        entry, fallback.min_length, fallback.max_length, fallback.pattern
    ):
        return None
    return Answer(value=entry, next=node.next, collected=(node.variable, entry))


def _valid_entry(entry: str, shortest: int, longest: int, pattern: str | None) -> bool:
    if not shortest <= len(entry) <= longest:
        return False
    return pattern is None or re.fullmatch(pattern, entry) is not None


def judge_speech(node: AskingNode, result: SpeechRecognized) -> Answer | Rejection:
    """The answer an utterance gives; hypotheses below the confidence threshold are not used."""
    threshold = (
        node.confidence_threshold
        if isinstance(node, MenuNode | LanguageNode | CollectSpeechNode)
        else 1.0
    )
    hypotheses = [(result.text, result.confidence), *result.alternatives]
    confident = [text for text, confidence in hypotheses if confidence >= threshold]
    if not confident:
        return "low_confidence"
    for text in confident:
        answer = _answer_for(node, text)
        if answer is not None:
            return answer
    return "no_match"


def _answer_for(node: AskingNode, text: str) -> Answer | None:
    if isinstance(node, MenuNode):
        index = match_phrase(text, [(p, i) for i, c in enumerate(node.choices) for p in c.phrases])
        if index is None:
            return None
        choice = node.choices[index]
        return Answer(value=text, next=choice.next, action=choice.action, assign=choice.assign)
    if isinstance(node, LanguageNode):
        index = match_phrase(text, [(p, i) for i, c in enumerate(node.choices) for p in c.phrases])
        if index is None:
            return None
        return Answer(value=text, next=node.next, language=node.choices[index].language)
    if isinstance(node, CollectSpeechNode):
        if not node.phrases:
            return (
                Answer(value=text, next=node.next, collected=(node.variable, text))
                if text
                else None
            )
        index = match_phrase(text, [(p, i) for i, p in enumerate(node.phrases)])
        if index is None:
            return None
        phrase = node.phrases[index]
        return Answer(value=phrase, next=node.next, collected=(node.variable, phrase))
    return None
