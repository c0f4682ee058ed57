"""What an IVR session asks the runner to do; the runner maps each action to the call API.

Actions refer to each other by small integer ids (``play_id``, ``lookup_id``, ``record_id``) so
that a late answer to an action the session no longer waits for is recognized and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = [
    "CollectDigits",
    "CrmLookup",
    "EnqueueCall",
    "Hangup",
    "IvrAction",
    "ListenSpeech",
    "OfferCallback",
    "Play",
    "PromptPart",
    "RecordVoicemail",
    "StopPlayback",
    "Transfer",
]


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptPart:
    """A WAV file (path relative to the prompts folder, and the folder) or text for TTS."""

    text: str | None = None
    file: str | None = None
    folder: str | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.file is None):
            raise ValueError("a prompt part is either a file or a text")


@dataclass(frozen=True, slots=True, kw_only=True)
class Play:
    """Play these parts in order; with ``barge_in`` a key press or speech stops playback."""

    play_id: int
    prompts: tuple[PromptPart, ...]
    barge_in: bool
    language: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectDigits:
    """Start passing the caller's keys to the session (it keeps the timers itself; the values
    let the call API end a collection early and stop a prompt on the first key)."""

    max_digits: int
    min_digits: int
    terminator: str | None
    first_timeout: float
    inter_digit_timeout: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenSpeech:
    """Recognize the caller's speech against ``phrases`` (any speech when empty)."""

    phrases: tuple[str, ...]
    confidence_threshold: float
    no_input_timeout: float
    max_speech_seconds: float
    dtmf_allowed: bool
    language: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StopPlayback:
    """The caller barged in: stop the prompt now."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordVoicemail:
    record_id: int
    mailbox: str
    beep: bool
    max_seconds: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CrmLookup:
    """Ask the CRM bridge for the record with ``key``; answer with ``CrmLookupResult``."""

    lookup_id: int
    key: str
    fields: tuple[str, ...]
    timeout: float


@dataclass(frozen=True, slots=True, kw_only=True)
class EnqueueCall:
    """Hand the call to the ACD; ``skills`` are the caller's own needs (skill -> minimum
    proficiency 1..5) required of the agent on top of the queue's, ``attributes`` the routing
    data, ``variables`` everything collected in the tree (they travel with the call to the
    agent and the CRM events)."""

    queue: str
    priority: int
    skills: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    attributes: Mapping[str, str] = field(default_factory=_empty)
    variables: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    kind: Literal["agent", "extension", "external"]
    target: str
    trunk: str | None = None
    variables: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferCallback:
    """Register a callback to ``number`` in ``queue``, keeping the caller's place; it is
    routed by ``priority``, ``skills`` and ``attributes`` as :class:`EnqueueCall` is."""

    queue: str
    number: str
    priority: int = 0
    skills: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    attributes: Mapping[str, str] = field(default_factory=_empty)
    variables: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup:
    reason: str


IvrAction = (
    Play
    | CollectDigits
    | ListenSpeech
    | StopPlayback
    | RecordVoicemail
    | CrmLookup
    | EnqueueCall
    | Transfer
    | OfferCallback
    | Hangup
)
