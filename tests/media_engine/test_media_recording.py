"""Recordings are written off the event loop: complete after stop and after the call ends."""

from __future__ import annotations

import asyncio
import threading
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from telephony.media.calls import MediaCall
from telephony.media.engine import MediaEngine
from telephony.media.events import RecordingStopped
from telephony.media.recording_thread import RecordingThread, ThreadedRecording
from telephony.media.runner import MediaRunner
from telephony.rtp.audio import PromptCache, RecordingWriter
from telephony.rtp.g711 import Law, decode_ulaw, encode_ulaw
from tests.media_engine.media_helpers import CALLER_ADDR, RtpPeer, open_caller, tone
from tests.media_engine.udp_peer import UdpPeer, free_rtp_port

pytestmark = pytest.mark.timeout(30)


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        return np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)


@pytest.fixture
async def runner() -> AsyncIterator[MediaRunner]:
    runner = MediaRunner()
    yield runner
    await runner.close()


async def recorded_call(
    runner: MediaRunner, path: Path, frames: int
) -> tuple[MediaCall, np.ndarray]:
    """A leg that records while its peer sends `frames` frames of a distinct tone each, over
    UDP (real timing: a loaded machine may make the jitter buffer conceal a frame or two)."""
    peer = await UdpPeer.open()
    port = free_rtp_port()
    await runner.open_leg(
        "c1",
        local=("127.0.0.1", port),
        law=Law.ULAW,
        payload_type=0,
        event_payload_type=101,
        remote=peer.address,
    )
    call = MediaCall(runner, "c1", law=Law.ULAW, prompts=PromptCache())
    await call.record(path)
    rtp = RtpPeer()
    sent = [encode_ulaw(tone(300 + 25 * index)) for index in range(frames)]
    for payload in sent:
        peer.send(rtp.audio(payload), ("127.0.0.1", port))
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # the jitter buffer's delay: the last frames reach the recording
    peer.close()
    return call, np.concatenate([decode_ulaw(payload) for payload in sent])


def holds(recorded: np.ndarray, expected: np.ndarray) -> bool:
    """Whether the channel carries `expected` in one piece, on a frame boundary."""
    start = int(np.flatnonzero(recorded)[0]) // 160 * 160
    return bool(np.array_equal(recorded[start : start + len(expected)], expected))


def engine_recording(
    tmp_path: Path, name: str, frames: int
) -> tuple[MediaEngine, RecordingThread, np.ndarray, float]:
    """An engine (fake clock) whose leg records through the writer thread while its peer sends
    `frames` frames of distinct tones; returns the engine, the thread, the audio, the time."""
    engine = MediaEngine(origin=0.0)
    open_caller(engine, "c1")
    thread = RecordingThread()
    engine.start_recording(
        "c1", name, ThreadedRecording(RecordingWriter(tmp_path / f"{name}.wav"), thread)
    )
    peer = RtpPeer()
    sent = [encode_ulaw(tone(300 + 25 * index)) for index in range(frames)]
    now = 0.0
    for payload in [*sent, *[None] * 10]:  # then silence while the jitter buffer drains
        now += 0.020
        if payload is not None:
            engine.receive("c1", peer.audio(payload), CALLER_ADDR, now - 0.003)
        engine.tick(now)
    return engine, thread, np.concatenate([decode_ulaw(p) for p in sent]), now


def test_a_stopped_recording_is_complete_and_exact(tmp_path: Path) -> None:
    engine, thread, expected, _ = engine_recording(tmp_path, "stopped", 60)  # over two batches
    duration = engine.stop_recording("c1")
    thread.close(10)  # what the thread was given is written
    samples = read_wav(tmp_path / "stopped.wav")
    assert duration == pytest.approx(len(samples) / 8000)
    assert holds(samples[:, 0], expected)
    assert not samples[:, 1].any()  # the leg sent nothing


def test_a_recording_is_complete_and_exact_after_the_call_ends(tmp_path: Path) -> None:
    engine, thread, expected, now = engine_recording(tmp_path, "ended", 37)  # 1.5 batches
    engine.close_leg("c1", now)  # the caller hangs up while recording
    thread.close(10)
    stopped = [e for e in engine.take_events() if isinstance(e, RecordingStopped)]
    samples = read_wav(tmp_path / "ended.wav")
    assert len(stopped) == 1 and stopped[0].duration_seconds == pytest.approx(len(samples) / 8000)
    assert holds(samples[:, 0], expected)


async def test_over_udp_a_stopped_recording_is_complete_once_waited_for(
    runner: MediaRunner, tmp_path: Path
) -> None:
    call, _ = await recorded_call(runner, tmp_path / "udp.wav", 30)
    duration = call.stop_recording()
    await call.wait_recordings()
    samples = read_wav(tmp_path / "udp.wav")
    assert duration == pytest.approx(len(samples) / 8000)
    assert np.abs(samples[:, 0]).max() > 4000


async def test_runner_close_finishes_the_files_of_recordings_in_progress(tmp_path: Path) -> None:
    runner = MediaRunner()
    path = tmp_path / "shutdown.wav"
    await recorded_call(runner, path, 30)
    await runner.close()  # shutdown: legs closed, writer drained
    samples = read_wav(path)
    assert len(samples) >= 30 * 160 and np.abs(samples[:, 0]).max() > 4000


def test_a_full_writer_turns_ticks_into_silence_and_keeps_the_length(tmp_path: Path) -> None:
    thread = RecordingThread(max_batches=1)
    path = tmp_path / "slow.wav"
    sink = ThreadedRecording(RecordingWriter(path), thread, batch_ticks=2)
    disk = threading.Event()

    def slow_disk() -> None:
        disk.wait()

    thread.submit_close(slow_disk)  # the thread is busy until `disk` is set
    frames = [np.full(160, 1000 * (index + 1), np.int16) for index in range(6)]
    for frame in frames:
        sink.write(frame, None)  # batches of 2: the first is queued, the next two are not
    assert sink.dropped_ticks == 4
    disk.set()
    sink.write(frames[0], None)
    sink.close()
    assert sink.finished.wait(10)
    thread.close(10)
    left = read_wav(path)[:, 0].reshape(-1, 160)[:, 0]
    assert list(left) == [1000, 2000, 0, 0, 0, 0, 1000]
    assert sink.duration_seconds == pytest.approx(7 * 0.020)


def test_a_failing_disk_fails_the_recording_on_the_loop(tmp_path: Path) -> None:
    thread = RecordingThread()
    writer = RecordingWriter(tmp_path / "gone.wav")
    sink = ThreadedRecording(writer, thread, batch_ticks=1)
    writer.close()  # the writer can no longer write: as if the file system went away
    sink.write(None, None)
    thread.close(10)  # everything queued has run
    assert isinstance(sink.error, ValueError)
    with pytest.raises(OSError, match=r"gone\.wav"):
        sink.write(None, None)
