"""In-band DTMF detection on generated audio: clean, noisy, G.711-coded, and not-DTMF."""

from __future__ import annotations

import numpy as np
import pytest

from telephony.rtp.g711 import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw
from telephony.rtp.inband import (
    COLUMN_FREQUENCIES,
    KEYPAD,
    ROW_FREQUENCIES,
    InbandDigit,
    InbandDtmfDetector,
    InbandDtmfSettings,
    goertzel_power,
)

RATE = 8000
DBM0 = 8159 * 4 / 10 ** (3.17 / 20)  # amplitude of a 0 dBm0 sine on the 16-bit scale


def amplitude(dbm0: float) -> float:
    return DBM0 * 10 ** (dbm0 / 20)


def tone_pair(
    key: str,
    ms: float,
    *,
    low_dbm0: float = -8.0,
    high_dbm0: float = -6.0,
    deviation: float = 0.0,
    phase: float = 0.3,
) -> np.ndarray:
    row = next(r for r, keys in enumerate(KEYPAD) if key in keys)
    column = KEYPAD[row].index(key)
    t = np.arange(round(ms * RATE / 1000)) / RATE
    low = ROW_FREQUENCIES[row] * (1 + deviation)
    high = COLUMN_FREQUENCIES[column] * (1 + deviation)
    return amplitude(low_dbm0) * np.sin(2 * np.pi * low * t + phase) + amplitude(
        high_dbm0
    ) * np.sin(2 * np.pi * high * t)


def silence(ms: float) -> np.ndarray:
    return np.zeros(round(ms * RATE / 1000))


def to_int16(signal: np.ndarray) -> np.ndarray:
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


def dial(
    keys: str, *, tone_ms: float = 70, pause_ms: float = 70, lead_ms: float = 33
) -> np.ndarray:
    parts = [silence(lead_ms)]
    for key in keys:
        parts += [tone_pair(key, tone_ms), silence(pause_ms)]
    return np.concatenate(parts)


def detect(pcm: np.ndarray, *, frame: int = 160, settings: InbandDtmfSettings | None = None) -> str:
    detector = InbandDtmfDetector(settings)
    samples = to_int16(pcm)
    found: list[InbandDigit] = []
    for start in range(0, len(samples), frame):
        found.extend(detector.process(samples[start : start + frame]))
    return "".join(digit.digit for digit in found)


def test_every_key_is_detected_once() -> None:
    assert detect(dial("123A456B789C*0#D")) == "123A456B789C*0#D"


def test_detected_digit_knows_where_it_started() -> None:
    detector = InbandDtmfDetector()
    pcm = to_int16(np.concatenate([silence(100), tone_pair("5", 100), silence(100)]))
    digits = detector.process(pcm)
    assert [d.digit for d in digits] == ["5"]
    assert 780 <= digits[0].start_sample <= 840  # the tone starts at sample 800


def test_frame_size_does_not_matter() -> None:
    signal = dial("0918")
    assert detect(signal, frame=160) == detect(signal, frame=37) == detect(signal, frame=4000)
    assert detect(signal, frame=37) == "0918"


def test_long_press_is_one_digit() -> None:
    assert detect(np.concatenate([tone_pair("7", 2000), silence(100)])) == "7"


def test_repeated_key_needs_a_pause_between() -> None:
    assert detect(dial("55", tone_ms=60, pause_ms=45)) == "55"


def test_short_dropout_inside_a_press_is_bridged() -> None:
    press = np.concatenate([tone_pair("3", 80), silence(10), tone_pair("3", 80), silence(60)])
    assert detect(press) == "3"


@pytest.mark.parametrize("offset_ms", [0.0, 1.25, 2.5, 3.75, 4.5])
def test_40_ms_tones_are_accepted_and_20_ms_rejected(offset_ms: float) -> None:
    lead = silence(20 + offset_ms)
    assert detect(np.concatenate([lead, tone_pair("8", 40), silence(60)])) == "8"
    assert detect(np.concatenate([lead, tone_pair("8", 20), silence(60)])) == ""


def test_frequency_tolerance() -> None:
    assert detect(np.concatenate([tone_pair("6", 80, deviation=0.015), silence(50)])) == "6"
    assert detect(np.concatenate([tone_pair("6", 80, deviation=-0.015), silence(50)])) == "6"
    assert detect(np.concatenate([tone_pair("6", 80, deviation=0.035), silence(50)])) == ""


def test_level_and_twist_limits() -> None:
    quiet = np.concatenate([tone_pair("2", 80, low_dbm0=-35, high_dbm0=-35), silence(50)])
    assert detect(quiet) == ""
    faint = np.concatenate([tone_pair("2", 80, low_dbm0=-26, high_dbm0=-27), silence(50)])
    assert detect(faint) == "2"
    # Column tone 7 dB under the row tone: normal twist, accepted.
    assert detect(np.concatenate([tone_pair("2", 80, low_dbm0=-5, high_dbm0=-12), silence(50)]))
    # Column tone 10 dB under, or 6 dB over: rejected.
    assert not detect(np.concatenate([tone_pair("2", 80, low_dbm0=-5, high_dbm0=-15), silence(50)]))
    assert not detect(np.concatenate([tone_pair("2", 80, low_dbm0=-12, high_dbm0=-6), silence(50)]))


@pytest.mark.parametrize("frame", [40, 160, 400])
def test_the_level_floor_holds_whatever_the_frame_size(frame: int) -> None:
    # Quiet audio is not searched at all: that shortcut must not raise the -30 dBm0 floor.
    def key(dbm0: float) -> np.ndarray:
        pair = tone_pair("2", 80, low_dbm0=dbm0, high_dbm0=dbm0)
        return np.concatenate([silence(50), pair, silence(50)])

    assert detect(key(-29.5), frame=frame) == "2"
    assert detect(key(-31.0), frame=frame) == ""


def test_detection_survives_noise() -> None:
    rng = np.random.default_rng(1)
    signal = dial("4711*", tone_ms=60, pause_ms=60)
    tone_rms = amplitude(-7) / np.sqrt(2)
    noisy = signal + rng.normal(0, tone_rms / 10 ** (18 / 20), len(signal))  # 18 dB SNR
    assert detect(noisy) == "4711*"


def test_detection_survives_g711() -> None:
    pcm = to_int16(dial("#9A0"))
    assert detect(decode_ulaw(encode_ulaw(pcm)).astype(np.float64)) == "#9A0"
    assert detect(decode_alaw(encode_alaw(pcm)).astype(np.float64)) == "#9A0"


def test_speech_like_harmonics_are_not_digits() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(5 * RATE) / RATE
    # A voiced sound: a 110-160 Hz glottal pulse train's harmonics with formant-like weights,
    # pitch gliding as in speech.
    f0 = 135 + 25 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = np.zeros_like(t)
    for harmonic in range(1, 28):
        frequency = harmonic * 135
        weight = sum(np.exp(-((frequency - f) ** 2) / (2 * 120**2)) for f in (700, 1220, 2600))
        voice += (0.15 + weight) / harmonic**0.5 * np.sin(harmonic * phase + rng.uniform(0, 6))
    voice *= amplitude(-12) / np.abs(voice).max()
    assert detect(voice) == ""
    # Steady harmonic series whose partials land close to DTMF pairs: 2×350 ≈ 697, 3×400.
    for f0_steady in (348.5, 403.0, 116.0):
        partials = np.sum(
            [np.sin(2 * np.pi * k * f0_steady * t[:8000]) / k for k in range(1, 12)], axis=0
        )
        assert detect(partials * amplitude(-10)) == ""


def test_sweeps_single_tones_and_call_progress_tones_are_not_digits() -> None:
    t = np.arange(4 * RATE) / RATE
    sweep = np.sin(2 * np.pi * (300 * t + (3100 / 8) * t**2))  # 300 Hz -> 3400 Hz in 4 s
    assert detect(sweep * amplitude(-6)) == ""
    assert detect(np.sin(2 * np.pi * 697 * t) * amplitude(-6)) == ""
    dial_tone = np.sin(2 * np.pi * 350 * t) + np.sin(2 * np.pi * 440 * t)
    assert detect(dial_tone * amplitude(-13)) == ""
    rng = np.random.default_rng(3)
    assert detect(rng.normal(0, amplitude(-10), 4 * RATE)) == ""
    # Music-like: a chord of three notes with their overtones.
    chord = np.sum(
        [np.sin(2 * np.pi * k * f * t) / k for f in (261.6, 329.6, 392.0) for k in (1, 2, 3, 4)],
        axis=0,
    )
    assert detect(chord * amplitude(-15)) == ""


def test_goertzel_reference_matches_the_detector_bins() -> None:
    detector = InbandDtmfDetector()
    window = tone_pair("9", 20) + np.random.default_rng(4).normal(0, 300, 160)
    powers = detector.tone_powers(window)
    frequencies = ROW_FREQUENCIES + COLUMN_FREQUENCIES
    expected = [goertzel_power(window, f, RATE) for f in frequencies]
    assert powers == pytest.approx(expected, rel=1e-9)
    # Row 3 (852 Hz) and column 3 (1477 Hz) dominate for key 9.
    assert int(np.argmax(powers[:4])) == 2 and int(np.argmax(powers[4:])) == 2


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="min_purity"):
        InbandDtmfSettings(min_purity=1.5)
    with pytest.raises(ValueError, match="min_tone_ms"):
        InbandDtmfSettings(min_tone_ms=10)
    with pytest.raises(ValueError, match="twist"):
        InbandDtmfSettings(max_high_above_low_db=-1)
    with pytest.raises(ValueError, match="mono"):
        InbandDtmfDetector().process(np.zeros((2, 160), np.int16))
