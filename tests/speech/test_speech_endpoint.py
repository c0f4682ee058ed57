"""The end-pointing state machine driven by voice-activity decisions and a fake clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speech.endpoint import (
    EndPointer,
    EndpointOutcome,
    EndpointSettings,
    EndpointState,
    EndpointStateError,
    MaxSpeech,
    NoInput,
    SpeechEnded,
    SpeechStarted,
)

FRAME = 0.020


def t(index: int) -> float:
    """Arrival time of frame ``index`` (frame 0 covers 0..20 ms and arrives at 20 ms)."""
    return (index + 1) * FRAME


def run(
    pointer: EndPointer, pattern: str, first_index: int = 0
) -> list[tuple[int, EndpointOutcome]]:
    """Feed ``#`` (voiced) and ``.`` (unvoiced) frames; stop at the end-point."""
    outcomes: list[tuple[int, EndpointOutcome]] = []
    for offset, mark in enumerate(pattern):
        if pointer.done:
            break
        index = first_index + offset
        outcome = pointer.frame_voiced(mark == "#", t(index))
        if outcome is not None:
            outcomes.append((index, outcome))
    return outcomes


def test_speech_starts_when_three_of_five_frames_are_voiced() -> None:
    pointer = EndPointer(now=0.0)
    outcomes = run(pointer, "....#.#.#")
    assert [index for index, _ in outcomes] == [8]
    started = outcomes[0][1]
    assert isinstance(started, SpeechStarted)
    # Dated back to the start of the first voiced frame of the window (frame 4 starts at 80 ms).
    assert started.started_at == pytest.approx(4 * FRAME)
    assert started.detected_at == pytest.approx(t(8))
    assert pointer.state is EndpointState.IN_SPEECH
    assert pointer.capturing


def test_sparse_voiced_frames_never_start_speech() -> None:
    pointer = EndPointer(now=0.0)
    assert run(pointer, "#...#..#...#...#.." * 10) == []
    assert pointer.state is EndpointState.WAITING_FOR_SPEECH


def test_speech_ends_after_the_hangover_counted_from_the_end_of_speech() -> None:
    pointer = EndPointer(EndpointSettings(hangover_seconds=0.6), now=0.0)
    outcomes = run(pointer, "..#####" + "." * 40)
    ended = outcomes[-1][1]
    assert isinstance(ended, SpeechEnded)
    # Last voiced frame (6) ends at 140 ms; WebRTC's own overhang at mode 2 (60 ms) is taken off.
    assert ended.started_at == pytest.approx(2 * FRAME)
    assert ended.ended_at == pytest.approx(t(6) - 0.06)
    assert ended.duration_seconds == pytest.approx(t(6) - 0.06 - 2 * FRAME)
    assert ended.detected_at == pytest.approx(ended.ended_at + 0.6)
    assert pointer.done
    assert not pointer.capturing
    assert pointer.next_deadline() is None


def test_a_pause_shorter_than_the_hangover_does_not_end_the_utterance() -> None:
    pointer = EndPointer(now=0.0)
    outcomes = run(pointer, "#####" + "." * 20 + "#####" + "." * 40)
    kinds = [type(outcome) for _, outcome in outcomes]
    assert kinds == [SpeechStarted, SpeechEnded]
    ended = outcomes[1][1]
    assert isinstance(ended, SpeechEnded)
    assert ended.ended_at == pytest.approx(t(29) - 0.06)


def test_a_stray_voiced_frame_in_the_hangover_neither_resumes_nor_restarts_it() -> None:
    pointer = EndPointer(now=0.0)
    outcomes = run(pointer, "#####" + "." * 10 + "#" + "." * 40)
    ended = outcomes[-1][1]
    assert isinstance(ended, SpeechEnded)
    assert ended.ended_at == pytest.approx(t(4) - 0.06)
    assert ended.detected_at == pytest.approx(t(4) - 0.06 + 0.6)


def test_a_pause_inside_a_phrase_waits_the_mid_phrase_hangover() -> None:
    menu = EndpointSettings(hangover_seconds=0.2, mid_phrase_hangover_seconds=0.6)
    pointer = EndPointer(menu, now=0.0)
    # "technical", a 0.4 s pause, "support": longer than the menu's hangover.
    outcomes = run(pointer, "#####" + ".")
    assert pointer.state is EndpointState.TRAILING
    pointer.phrase_unfinished(t(5))  # the words so far begin "technical support"
    assert pointer.state is EndpointState.TRAILING
    assert pointer.next_deadline() == pytest.approx(t(4) - 0.06 + 0.6)
    outcomes += run(pointer, "." * 19 + "#####" + "." * 40, first_index=6)
    kinds = [type(outcome) for _, outcome in outcomes]
    assert kinds == [SpeechStarted, SpeechEnded]
    ended = outcomes[-1][1]
    assert isinstance(ended, SpeechEnded)
    # The pause after the phrase's last word gets the short hangover again.
    assert ended.ended_at == pytest.approx(t(29) - 0.06)
    assert ended.detected_at == pytest.approx(ended.ended_at + 0.2)


def test_without_an_unfinished_phrase_the_menu_hangover_ends_the_pause() -> None:
    pointer = EndPointer(EndpointSettings(hangover_seconds=0.2), now=0.0)
    outcomes = run(pointer, "#####" + "." * 20 + "#####")
    assert [type(outcome) for _, outcome in outcomes] == [SpeechStarted, SpeechEnded]


def test_an_unfinished_phrase_outside_a_pause_is_a_caller_error() -> None:
    pointer = EndPointer(now=0.0)
    with pytest.raises(EndpointStateError, match="phrase_unfinished"):
        pointer.phrase_unfinished(0.0)
    run(pointer, "#####")
    with pytest.raises(EndpointStateError, match="phrase_unfinished"):
        pointer.phrase_unfinished(t(5))


def test_no_input_after_the_timeout_when_nobody_speaks() -> None:
    pointer = EndPointer(EndpointSettings(no_input_timeout_seconds=5.0), now=10.0)
    reported: list[tuple[int, EndpointOutcome]] = []
    for index in range(300):
        if pointer.done:
            break
        outcome = pointer.frame_voiced(False, 10.0 + t(index))
        if outcome is not None:
            reported.append((index, outcome))
    assert len(reported) == 1
    index, outcome = reported[0]
    assert outcome == NoInput(waited_seconds=5.0)
    assert 10.0 + t(index) == pytest.approx(15.0)
    assert pointer.done


def test_the_timer_alone_reports_no_input_when_frames_stop_arriving() -> None:
    pointer = EndPointer(now=0.0)
    deadline = pointer.next_deadline()
    assert deadline == pytest.approx(5.0)
    assert pointer.handle_timer(4.999) is None
    assert pointer.handle_timer(5.0) == NoInput(waited_seconds=5.0)
    assert pointer.handle_timer(5.1) is None


def test_a_late_frame_fires_the_passed_deadline_and_is_not_counted() -> None:
    pointer = EndPointer(now=0.0)
    assert pointer.frame_voiced(True, 6.0) == NoInput(waited_seconds=5.0)
    assert pointer.speech_started_at is None


def test_hangover_timer_ends_speech_when_media_stops() -> None:
    pointer = EndPointer(now=0.0)
    run(pointer, "#####.")
    assert pointer.state is EndpointState.TRAILING
    deadline = pointer.next_deadline()
    assert deadline is not None
    assert deadline == pytest.approx(t(4) - 0.06 + 0.6)
    assert pointer.handle_timer(deadline - 0.001) is None
    assert isinstance(pointer.handle_timer(deadline), SpeechEnded)


def test_max_speech_cuts_a_long_utterance() -> None:
    pointer = EndPointer(EndpointSettings(max_speech_seconds=2.0), now=0.0)
    outcomes = run(pointer, "." * 10 + "#" * 200)
    assert [type(o) for _, o in outcomes] == [SpeechStarted, MaxSpeech]
    index, cut = outcomes[1]
    assert isinstance(cut, MaxSpeech)
    assert cut.started_at == pytest.approx(10 * FRAME)
    assert cut.cut_at == pytest.approx(10 * FRAME + 2.0)
    assert cut.duration_seconds == pytest.approx(2.0)
    assert t(index) == pytest.approx(cut.cut_at)


def test_max_speech_applies_during_the_hangover_too() -> None:
    pointer = EndPointer(EndpointSettings(max_speech_seconds=1.0), now=0.0)
    outcomes = run(pointer, "#" * 48 + "." * 40)
    assert pointer.state is EndpointState.DONE
    assert isinstance(outcomes[-1][1], MaxSpeech)
    assert outcomes[-1][1].cut_at == pytest.approx(1.0)


def test_barge_in_during_a_prompt_and_no_input_counted_from_the_prompt_end() -> None:
    pointer = EndPointer(now=0.0, prompt_playing=True)
    # Eight seconds of silence during a long prompt: no timer runs, nothing is reported.
    assert pointer.next_deadline() is None
    assert run(pointer, "." * 400) == []
    pointer.prompt_ended(8.0)
    assert pointer.next_deadline() == pytest.approx(13.0)
    pointer.prompt_ended(9.0)  # a second notice does not move the timer
    assert pointer.next_deadline() == pytest.approx(13.0)
    outcomes = run(pointer, "..####", first_index=400)
    started = outcomes[0][1]
    assert isinstance(started, SpeechStarted)
    pointer.prompt_ended(9.0)  # the interrupted prompt reporting its end changes nothing
    assert pointer.state is EndpointState.IN_SPEECH


def test_speech_while_the_prompt_plays_is_reported_at_once() -> None:
    pointer = EndPointer(now=0.0, prompt_playing=True)
    outcomes = run(pointer, "." * 50 + "###")
    assert len(outcomes) == 1
    index, started = outcomes[0]
    assert isinstance(started, SpeechStarted)
    assert t(index) == pytest.approx(1.06)


def test_pre_roll_holds_the_audio_before_the_detected_start() -> None:
    pointer = EndPointer(EndpointSettings(pre_roll_seconds=0.1), now=0.0)
    frames = [bytes([i]) * 320 for i in range(30)]
    voiced = [i >= 20 for i in range(30)]
    started: SpeechStarted | None = None
    for i, (frame, is_voiced) in enumerate(zip(frames, voiced, strict=True)):
        outcome = pointer.frame_voiced(is_voiced, t(i), frame)
        if isinstance(outcome, SpeechStarted):
            started = outcome
            break
    assert started is not None
    # Speech starts at frame 20; 100 ms of pre-roll is frames 15..19, then 20..22 that voted.
    assert started.pre_roll == tuple(frames[15:23])


def test_pre_roll_is_empty_when_frames_are_not_given() -> None:
    pointer = EndPointer(now=0.0)
    outcomes = run(pointer, "###")
    started = outcomes[0][1]
    assert isinstance(started, SpeechStarted)
    assert started.pre_roll == ()


def test_a_frame_after_the_end_point_is_a_caller_error() -> None:
    pointer = EndPointer(now=0.0)
    pointer.handle_timer(5.0)
    with pytest.raises(EndpointStateError, match="'done' cannot accept a frame"):
        pointer.frame_voiced(True, 5.02)


def test_feeding_audio_needs_a_detector() -> None:
    pointer = EndPointer(now=0.0)
    with pytest.raises(EndpointStateError, match="no VAD was given"):
        pointer.feed(bytes(320), 0.02)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"start_voiced_frames": 6, "start_window_frames": 5}, "start_voiced_frames must be"),
        ({"start_voiced_frames": 0}, "start_voiced_frames must be"),
        ({"start_window_frames": 0}, "start_window_frames must be"),
        ({"hangover_seconds": 0.0}, "hangover_seconds must be a positive"),
        ({"mid_phrase_hangover_seconds": math.nan}, "mid_phrase_hangover_seconds must be"),
        ({"no_input_timeout_seconds": -1.0}, "no_input_timeout_seconds must be a positive"),
        ({"max_speech_seconds": math.inf}, "max_speech_seconds must be a positive"),
        ({"pre_roll_seconds": -0.1}, "pre_roll_seconds must be >= 0"),
        ({"aggressiveness": 4}, "aggressiveness must be 0..3"),
    ],
)
def test_settings_are_validated(overrides: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EndpointSettings(**overrides)  # type: ignore[arg-type]


def test_settings_defaults_suit_telephone_prompts() -> None:
    defaults = EndpointSettings()
    assert (defaults.start_voiced_frames, defaults.start_window_frames) == (3, 5)
    assert defaults.hangover_seconds == 0.6
    assert defaults.no_input_timeout_seconds == 5.0
    assert defaults.max_speech_seconds == 15.0
    assert defaults.aggressiveness == 2
    assert defaults.pre_roll_frames == 15


@settings(max_examples=200, deadline=None)
@given(
    marks=st.lists(st.booleans(), max_size=600),
    timer_at=st.lists(st.integers(min_value=0, max_value=600), max_size=5),
)
def test_outcomes_always_form_one_well_ordered_story(
    marks: list[bool], timer_at: list[int]
) -> None:
    """Whatever the audio: at most one start, at most one end-point, and the end-point is last."""
    pointer = EndPointer(EndpointSettings(max_speech_seconds=3.0), now=0.0)
    outcomes: list[EndpointOutcome] = []
    for index, voiced in enumerate(marks):
        if pointer.done:
            break
        if index in timer_at:
            deadline = pointer.next_deadline()
            assert deadline is not None
            fired = pointer.handle_timer(t(index) - FRAME / 2)
            if fired is not None:
                outcomes.append(fired)
                continue
        outcome = pointer.frame_voiced(voiced, t(index))
        if outcome is not None:
            outcomes.append(outcome)
    starts = [o for o in outcomes if isinstance(o, SpeechStarted)]
    ends = [o for o in outcomes if not isinstance(o, SpeechStarted)]
    assert len(starts) <= 1
    assert len(ends) <= 1
    if starts:
        assert outcomes[0] is starts[0]
    if ends:
        end = ends[0]
        assert outcomes[-1] is end
        assert pointer.done
        if isinstance(end, NoInput):
            assert not starts
        else:
            assert starts
            assert 0.0 <= end.duration_seconds <= 3.0 + 1e-9
