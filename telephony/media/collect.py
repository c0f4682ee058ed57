"""Collecting a caller's digits (an account number, a menu choice), sans-IO.

A `DigitCollector` is fed the digits of one leg as they are detected and the time; it ends when
`max_digits` are in, when the terminator key is pressed (not part of the result), when no first
key comes within `first_timeout`, or when the next key does not come within
`inter_digit_timeout`. Keys typed ahead (during the prompt before the collection) are fed first
by the caller of this class.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from telephony.rtp.dtmf import DTMF_KEYS

#: Why a collection ended.
CollectEnd = Literal["max_digits", "terminator", "timeout", "no_input"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectResult:
    digits: str
    reason: CollectEnd


class CollectState(enum.Enum):
    WAITING_FIRST = "waiting_first"
    COLLECTING = "collecting"
    DONE = "done"


class _Input(enum.Enum):
    DIGIT = "digit"
    LAST_DIGIT = "last_digit"  # the digit that reaches max_digits
    TERMINATOR = "terminator"
    TIMEOUT = "timeout"


_S, _I = CollectState, _Input
#: Every transition of a collection, with the end reason when it ends it.
_TRANSITIONS: Final[
    Mapping[tuple[CollectState, _Input], tuple[CollectState, CollectEnd | None]]
] = MappingProxyType(
    {
        (_S.WAITING_FIRST, _I.DIGIT): (_S.COLLECTING, None),
        (_S.WAITING_FIRST, _I.LAST_DIGIT): (_S.DONE, "max_digits"),
        (_S.WAITING_FIRST, _I.TERMINATOR): (_S.DONE, "terminator"),
        (_S.WAITING_FIRST, _I.TIMEOUT): (_S.DONE, "no_input"),
        (_S.COLLECTING, _I.DIGIT): (_S.COLLECTING, None),
        (_S.COLLECTING, _I.LAST_DIGIT): (_S.DONE, "max_digits"),
        (_S.COLLECTING, _I.TERMINATOR): (_S.DONE, "terminator"),
        (_S.COLLECTING, _I.TIMEOUT): (_S.DONE, "timeout"),
    }
)


class CollectFinishedError(RuntimeError):
    """Input was fed to a collection that already ended."""


class DigitCollector:
    def __init__(
        self,
        *,
        max_digits: int,
        now: float,
        terminator: str | None = "#",
        first_timeout: float = 5.0,
        inter_digit_timeout: float = 3.0,
    ) -> None:
        if max_digits < 1:
            raise ValueError(f"max_digits must be at least 1, got {max_digits}")
        if terminator is not None and (len(terminator) != 1 or terminator not in DTMF_KEYS):
            raise ValueError(f"terminator {terminator!r} is not a DTMF key")
        if first_timeout <= 0 or inter_digit_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.max_digits = max_digits
        self.terminator = terminator
        self.inter_digit_timeout = inter_digit_timeout
        self.state = CollectState.WAITING_FIRST
        self.result: CollectResult | None = None
        self._digits: list[str] = []
        self._deadline: float | None = now + first_timeout

    @property
    def next_deadline(self) -> float | None:
        return self._deadline

    def feed(self, digit: str, now: float) -> CollectResult | None:
        """One key press; the result if it ended the collection."""
        if digit == self.terminator:
            return self._apply(_Input.TERMINATOR, now)
        self._digits.append(digit)
        if len(self._digits) >= self.max_digits:
            return self._apply(_Input.LAST_DIGIT, now)
        return self._apply(_Input.DIGIT, now)

    def on_timer(self, now: float) -> CollectResult | None:
        if self._deadline is None or now < self._deadline:
            return None
        return self._apply(_Input.TIMEOUT, now)

    def _apply(self, kind: _Input, now: float) -> CollectResult | None:
        try:
            self.state, reason = _TRANSITIONS[(self.state, kind)]
        except KeyError:
            raise CollectFinishedError(
                f"digit collection: no transition from {self.state.name} on {kind.name}"
            ) from None
        if reason is None:
            self._deadline = now + self.inter_digit_timeout
            return None
        self._deadline = None
        self.result = CollectResult(digits="".join(self._digits), reason=reason)
        return self.result
