"""End-pointing and barge-in on generated telephone audio (espeak-ng, sox, G.711), fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from speech.endpoint import (
    EndPointer,
    EndpointOutcome,
    EndpointSettings,
    MaxSpeech,
    NoInput,
    SpeechEnded,
    SpeechStarted,
)
from speech.recognizer import PhraseMatcher, RecognitionResult, RecognizerSession
from speech.vad import VoiceActivityDetector
from tests.speech.speech_audio import Clip, SpeechAudio

HANGOVER = EndpointSettings().hangover_seconds

MENU_CLIPS = [
    ("sales", "en-us"),
    ("billing", "en-gb"),
    ("technical support", "en-us+f3"),
    ("agent", "en-us"),
    ("yes", "en-gb"),
    ("no", "en-us"),
    ("I would like to talk to billing please", "en-us"),
]

LONG_TEXT = (
    "I am calling about the invoice I received last week, it shows a charge for a service that "
    "I never ordered, and I would like somebody from the billing department to explain where it "
    "comes from, because I have been a customer for many years and this has never happened "
    "before, so please put me through to someone who can help me with this problem"
)

# White noise amplitudes giving about -45 dBFS and -40 dBFS on the telephone band: a noisy line.
MODEST_NOISE = (0.03, 0.05)


@dataclass
class ScriptedSession:
    """A recogniser session that records the audio it is given and answers from a script."""

    answer: RecognitionResult
    grammar: tuple[str, ...] | None = None
    audio: bytearray = field(default_factory=bytearray)
    finished: bool = False

    def start(self, grammar: tuple[str, ...] | None) -> None:
        self.grammar = grammar
        self.audio.clear()

    def accept(self, pcm_frame: bytes) -> None:
        self.audio += pcm_frame

    def partial(self) -> str:
        return ""

    def finish(self) -> RecognitionResult:
        self.finished = True
        return self.answer

    def close(self) -> None:
        pass


@dataclass
class Listening:
    outcomes: list[EndpointOutcome]
    first_captured_frame: int | None
    captured: bytes


def listen(
    clip: Clip,
    settings: EndpointSettings | None = None,
    *,
    prompt_seconds: float = 0.0,
    session: RecognizerSession | None = None,
) -> Listening:
    """Play ``clip`` into an end-pointer as a call would, 20 ms at a time on a fake clock.

    A prompt plays for ``prompt_seconds`` unless barge-in stops it; speech audio (pre-roll
    first) goes to ``session``. When the clip runs out the end-pointer's timer is fired.
    """
    pointer = EndPointer(
        settings, now=0.0, prompt_playing=prompt_seconds > 0, vad=VoiceActivityDetector()
    )
    outcomes: list[EndpointOutcome] = []
    captured = bytearray()
    first_captured: int | None = None
    frames = clip.frames()
    for index, (now, frame) in enumerate(frames):
        if pointer.done:
            break
        if prompt_seconds and now >= prompt_seconds:
            pointer.prompt_ended(prompt_seconds)
        capturing = pointer.capturing
        outcome = pointer.feed(frame, now)
        if isinstance(outcome, SpeechStarted):
            first_captured = index + 1 - len(outcome.pre_roll)
            for earlier in outcome.pre_roll:
                captured += earlier
        elif capturing:
            captured += frame
        if outcome is not None:
            outcomes.append(outcome)
    if not pointer.done:
        deadline = pointer.next_deadline()
        assert deadline is not None
        fired = pointer.handle_timer(deadline)
        assert fired is not None
        outcomes.append(fired)
    if session is not None:
        session.start(None)
        for start in range(0, len(captured), 320):
            session.accept(bytes(captured[start : start + 320]))
    return Listening(outcomes, first_captured, bytes(captured))


def started_and_ended(listening: Listening) -> tuple[SpeechStarted, SpeechEnded]:
    assert [type(outcome) for outcome in listening.outcomes] == [SpeechStarted, SpeechEnded]
    started, ended = listening.outcomes
    assert isinstance(started, SpeechStarted)
    assert isinstance(ended, SpeechEnded)
    return started, ended


@pytest.mark.parametrize(("text", "voice"), MENU_CLIPS)
def test_start_and_end_of_clean_speech(speech_audio: SpeechAudio, text: str, voice: str) -> None:
    clip = speech_audio.speech(text, voice=voice)
    assert clip.speech_start is not None
    assert clip.speech_end is not None
    started, ended = started_and_ended(listen(clip))
    assert started.started_at == pytest.approx(clip.speech_start, abs=0.1)
    assert clip.speech_start <= started.detected_at <= clip.speech_start + 0.1
    assert ended.ended_at == pytest.approx(clip.speech_end, abs=0.1)
    end_point = clip.speech_end + HANGOVER
    assert end_point - 0.05 <= ended.detected_at <= end_point + 0.1


@pytest.mark.parametrize(("text", "voice"), MENU_CLIPS)
def test_start_and_end_of_speech_on_a_noisy_line(
    speech_audio: SpeechAudio, text: str, voice: str
) -> None:
    """About 23 dB SNR: soft onsets and endings drown, so the tolerance is a little wider."""
    clip = speech_audio.speech(text, voice=voice, noise=MODEST_NOISE[0])
    assert clip.speech_start is not None
    assert clip.speech_end is not None
    started, ended = started_and_ended(listen(clip))
    assert started.started_at == pytest.approx(clip.speech_start, abs=0.1)
    assert clip.speech_start <= started.detected_at <= clip.speech_start + 0.15
    end_point = clip.speech_end + HANGOVER
    assert end_point - 0.15 <= ended.detected_at <= end_point + 0.1


@pytest.mark.parametrize("noise", [0.0, *MODEST_NOISE])
def test_an_idle_or_noisy_line_gives_no_input_and_never_barges_in(
    speech_audio: SpeechAudio, noise: float
) -> None:
    clip = speech_audio.silence(6.0, noise=noise)
    listening = listen(clip)
    assert listening.outcomes == [NoInput(waited_seconds=5.0)]
    assert listening.captured == b""


def test_no_input_counts_from_the_end_of_the_prompt(speech_audio: SpeechAudio) -> None:
    clip = speech_audio.silence(9.0, noise=MODEST_NOISE[0])
    listening = listen(clip, EndpointSettings(no_input_timeout_seconds=4.0), prompt_seconds=3.0)
    # Timed out at 7 s: the clip would have gone on to 9 s.
    assert listening.outcomes == [NoInput(waited_seconds=4.0)]


def test_barge_in_is_reported_while_the_prompt_is_still_playing(
    speech_audio: SpeechAudio,
) -> None:
    clip = speech_audio.speech("agent", voice="en-gb", lead=1.0, noise=MODEST_NOISE[0])
    assert clip.speech_start is not None
    prompt_seconds = 4.0
    started, ended = started_and_ended(listen(clip, prompt_seconds=prompt_seconds))
    assert started.detected_at < prompt_seconds
    assert started.detected_at - clip.speech_start <= 0.1
    assert ended.detected_at > started.detected_at


def test_long_speech_is_cut_at_the_maximum_length(speech_audio: SpeechAudio) -> None:
    clip = speech_audio.speech(LONG_TEXT, voice="en-us")
    assert clip.speech_start is not None
    assert clip.speech_end is not None
    assert clip.speech_end - clip.speech_start > 16.0
    listening = listen(clip)
    assert [type(outcome) for outcome in listening.outcomes] == [SpeechStarted, MaxSpeech]
    cut = listening.outcomes[1]
    assert isinstance(cut, MaxSpeech)
    assert cut.duration_seconds == pytest.approx(15.0)
    assert cut.cut_at < clip.speech_end
    assert cut.started_at == pytest.approx(clip.speech_start, abs=0.1)


def test_a_shorter_maximum_per_prompt(speech_audio: SpeechAudio) -> None:
    clip = speech_audio.speech("I would like to talk to billing please", voice="en-us")
    listening = listen(clip, EndpointSettings(max_speech_seconds=1.0))
    assert [type(outcome) for outcome in listening.outcomes] == [SpeechStarted, MaxSpeech]


def test_the_recogniser_hears_the_whole_utterance_with_its_onset(
    speech_audio: SpeechAudio,
) -> None:
    clip = speech_audio.speech("billing", voice="en-us", noise=MODEST_NOISE[0])
    assert clip.speech_start is not None
    assert clip.speech_end is not None
    session = ScriptedSession(
        answer=RecognitionResult(text="billing", confidence=0.9, engine="scripted")
    )
    listening = listen(clip, session=session)
    started_and_ended(listening)
    assert listening.first_captured_frame is not None
    offset = listening.first_captured_frame * 320
    # Contiguous audio: exactly the call's frames from the pre-roll on, none lost or repeated.
    assert bytes(session.audio) == clip.pcm[offset : offset + len(session.audio)]
    captured_from = listening.first_captured_frame * 0.02
    captured_to = captured_from + len(session.audio) / 16000
    assert captured_from <= clip.speech_start - 0.25
    assert captured_to >= clip.speech_end
    matcher = PhraseMatcher.from_phrases(["sales", "billing", "technical support"])
    assert matcher.match(session.finish()).choice == "billing"


def test_the_prompt_settings_set_the_detector_mode() -> None:
    detector = VoiceActivityDetector(2)
    EndPointer(EndpointSettings(aggressiveness=3), now=0.0, vad=detector)
    assert detector.aggressiveness == 3
