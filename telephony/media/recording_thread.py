"""Recording files written off the event loop: one writer thread for the recordings of a runner.

The engine hands each recorded leg's tick to its `RecordingSink` on the event loop. A
`ThreadedRecording` only appends the two frames to a batch there; every `batch_ticks` ticks
(half a second) the batch goes to the runner's `RecordingThread`, which does the WAV encoding
and the file writes of every recording (`telephony.rtp.audio.RecordingWriter`). Closing is
queued the same way. The event loop never waits for the disk.

Bounded. The thread takes at most `max_batches` batches of audio at a time (all recordings
together: 1024 batches of half a second, about 16 MB). When it is full — the disk has been
slower than real time for a while — a batch is not queued: its ticks are counted in
`ThreadedRecording.dropped_ticks` and become silence written in front of the next batch that
gets in, so the file keeps its length and both directions stay aligned. Audio of those ticks is
lost, the event loop's time never is. Closing a recording is always queued (one per recording).

Errors. A write or close that fails on the thread is kept (and logged); the next `write` on
the loop raises it as `OSError`, so the engine stops the recording and reports it failed.
`finished` is set once the file is complete (or failed): `wait_closed` awaits it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Final

from telephony.media.tap import Pcm
from telephony.rtp.audio import RecordingWriter
from telephony.rtp.g711 import SAMPLES_PER_FRAME

logger = logging.getLogger(__name__)

_Tick = tuple[Pcm | None, Pcm | None]
_Job = Callable[[], None]
_STOP: Final = None


class RecordingThread:
    """The thread that writes the recordings of one media runner, started on first use."""

    def __init__(self, *, max_batches: int = 1024) -> None:
        if max_batches < 1:
            raise ValueError("max_batches must be at least 1")
        self.max_batches = max_batches
        self._slots = threading.BoundedSemaphore(max_batches)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit_batch(self, job: _Job) -> bool:
        """Queue a batch of audio to write; False (nothing queued) when `max_batches` wait."""
        if not self._slots.acquire(blocking=False):
            return False
        self._start()
        self._jobs.put(lambda: self._run_batch(job))
        return True

    def submit_close(self, job: _Job) -> None:
        """Queue the end of a recording; never refused (one per recording)."""
        self._start()
        self._jobs.put(job)

    def _run_batch(self, job: _Job) -> None:
        try:
            job()
        finally:
            self._slots.release()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                # A daemon: a process that exits without `close` is not held up by the disk.
                self._thread = threading.Thread(
                    target=self._run, name="cxos-recordings", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not _STOP:
            try:
                job()
            except Exception:  # a bug in one recording must not stop the others' writing
                logger.exception("recording writer job failed")

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, then stop the thread (blocking: run it off the loop)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(_STOP)
            thread.join(timeout)


class ThreadedRecording:
    """A `RecordingSink` whose file work runs on a `RecordingThread`."""

    def __init__(
        self, writer: RecordingWriter, thread: RecordingThread, *, batch_ticks: int = 25
    ) -> None:
        if batch_ticks < 1:
            raise ValueError("batch_ticks must be at least 1")
        self.writer = writer
        self.batch_ticks = batch_ticks
        self._thread = thread
        self._batch: list[_Tick] = []
        self._gap = 0  # ticks dropped since the last batch queued, written as silence
        self._samples = 0
        self._closed = False
        self.dropped_ticks = 0
        """Ticks not queued because the writer thread was full (silence in the file)."""
        self.error: Exception | None = None
        """What failed on the writer thread, if anything."""
        self.finished = threading.Event()
        """Set once the file is complete (closed) or has failed."""

    @property
    def closed(self) -> bool:
        """True once `close` has run (the file may still be being written: see `finished`)."""
        return self._closed

    @property
    def duration_seconds(self) -> float:
        """Audio handed to the recording so far (what the file holds once written)."""
        return self._samples / self.writer.sample_rate

    def write(self, caller: Pcm | None, agent: Pcm | None) -> None:
        """Append one tick (on the loop; no file work)."""
        if self.error is not None:
            raise OSError(f"recording {self.writer.path} failed: {self.error}")
        if self._closed:
            raise ValueError(f"recording {self.writer.path} is closed")
        self._samples += max(
            (len(frame) for frame in (caller, agent) if frame is not None),
            default=SAMPLES_PER_FRAME,
        )
        batch = self._batch
        batch.append((caller, agent))
        if len(batch) >= self.batch_ticks:
            self._batch = []
            gap = self._gap
            if self._thread.submit_batch(lambda: self._write(batch, gap)):
                self._gap = 0
            else:
                self._gap += len(batch)
                self.dropped_ticks += len(batch)

    def close(self) -> None:
        """Queue what is left and the end of the file; `finished` tells when it is done."""
        if self._closed:
            return
        self._closed = True
        batch, self._batch = self._batch, []
        gap = self._gap
        self._thread.submit_close(lambda: self._finish(batch, gap))

    async def wait_closed(self) -> None:
        """Wait (off the loop) until the file is complete."""
        if not self.finished.is_set():
            await asyncio.to_thread(self.finished.wait)

    # ------------------------------------------------------------------ on the writer thread

    def _write(self, batch: list[_Tick], gap: int) -> None:
        if self.error is not None:
            return
        writer = self.writer
        try:
            for _ in range(gap):
                writer.write(None, None)
            for caller, agent in batch:
                writer.write(caller, agent)
        except (OSError, ValueError, TypeError) as error:
            logger.warning("recording %s: write failed: %s", writer.path, error)
            self.error = error

    def _finish(self, batch: list[_Tick], gap: int) -> None:
        try:
            self._write(batch, gap)
            try:
                self.writer.close()
            except OSError as error:
                logger.warning("recording %s: closing failed: %s", self.writer.path, error)
                if self.error is None:
                    self.error = error
        finally:
            self.finished.set()
