"""The WebRTC VAD wrapper and the 20 ms framing of call audio."""

from __future__ import annotations

import numpy as np
import pytest

from speech.vad import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    FrameSizeError,
    PcmFramer,
    VoiceActivityDetector,
    iter_frames,
    vad_overhang_seconds,
)
from tests.speech.speech_audio import SpeechAudio


def voiced_pattern(detector: VoiceActivityDetector, pcm: bytes) -> list[bool]:
    return [detector.is_voiced(frame) for frame in iter_frames(pcm)]


def test_speech_is_voiced_and_the_idle_line_is_not(speech_audio: SpeechAudio) -> None:
    clip = speech_audio.speech("technical support", voice="en-us")
    assert clip.speech_start is not None
    assert clip.speech_end is not None
    flags = voiced_pattern(VoiceActivityDetector(2), clip.pcm)
    first = int(clip.speech_start / 0.02)
    last = int(clip.speech_end / 0.02)
    inside = flags[first + 2 : last - 2]
    assert sum(inside) / len(inside) > 0.9
    assert not any(flags[: first - 1])
    assert not any(flags[last + 10 :])


def test_numpy_frames_and_views_are_classified_like_bytes(speech_audio: SpeechAudio) -> None:
    clip = speech_audio.speech("billing", voice="en-gb", noise=0.03)
    samples = clip.samples()
    from_bytes = voiced_pattern(VoiceActivityDetector(), clip.pcm)
    as_array = VoiceActivityDetector()
    as_view = VoiceActivityDetector()
    as_big_endian = VoiceActivityDetector()
    from_arrays, from_views, from_swapped = [], [], []
    for start in range(0, len(samples) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        frame = samples[start : start + FRAME_SAMPLES]
        from_arrays.append(as_array.is_voiced(frame))
        from_views.append(as_view.is_voiced(frame.data))
        from_swapped.append(as_big_endian.is_voiced(frame.astype(">i2")))
    assert any(from_bytes)
    assert from_arrays == from_bytes
    assert from_views == from_bytes
    assert from_swapped == from_bytes


def test_a_strided_array_is_copied_not_misread() -> None:
    rng = np.random.default_rng(7)
    loud = (rng.standard_normal(2 * FRAME_SAMPLES) * 8000).astype(np.int16)
    strided = loud[::2]
    expected = VoiceActivityDetector(warmup_frames=0).is_voiced(strided.tobytes())
    assert VoiceActivityDetector(warmup_frames=0).is_voiced(strided) == expected


def test_line_noise_at_call_start_is_not_taken_for_speech(speech_audio: SpeechAudio) -> None:
    """WebRTC marks its first frames voiced while its noise model settles: they are not trusted."""
    noise = speech_audio.silence(3.0, noise=0.03)
    untrusting = voiced_pattern(VoiceActivityDetector(warmup_frames=0), noise.pcm)
    assert sum(untrusting[:10]) >= 3  # enough to look like the start of speech
    assert not any(voiced_pattern(VoiceActivityDetector(), noise.pcm))


def test_speech_right_after_the_warm_up_is_heard(speech_audio: SpeechAudio) -> None:
    clip = speech_audio.speech("agent", lead=0.0, trail=0.5)
    flags = voiced_pattern(VoiceActivityDetector(), clip.pcm)
    assert flags[:10] == [False] * 10
    assert sum(flags[10:20]) >= 8


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (bytes(FRAME_BYTES - 1), r"\(320 bytes\), got 319 bytes"),
        (bytes(2 * FRAME_BYTES), r"got 640 bytes"),
        (np.zeros(FRAME_SAMPLES + 1, dtype=np.int16), r"\(160 samples\), got 161 samples"),
        (np.zeros(FRAME_SAMPLES - 1, dtype=np.int16).data, r"got 318 bytes"),
    ],
)
def test_a_frame_that_is_not_20_ms_is_refused_with_its_size(frame: object, message: str) -> None:
    detector = VoiceActivityDetector()
    with pytest.raises(FrameSizeError, match=message):
        detector.is_voiced(frame)  # type: ignore[arg-type]


def test_a_float_array_is_refused() -> None:
    with pytest.raises(TypeError, match="one-dimensional int16, got 1-D float64"):
        VoiceActivityDetector().is_voiced(np.zeros(FRAME_SAMPLES))  # type: ignore[arg-type]


def test_aggressiveness_is_checked_and_changeable() -> None:
    with pytest.raises(ValueError, match=r"aggressiveness must be 0\.\.3, got 4"):
        VoiceActivityDetector(4)
    detector = VoiceActivityDetector(2)
    detector.set_aggressiveness(3)
    assert detector.aggressiveness == 3
    with pytest.raises(ValueError, match="got -1"):
        detector.set_aggressiveness(-1)
    with pytest.raises(ValueError, match="warmup_frames must be >= 0"):
        VoiceActivityDetector(warmup_frames=-1)


def test_overhang_is_known_per_mode() -> None:
    assert vad_overhang_seconds(2) == pytest.approx(0.06)
    assert [vad_overhang_seconds(mode) >= 0 for mode in range(4)] == [True] * 4
    with pytest.raises(ValueError, match="got 5"):
        vad_overhang_seconds(5)


def test_framer_regroups_30_ms_packets_into_20_ms_frames() -> None:
    pcm = bytes(range(256)) * 15  # 3840 bytes = 240 ms
    framer = PcmFramer()
    frames: list[bytes] = []
    for start in range(0, len(pcm), 480):  # 30 ms packets
        frames.extend(framer.push(pcm[start : start + 480]))
        assert framer.pending_bytes < FRAME_BYTES
    assert b"".join(frames) == pcm
    assert all(len(frame) == FRAME_BYTES for frame in frames)


def test_framer_passes_20_ms_packets_through_and_can_drop_a_partial_frame() -> None:
    framer = PcmFramer()
    packet = bytes(range(200)) + bytes(120)
    assert framer.push(packet) == [packet]
    assert framer.push(b"\x01" * 100) == []
    assert framer.pending_bytes == 100
    framer.reset()
    assert framer.push(packet) == [packet]


def test_iter_frames_drops_a_trailing_partial_frame() -> None:
    assert list(iter_frames(bytes(FRAME_BYTES * 2 + 10))) == [bytes(FRAME_BYTES)] * 2
