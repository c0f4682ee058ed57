"""Prompt loading and conversion, the prompt cache, gap fillers and the recording writer."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from telephony.rtp.audio import (
    ComfortNoise,
    PromptCache,
    PromptError,
    RecordingLayout,
    RecordingWriter,
    frames_from_pcm,
    load_prompt,
    read_wav,
    silence_frame,
)
from telephony.rtp.g711 import Law, codec_for, decode_alaw, decode_ulaw
from telephony.rtp.resample import Resampler, resample

SOX = shutil.which("sox")
ESPEAK = shutil.which("espeak-ng")


def sine(frequency: float, rate: int, seconds: float, amplitude: float = 10000.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * frequency * t)


def level_db(signal: np.ndarray, reference: float = 10000 / np.sqrt(2)) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(signal, dtype=np.float64))) / reference))


def write_wav(
    path: Path, samples: np.ndarray, rate: int, *, width: int = 2, channels: int = 1
) -> Path:
    """Write integer PCM with the stdlib; ``samples`` is on the 16-bit scale, (n,) or (n, ch)."""
    data = samples.reshape(len(samples), -1)
    if data.shape[1] != channels:
        data = np.repeat(data, channels, axis=1)
    scaled = np.round(data * 2 ** (8 * width - 16))
    if width == 1:
        raw = (np.clip(scaled, -128, 127) + 128).astype(np.uint8).tobytes()
    elif width == 3:
        value = np.clip(scaled, -(2**23), 2**23 - 1).astype(np.int32).astype("<i4").tobytes()
        raw = b"".join(value[i : i + 3] for i in range(0, len(value), 4))
    else:
        limit = 2 ** (8 * width - 1)
        raw = np.clip(scaled, -limit, limit - 1).astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(raw)
    return path


def frames_to_pcm(frames: tuple[bytes, ...], law: Law) -> np.ndarray:
    return codec_for(law).decode(b"".join(frames)).astype(np.float64)


def sox(*args: str) -> None:
    assert SOX, "sox is a test dependency (Debian package sox)"
    subprocess.run([SOX, *args], check=True, capture_output=True, timeout=30)


# -- resampling ----------------------------------------------------------------------


@pytest.mark.parametrize("rate", [11025, 16000, 22050, 44100, 48000])
def test_downsampling_keeps_the_telephone_band_and_rejects_aliases(rate: int) -> None:
    out = resample(sine(1000, rate, 1.0), rate, 8000)
    assert len(out) == 8000
    ideal = sine(1000, 8000, 1.0)
    assert np.abs(out[200:-200] - ideal[200:-200]).max() < 1.0  # 10000 amplitude: -80 dB
    assert abs(level_db(resample(sine(3300, rate, 0.5), rate, 8000)[200:-200])) < 0.1
    if rate > 10000:  # a 5 kHz tone would alias to 3 kHz: must be gone
        assert level_db(resample(sine(5000, rate, 0.5), rate, 8000)[200:-200]) < -80


def test_upsampling_for_speech_is_clean() -> None:
    out = resample(sine(1000, 8000, 1.0), 8000, 16000)
    assert len(out) == 16000
    ideal = sine(1000, 16000, 1.0)
    assert np.abs(out[400:-400] - ideal[400:-400]).max() < 1.0
    # The 3 kHz tone's image at 5 kHz must not appear.
    up = resample(sine(3000, 8000, 1.0), 8000, 16000)[400:-400]
    spectrum = np.abs(np.fft.rfft(up * np.hanning(len(up))))
    frequencies = np.fft.rfftfreq(len(up), 1 / 16000)
    image = spectrum[np.argmin(np.abs(frequencies - 5000))]
    assert 20 * np.log10(image / spectrum.max()) < -80


def test_output_length_and_types() -> None:
    pcm = np.arange(-500, 501, dtype=np.int16)
    assert resample(pcm, 8000, 16000).dtype == np.int16
    assert len(resample(pcm, 8000, 16000)) == 2002
    assert len(resample(np.zeros(441), 44100, 8000)) == 80
    assert len(resample(np.zeros(442), 44100, 8000)) == 81
    assert resample(np.zeros(3), 44100, 8000).dtype == np.float64
    same = resample(pcm, 8000, 8000)
    assert np.array_equal(same, pcm) and same is not pcm
    assert len(resample(np.zeros(0, np.int16), 16000, 8000)) == 0


@pytest.mark.parametrize(
    ("from_rate", "to_rate", "chunk"), [(8000, 16000, 160), (44100, 8000, 1330)]
)
def test_streaming_resampler_matches_the_one_shot_result(
    from_rate: int, to_rate: int, chunk: int
) -> None:
    pcm = np.random.default_rng(5).normal(0, 4000, from_rate // 2).astype(np.int16)
    resampler = Resampler(from_rate, to_rate)
    pieces = [resampler.process(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk)]
    assert sum(len(p) for p in pieces) > 0.95 * len(pcm) * to_rate / from_rate
    pieces.append(resampler.flush())
    assert np.array_equal(np.concatenate(pieces), resample(pcm, from_rate, to_rate))
    # After a flush the resampler starts afresh.
    again = np.concatenate((resampler.process(pcm), resampler.flush()))
    assert np.array_equal(again, resample(pcm, from_rate, to_rate))


def test_resampler_refuses_absurd_rates() -> None:
    with pytest.raises(ValueError, match="sample rate 1000 Hz"):
        Resampler(1000, 8000)
    with pytest.raises(ValueError, match="mono"):
        resample(np.zeros((2, 10)), 16000, 8000)


# -- loading prompts -----------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_prompt_of_any_width_and_rate_becomes_8khz_frames(
    tmp_path: Path, width: int, rate: int
) -> None:
    path = write_wav(tmp_path / "tone.wav", sine(800, rate, 0.5), rate, width=width)
    frames = load_prompt(path, Law.ULAW)
    assert len(frames) == 25 and all(len(frame) == 160 for frame in frames)
    pcm = frames_to_pcm(frames, Law.ULAW)
    expected = sine(800, 8000, 0.5)
    tolerance = 500 if width == 1 else 350  # 8-bit source noise; G.711 steps near the peak
    assert np.abs(pcm[100:-100] - expected[100:-100]).max() < tolerance
    assert abs(level_db(pcm[100:-100])) < 0.2


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    left, right = sine(500, 16000, 0.2), sine(1500, 16000, 0.2)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000, channels=2)
    samples, rate = read_wav(path)
    assert rate == 16000
    assert np.allclose(samples, (left + right) / 2, atol=1.0)


def test_last_frame_is_padded_with_silence(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "odd.wav", np.full(8000 + 40, 3000.0), 8000)
    frames = load_prompt(path, Law.ALAW)
    assert len(frames) == 51
    assert frames[-1][40:] == silence_frame(Law.ALAW)[40:]
    assert set(decode_alaw(frames[-1][:30]).tolist()) == {3008}


def test_frames_from_pcm_directly() -> None:
    assert frames_from_pcm(np.zeros(0, np.int16), Law.ULAW) == ()
    frames = frames_from_pcm(np.full(161, 100, np.int16), Law.ULAW)
    assert len(frames) == 2 and frames[1][1:] == b"\xff" * 159


def test_sox_files_extensible_float_and_g711(tmp_path: Path) -> None:
    source = write_wav(tmp_path / "source.wav", sine(1000, 22050, 0.4), 22050)
    reference = frames_to_pcm(load_prompt(source, Law.ULAW), Law.ULAW)
    variants = {
        "s24_48k_stereo.wav": ["-b", "24", "-r", "48000", "-c", "2"],
        "s32_44k.wav": ["-b", "32", "-r", "44100"],
        "float_16k.wav": ["-e", "floating-point", "-b", "32", "-r", "16000"],
        "ulaw_8k.wav": ["-e", "u-law", "-r", "8000"],
        "alaw_11k.wav": ["-e", "a-law", "-r", "11025"],
        "u8_8k.wav": ["-e", "unsigned-integer", "-b", "8", "-r", "8000"],
    }
    for name, options in variants.items():
        target = tmp_path / name
        sox(str(source), *options, str(target))
        pcm = frames_to_pcm(load_prompt(target, Law.ULAW), Law.ULAW)
        assert len(pcm) == len(reference), name
        assert abs(level_db(pcm[200:-200]) - level_db(reference[200:-200])) < 0.3, name
        correlation = np.corrcoef(pcm[200:-200], reference[200:-200])[0, 1]
        assert correlation > 0.99, name


def test_spoken_prompt_from_espeak(tmp_path: Path) -> None:
    assert ESPEAK, "espeak-ng is a test dependency (Debian package espeak-ng)"
    spoken = tmp_path / "spoken.wav"
    subprocess.run(
        [ESPEAK, "-w", str(spoken), "Thank you for calling. Please hold."],
        check=True,
        capture_output=True,
        timeout=30,
    )
    samples, rate = read_wav(spoken)
    frames = load_prompt(spoken, Law.ALAW)
    assert len(frames) == -(-round(len(samples) * 8000 / rate) // 160)
    pcm = frames_to_pcm(frames, Law.ALAW)
    assert level_db(pcm, 32768) > -40  # speech, not silence
    # The same speech resampled by sox to 44.1 kHz stereo 24-bit converts to the same audio.
    converted = tmp_path / "spoken_44k.wav"
    sox(str(spoken), "-b", "24", "-r", "44100", "-c", "2", str(converted))
    again = frames_to_pcm(load_prompt(converted, Law.ALAW), Law.ALAW)
    shortest = min(len(pcm), len(again))
    assert np.corrcoef(pcm[:shortest], again[:shortest])[0, 1] > 0.95


def riff(*chunks: tuple[bytes, bytes]) -> bytes:
    body = b"WAVE" + b"".join(cid + struct.pack("<I", len(data)) + data for cid, data in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt_chunk(tag: int, channels: int = 1, rate: int = 8000, bits: int = 16) -> tuple[bytes, bytes]:
    align = channels * bits // 8
    return b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"hello, not audio", "is not a usable WAV file (file does not start with RIFF id)"),
        (b"RIFF", "is truncated inside its WAV header"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "is not a usable WAV file (fmt chunk and/or data"),
        (riff(fmt_chunk(2), (b"data", bytes(100))), "uses unsupported WAV encoding 0x0002"),
        (riff(fmt_chunk(1), (b"data", b"")), "contains no audio"),
        (riff(fmt_chunk(1, rate=2000), (b"data", bytes(100))), "unsupported sample rate 2000 Hz"),
        (
            riff(fmt_chunk(3, bits=16), (b"data", bytes(100))),
            "uses unsupported 16-bit IEEE float samples",
        ),
        (riff((b"data", bytes(4)), fmt_chunk(3, bits=32)), "is not a usable WAV file (data chunk"),
        (riff(fmt_chunk(3, bits=32)), "has no data chunk"),
        (
            riff(fmt_chunk(3, bits=32), (b"data", np.array([np.nan], "<f4").tobytes())),
            "contains non-finite float samples",
        ),
    ],
)
def test_broken_prompts_say_which_file_and_why(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(PromptError) as caught:
        load_prompt(path, Law.ULAW)
    assert caught.value.problem.startswith(problem), caught.value.problem
    assert str(caught.value) == f"{path}: {caught.value.problem}"
    assert caught.value.path == str(path)


def test_missing_unreadable_and_overlong_prompts(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match=r"missing\.wav: file not found"):
        load_prompt(tmp_path / "missing.wav", Law.ULAW)
    with pytest.raises(PromptError, match="cannot be read"):
        load_prompt(tmp_path, Law.ULAW)
    long = write_wav(tmp_path / "long.wav", np.zeros(8000 * 3), 8000)
    with pytest.raises(PromptError, match="is 3 s long, over the 2 s limit"):
        load_prompt(long, Law.ULAW, max_seconds=2)


# -- cache ---------------------------------------------------------------------------


def test_cache_converts_each_file_once_and_again_when_it_changes(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "welcome.wav", sine(440, 16000, 0.2), 16000)
    cache = PromptCache()
    first = cache.get(path, Law.ULAW)
    assert cache.get(path, Law.ULAW) is first
    assert (cache.misses, cache.hits, len(cache)) == (1, 1, 1)
    assert cache.get(str(path), Law.ALAW) is not first  # another law is another entry
    assert len(cache) == 2 and cache.size_bytes == 2 * len(first) * 160
    # The administrator replaces the prompt: the new audio is served.
    write_wav(path, sine(440, 16000, 0.4), 16000)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    updated = cache.get(path, Law.ULAW)
    assert len(updated) == 2 * len(first)
    assert len(cache) == 2  # the stale version was dropped
    with pytest.raises(PromptError, match="file not found"):
        cache.get(tmp_path / "nope.wav", Law.ULAW)


def test_cache_lookup_without_conversion_serves_only_the_current_file(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "menu.wav", sine(440, 8000, 0.2), 8000)
    cache = PromptCache()
    assert cache.cached(path, Law.ULAW) is None  # never converted: the caller converts
    first = cache.get(path, Law.ULAW)
    assert cache.cached(str(path), Law.ULAW) is first
    assert cache.cached(path, Law.ALAW) is None
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert cache.cached(path, Law.ULAW) is None  # edited since: converted again by `get`
    assert cache.cached(tmp_path / "nope.wav", Law.ULAW) is None
    assert cache.misses == 1


def test_cache_stays_within_its_byte_budget(tmp_path: Path) -> None:
    cache = PromptCache(max_bytes=160 * 30)  # 30 frames
    paths = [write_wav(tmp_path / f"p{i}.wav", sine(300 + i, 8000, 0.2), 8000) for i in range(3)]
    for path in paths:
        assert len(cache.get(path, Law.ULAW)) == 10
    assert len(cache) == 3
    cache.get(paths[0], Law.ULAW)  # p0 becomes most recently used
    cache.get(write_wav(tmp_path / "p3.wav", sine(700, 8000, 0.2), 8000), Law.ULAW)
    assert len(cache) == 3 and cache.size_bytes <= 160 * 30
    misses = cache.misses
    cache.get(paths[0], Law.ULAW)
    assert cache.misses == misses  # kept
    cache.get(paths[1], Law.ULAW)
    assert cache.misses == misses + 1  # evicted as least recently used
    huge = write_wav(tmp_path / "huge.wav", np.zeros(8000), 8000)
    assert len(cache.get(huge, Law.ULAW)) == 50  # served though larger than the budget
    assert cache.size_bytes <= 160 * 30


# -- gap fillers ---------------------------------------------------------------------


def test_silence_frames() -> None:
    assert silence_frame(Law.ULAW) == b"\xff" * 160
    assert silence_frame(Law.ALAW) == b"\xd5" * 160


def test_comfort_noise_is_quiet_reproducible_noise() -> None:
    first = ComfortNoise(Law.ULAW, np.random.default_rng(9), level_dbm0=-50)
    second = ComfortNoise(Law.ULAW, np.random.default_rng(9), level_dbm0=-50)
    frames = [first.frame() for _ in range(50)]
    assert frames == [second.frame() for _ in range(50)]
    assert len(set(frames)) == 50 and all(len(frame) == 160 for frame in frames)
    pcm = decode_ulaw(b"".join(frames)).astype(np.float64)
    dbm0_rms = 8159 * 4 / 10 ** (3.17 / 20) / np.sqrt(2)
    assert level_db(pcm, dbm0_rms) == pytest.approx(-50, abs=1.0)
    alaw = ComfortNoise(Law.ALAW, np.random.default_rng(1)).frame()
    assert np.abs(decode_alaw(alaw)).max() < 200
    with pytest.raises(ValueError, match="not comfort noise"):
        ComfortNoise(Law.ULAW, np.random.default_rng(1), level_dbm0=-10)


# -- recording -----------------------------------------------------------------------


def read_back(path: Path) -> tuple[int, int, np.ndarray]:
    with wave.open(str(path), "rb") as reader:
        data = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
        return reader.getnchannels(), reader.getframerate(), data


def test_stereo_recording_keeps_caller_left_and_agent_right(tmp_path: Path) -> None:
    caller = np.full(160, 1000, np.int16)
    agent = np.full(160, -2000, np.int16)
    path = tmp_path / "call.wav"
    with RecordingWriter(path) as recording:
        recording.write(caller, agent)
        recording.write(None, agent)  # the caller's packet was lost this tick
        recording.write(caller, None)
        recording.write(None, None)
        recording.write(caller[:80], agent)  # a short frame is padded
    assert recording.closed and recording.duration_seconds == 0.1
    channels, rate, data = read_back(path)
    assert (channels, rate, len(data)) == (2, 8000, 2 * 800)
    left, right = data[0::2], data[1::2]
    assert left[:160].tolist() == [1000] * 160 and right[:160].tolist() == [-2000] * 160
    assert not left[160:320].any() and right[160:320].tolist() == [-2000] * 160
    assert not right[320:480].any() and not left[480:640].any() and not right[480:640].any()
    assert left[640:720].tolist() == [1000] * 80 and not left[720:].any()


def test_mixed_recording_sums_and_clips(tmp_path: Path) -> None:
    path = tmp_path / "mixed.wav"
    recording = RecordingWriter(path, layout=RecordingLayout.MIXED)
    recording.write(np.full(160, 20000, np.int16), np.full(160, 20000, np.int16))
    recording.write(np.full(160, 300, np.int16), np.full(160, -100, np.int16))
    recording.write(None, np.full(160, -7, np.int16))
    recording.close()
    recording.close()  # twice is harmless
    channels, _, data = read_back(path)
    assert channels == 1 and len(data) == 480
    assert set(data[:160].tolist()) == {32767}
    assert set(data[160:320].tolist()) == {200} and set(data[320:].tolist()) == {-7}
    with pytest.raises(ValueError, match="is closed"):
        recording.write(None, None)


def test_recording_is_written_as_it_goes(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    recording = RecordingWriter(path, header_refresh_seconds=1.0)
    frame = np.full(160, 5, np.int16)
    for _ in range(60):  # 1.2 s
        recording.write(frame, frame)
    # Before close the first second is on disk and the header already counts it.
    assert path.stat().st_size >= 44 + 8000 * 4
    with wave.open(str(path), "rb") as reader:
        assert reader.getnframes() >= 8000
    recording.close()
    with wave.open(str(path), "rb") as reader:
        assert reader.getnframes() == 9600


def test_recording_rejects_wrong_sample_types(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "x.wav") as recording:
        with pytest.raises(TypeError, match="caller frame must be mono int16"):
            recording.write(np.zeros(160), None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="agent frame"):
            recording.write(None, np.zeros((2, 80), np.int16))
