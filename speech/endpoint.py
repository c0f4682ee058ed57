"""End-pointing: when a caller starts speaking, when they have finished, and when they never spoke.

A sans-IO state machine fed one voice-activity decision per 20 ms frame. Time is passed in as
``now`` (seconds, monotonic, the time the frame finished arriving); the machine never reads a clock
and exposes its next deadline so that an I/O layer can arm one timer for it.

States and the only transitions between them (anything else raises :class:`EndpointStateError`)::

    waiting_for_speech --speech_onset------> in_speech      (reports SpeechStarted: barge-in)
    waiting_for_speech --no_input_timeout--> done           (reports NoInput)
    in_speech          --silence-----------> trailing       (hangover starts)
    in_speech          --max_speech--------> done           (reports MaxSpeech)
    trailing           --speech_resumed----> in_speech      (a pause, not the end)
    trailing           --phrase_unfinished-> trailing       (the pause is inside a phrase)
    trailing           --hangover_elapsed--> done           (reports SpeechEnded)
    trailing           --max_speech--------> done           (reports MaxSpeech)

Rules the machine keeps:

- Speech starts when ``start_voiced_frames`` of the last ``start_window_frames`` frames are voiced
  (a majority vote, so one click or noise burst is not speech). The start is dated back to the
  first voiced frame of that window, and the frames from ``pre_roll_seconds`` before it are handed
  over so the recogniser hears the soft onset the vote needed time to confirm.
- Speech ends ``hangover_seconds`` after its last voiced frame (less the VAD's own overhang),
  unless the same vote says speech has resumed. A stray voiced frame during the hangover neither
  resumes speech nor restarts the hangover.
- When the words heard so far only begin a longer phrase of the grammar ("technical" of
  "technical support"), the I/O layer says so (:meth:`EndPointer.phrase_unfinished`) and this
  pause lasts ``mid_phrase_hangover_seconds`` instead: a caller pausing between the words of a
  phrase is not cut off, while single words still end after the short hangover.
- The no-input timeout runs from the moment the machine is created, or, when a prompt is playing
  with barge-in, from when the prompt has finished (:meth:`EndPointer.prompt_ended`).
- The utterance is cut at ``max_speech_seconds`` after its start.

One machine serves one prompt; a call keeps one :class:`~speech.vad.VoiceActivityDetector` (which
adapts to the line's noise) and creates a new end-pointer for each prompt.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeAlias

import numpy as np

from speech.vad import (
    DEFAULT_AGGRESSIVENESS,
    FRAME_SECONDS,
    Frame,
    VoiceActivityDetector,
    vad_overhang_seconds,
)

__all__ = [
    "EndPointer",
    "EndpointOutcome",
    "EndpointSettings",
    "EndpointState",
    "EndpointStateError",
    "EndpointTrigger",
    "MaxSpeech",
    "NoInput",
    "SpeechEnded",
    "SpeechStarted",
]

logger = logging.getLogger(__name__)

# Half a frame: frame times that differ by less than this are the same frame boundary.
_TIME_EPSILON: Final = FRAME_SECONDS / 2
# A deadline is due this much early, so that float rounding of summed frame times (0.08 + 0.6 vs
# 34 * 0.02) never delays an end-point by a whole frame.
_DEADLINE_SLACK: Final = 1e-6


class EndpointState(enum.Enum):
    """Where the end-pointer is in one prompt's listening window."""

    WAITING_FOR_SPEECH = "waiting_for_speech"
    IN_SPEECH = "in_speech"
    TRAILING = "trailing"
    DONE = "done"


class EndpointTrigger(enum.Enum):
    """What moved the end-pointer from one state to the next."""

    SPEECH_ONSET = "speech_onset"
    SILENCE = "silence"
    SPEECH_RESUMED = "speech_resumed"
    HANGOVER_ELAPSED = "hangover_elapsed"
    PHRASE_UNFINISHED = "phrase_unfinished"
    NO_INPUT_TIMEOUT = "no_input_timeout"
    MAX_SPEECH = "max_speech"


_S = EndpointState
_T = EndpointTrigger
_TRANSITIONS: Final[Mapping[tuple[EndpointState, EndpointTrigger], EndpointState]] = (
    MappingProxyType(
        {
            (_S.WAITING_FOR_SPEECH, _T.SPEECH_ONSET): _S.IN_SPEECH,
            (_S.WAITING_FOR_SPEECH, _T.NO_INPUT_TIMEOUT): _S.DONE,
            (_S.IN_SPEECH, _T.SILENCE): _S.TRAILING,
            (_S.IN_SPEECH, _T.MAX_SPEECH): _S.DONE,
            (_S.TRAILING, _T.SPEECH_RESUMED): _S.IN_SPEECH,
            (_S.TRAILING, _T.HANGOVER_ELAPSED): _S.DONE,
            (_S.TRAILING, _T.PHRASE_UNFINISHED): _S.TRAILING,
            (_S.TRAILING, _T.MAX_SPEECH): _S.DONE,
        }
    )
)


class EndpointStateError(RuntimeError):
    """The end-pointer was used in a way its state does not allow (a caller bug, not bad audio)."""

    def __init__(self, state: EndpointState, attempted: str) -> None:
        super().__init__(f"end-pointer in state {state.value!r} cannot accept {attempted}")
        self.state = state
        self.attempted = attempted


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSettings:
    """End-pointing settings for one prompt. Every field has a default suited to telephone audio."""

    aggressiveness: int = DEFAULT_AGGRESSIVENESS
    """WebRTC VAD mode (0..3) applied to the call's detector while this prompt listens."""

    start_voiced_frames: int = 3
    """Voiced frames (20 ms each) needed within the window to declare that speech started."""

    start_window_frames: int = 5
    """Length of the sliding vote window, in 20 ms frames; also used to decide speech resumed."""

    hangover_seconds: float = 0.6
    """Silence after the end of speech that ends the utterance, in seconds. The end of speech is
    the end of the last voiced frame less WebRTC's own overhang (:func:`vad_overhang_seconds`)."""

    mid_phrase_hangover_seconds: float = 0.6
    """Hangover for a pause after words that only begin a longer phrase (see
    :meth:`EndPointer.phrase_unfinished`), in seconds; never shorter than ``hangover_seconds``."""

    no_input_timeout_seconds: float = 5.0
    """Time without speech (after the prompt, if one is playing) that gives NoInput, in seconds."""

    max_speech_seconds: float = 15.0
    """Longest utterance, from its start to the forced end (MaxSpeech), in seconds."""

    pre_roll_seconds: float = 0.3
    """Audio kept from before the detected start and handed to the recogniser, in seconds."""

    def __post_init__(self) -> None:
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, got {self.aggressiveness}")
        if self.start_window_frames < 1:
            raise ValueError(f"start_window_frames must be >= 1, got {self.start_window_frames}")
        if not 1 <= self.start_voiced_frames <= self.start_window_frames:
            raise ValueError(
                f"start_voiced_frames must be 1..start_window_frames "
                f"({self.start_window_frames}), got {self.start_voiced_frames}"
            )
        for name in (
            "hangover_seconds",
            "mid_phrase_hangover_seconds",
            "no_input_timeout_seconds",
            "max_speech_seconds",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")
        if not (math.isfinite(self.pre_roll_seconds) and self.pre_roll_seconds >= 0):
            raise ValueError(f"pre_roll_seconds must be >= 0, got {self.pre_roll_seconds}")

    @property
    def vad_overhang_seconds(self) -> float:
        """Voiced time WebRTC adds after speech at this aggressiveness, in seconds."""
        return vad_overhang_seconds(self.aggressiveness)

    @property
    def pre_roll_frames(self) -> int:
        """Pre-roll length rounded up to whole 20 ms frames."""
        return math.ceil(self.pre_roll_seconds / FRAME_SECONDS - 1e-9)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechStarted:
    """The caller started speaking: stop the prompt (barge-in) and start feeding the recogniser.

    ``pre_roll`` holds the frames from ``pre_roll_seconds`` before ``started_at`` up to and
    including the frame that confirmed the start, oldest first; feed them to the recogniser first,
    then every following frame while :attr:`EndPointer.capturing` is true.
    """

    started_at: float
    """Estimated start of speech: the beginning of the first voiced frame of the vote window."""
    detected_at: float
    """When the vote confirmed the start (the ``now`` of the confirming frame)."""
    pre_roll: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechEnded:
    """The caller stopped speaking for the hangover: finish recognition."""

    started_at: float
    ended_at: float
    """Estimated end of speech: end of the last voiced frame less the VAD's own overhang."""
    detected_at: float
    """When the hangover ran out (``ended_at`` + hangover, or later if the timer fired late)."""

    @property
    def duration_seconds(self) -> float:
        """Length of the utterance from its estimated start to its last voiced frame."""
        return self.ended_at - self.started_at


@dataclass(frozen=True, slots=True, kw_only=True)
class NoInput:
    """The caller said nothing before the no-input timeout."""

    waited_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MaxSpeech:
    """The caller spoke for the maximum utterance length: recognition is cut there."""

    started_at: float
    cut_at: float

    @property
    def duration_seconds(self) -> float:
        """Length of the utterance up to the cut."""
        return self.cut_at - self.started_at


EndpointOutcome: TypeAlias = SpeechStarted | SpeechEnded | NoInput | MaxSpeech


class EndPointer:
    """The end-pointing state machine for one prompt.

    Feed it frames with :meth:`feed` (it runs the VAD) or decisions with :meth:`frame_voiced`, and
    call :meth:`handle_timer` at :meth:`next_deadline` when frames stop arriving. Each call returns
    at most one outcome, because each input causes at most one reported transition.
    """

    __slots__ = (
        "_call_id",
        "_ended_at",
        "_hangover_deadline",
        "_last_voiced_at",
        "_max_deadline",
        "_no_input_armed_at",
        "_no_input_deadline",
        "_pre_roll",
        "_settings",
        "_started_at",
        "_state",
        "_vad",
        "_window",
        "_window_times",
        "_window_voiced",
    )

    def __init__(
        self,
        settings: EndpointSettings | None = None,
        *,
        now: float,
        prompt_playing: bool = False,
        vad: VoiceActivityDetector | None = None,
        call_id: str = "",
    ) -> None:
        """Start listening at ``now``.

        With ``prompt_playing`` the no-input timer waits for :meth:`prompt_ended`; speech during
        the prompt is reported as usual (that is barge-in). ``vad`` is needed only for
        :meth:`feed`; its aggressiveness is set from the settings. ``call_id`` labels log lines.
        """
        self._settings = settings = settings if settings is not None else EndpointSettings()
        self._call_id = call_id
        self._vad = vad
        if vad is not None and vad.aggressiveness != settings.aggressiveness:
            vad.set_aggressiveness(settings.aggressiveness)
        self._state = EndpointState.WAITING_FOR_SPEECH
        self._window: deque[bool] = deque(maxlen=settings.start_window_frames)
        self._window_times: deque[float] = deque(maxlen=settings.start_window_frames)
        self._window_voiced = 0
        # Bounded: the pre-roll plus the vote window, so the frames before the first voiced frame
        # of the window are still there when the vote confirms the start.
        self._pre_roll: deque[tuple[float, bytes]] = deque(
            maxlen=settings.pre_roll_frames + settings.start_window_frames
        )
        self._no_input_armed_at: float | None = None
        self._no_input_deadline: float | None = None
        if not prompt_playing:
            self._arm_no_input(now)
        self._started_at: float | None = None
        self._max_deadline = math.inf
        self._last_voiced_at = math.nan
        self._ended_at = math.nan
        self._hangover_deadline = math.inf

    @property
    def settings(self) -> EndpointSettings:
        """The settings this prompt listens with."""
        return self._settings

    @property
    def state(self) -> EndpointState:
        """Current state."""
        return self._state

    @property
    def capturing(self) -> bool:
        """Whether frames are part of an utterance and belong to the recogniser."""
        return self._state is EndpointState.IN_SPEECH or self._state is EndpointState.TRAILING

    @property
    def done(self) -> bool:
        """Whether an end-point (SpeechEnded, NoInput or MaxSpeech) has been reported."""
        return self._state is EndpointState.DONE

    @property
    def speech_started_at(self) -> float | None:
        """Estimated start of the utterance, once speech has started."""
        return self._started_at

    def prompt_ended(self, now: float) -> None:
        """The prompt finished playing at ``now``: the no-input timeout starts if no one spoke yet.

        Harmless in any other situation (the prompt was already interrupted, or the timer runs).
        """
        if self._state is EndpointState.WAITING_FOR_SPEECH and self._no_input_deadline is None:
            self._arm_no_input(now)

    def phrase_unfinished(self, now: float) -> None:
        """The words heard so far only begin a longer phrase: this pause ends the utterance after
        ``mid_phrase_hangover_seconds`` rather than ``hangover_seconds``.

        Only while trailing (in a pause): raises :class:`EndpointStateError` otherwise.
        """
        self._transition(EndpointTrigger.PHRASE_UNFINISHED, now)
        longer = self._ended_at + max(
            self._settings.mid_phrase_hangover_seconds, self._settings.hangover_seconds
        )
        self._hangover_deadline = max(self._hangover_deadline, longer)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must be called if no frame arrives before then."""
        state = self._state
        if state is EndpointState.WAITING_FOR_SPEECH:
            return self._no_input_deadline
        if state is EndpointState.IN_SPEECH:
            return self._max_deadline
        if state is EndpointState.TRAILING:
            return min(self._hangover_deadline, self._max_deadline)
        return None

    def handle_timer(self, now: float) -> EndpointOutcome | None:
        """Fire whichever deadline has passed at ``now``; early or repeated calls do nothing."""
        state = self._state
        if state is EndpointState.WAITING_FOR_SPEECH:
            deadline = self._no_input_deadline
            if deadline is None or now + _DEADLINE_SLACK < deadline:
                return None
            self._transition(EndpointTrigger.NO_INPUT_TIMEOUT, now)
            assert self._no_input_armed_at is not None
            return NoInput(waited_seconds=deadline - self._no_input_armed_at)
        if state is EndpointState.DONE:
            return None
        assert self._started_at is not None
        if state is EndpointState.TRAILING and self._hangover_deadline <= self._max_deadline:
            if now + _DEADLINE_SLACK < self._hangover_deadline:
                return None
            self._transition(EndpointTrigger.HANGOVER_ELAPSED, now)
            return SpeechEnded(
                started_at=self._started_at, ended_at=self._ended_at, detected_at=now
            )
        if now + _DEADLINE_SLACK < self._max_deadline:
            return None
        self._transition(EndpointTrigger.MAX_SPEECH, now)
        return MaxSpeech(started_at=self._started_at, cut_at=self._max_deadline)

    def feed(self, frame: Frame, now: float) -> EndpointOutcome | None:
        """Classify one 20 ms frame with the call's VAD and account for it at ``now``."""
        if self._vad is None:
            raise EndpointStateError(self._state, "a frame to classify: no VAD was given")
        if self._state is EndpointState.DONE:
            raise EndpointStateError(self._state, "a frame")
        voiced = self._vad.is_voiced(frame)
        # Pre-roll outlives the caller's buffer, which may be reused for the next packet.
        pcm = _as_bytes(frame) if self._state is EndpointState.WAITING_FOR_SPEECH else None
        return self.frame_voiced(voiced, now, pcm)

    def frame_voiced(
        self, voiced: bool, now: float, frame: bytes | None = None
    ) -> EndpointOutcome | None:
        """Account for one 20 ms frame that finished arriving at ``now``.

        ``frame`` (the audio, optional) is kept for the pre-roll while waiting for speech.
        A deadline that passed before ``now`` fires first, and the frame is then not counted.
        """
        if self._state is EndpointState.DONE:
            raise EndpointStateError(self._state, "a frame")
        outcome = self.handle_timer(now)
        if outcome is not None:
            return outcome

        window = self._window
        if len(window) == window.maxlen and window[0]:
            self._window_voiced -= 1
        window.append(voiced)
        self._window_times.append(now)
        if voiced:
            self._window_voiced += 1
        quorum = self._window_voiced >= self._settings.start_voiced_frames

        state = self._state
        if state is EndpointState.WAITING_FOR_SPEECH:
            if frame is not None:
                self._pre_roll.append((now, frame))
            if voiced and quorum:
                return self._start_speech(now)
        elif state is EndpointState.IN_SPEECH:
            if voiced:
                self._last_voiced_at = now
            else:
                self._transition(EndpointTrigger.SILENCE, now)
                assert self._started_at is not None
                self._ended_at = max(
                    self._started_at, self._last_voiced_at - self._settings.vad_overhang_seconds
                )
                self._hangover_deadline = self._ended_at + self._settings.hangover_seconds
        elif voiced and quorum:
            self._transition(EndpointTrigger.SPEECH_RESUMED, now)
            self._last_voiced_at = now
            self._hangover_deadline = math.inf
        return None

    def _start_speech(self, now: float) -> SpeechStarted:
        first_voiced_end = next(
            t for t, v in zip(self._window_times, self._window, strict=True) if v
        )
        started_at = first_voiced_end - FRAME_SECONDS
        self._transition(EndpointTrigger.SPEECH_ONSET, now)
        self._started_at = started_at
        self._last_voiced_at = now
        self._max_deadline = started_at + self._settings.max_speech_seconds
        # A frame belongs to the pre-roll if it ends after the pre-roll begins.
        pre_roll_from = started_at - self._settings.pre_roll_seconds + _TIME_EPSILON
        pre_roll = tuple(pcm for t, pcm in self._pre_roll if t >= pre_roll_from)
        self._pre_roll.clear()
        return SpeechStarted(started_at=started_at, detected_at=now, pre_roll=pre_roll)

    def _arm_no_input(self, now: float) -> None:
        self._no_input_armed_at = now
        self._no_input_deadline = now + self._settings.no_input_timeout_seconds

    def _transition(self, trigger: EndpointTrigger, now: float) -> None:
        try:
            new_state = _TRANSITIONS[(self._state, trigger)]
        except KeyError:
            raise EndpointStateError(self._state, f"trigger {trigger.value!r}") from None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "call %s end-pointer %s -> %s on %s at %.3f",
                self._call_id or "-",
                self._state.value,
                new_state.value,
                trigger.value,
                now,
            )
        self._state = new_state


def _as_bytes(frame: Frame) -> bytes:
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, np.ndarray):
        return frame.tobytes()
    return bytes(frame)
