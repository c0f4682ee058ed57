"""The media half of the call API, for the IVR and ACD layers: one `MediaCall` per call leg.

Every method acts through the `MediaRunner` of the worker, so the sans-IO engine stays the only
place where media state lives. Digits are buffered per call as they arrive (type-ahead): a key
that interrupted a prompt is the first digit of the `collect_digits` that follows it, unless the
caller flushes them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from telephony.media.collect import CollectResult, DigitCollector
from telephony.media.engine import MediaStateError
from telephony.media.events import DigitReceived, MediaLegClosed, PlaybackFinished
from telephony.media.mix import MonitorMode
from telephony.media.playout import Frames
from telephony.media.recording_thread import ThreadedRecording
from telephony.media.runner import MediaRunner
from telephony.media.tap import AudioTap, Pcm
from telephony.rtp.audio import PromptCache, RecordingLayout, RecordingWriter
from telephony.rtp.g711 import Law

#: A prompt: a WAV file (converted once and cached) or frames already in the leg's law.
PromptSource = str | os.PathLike[str] | Frames


class CallEndedError(RuntimeError):
    """The call's media ended while an operation was waiting on it."""


class MediaCall:
    """Media control of one call leg."""

    def __init__(
        self,
        runner: MediaRunner,
        call_id: str,
        *,
        law: Law,
        prompts: PromptCache,
        hangup: Callable[[], None] | None = None,
        max_buffered_digits: int = 32,
    ) -> None:
        self.runner = runner
        self.call_id = call_id
        self.law = law
        self.prompts = prompts
        self._hangup = hangup
        self._digits: deque[str] = deque(maxlen=max_buffered_digits)
        self._digit_arrived = asyncio.Event()
        self._playbacks: dict[int, asyncio.Future[PlaybackFinished]] = {}
        self._taps: list[AudioTap] = []
        self._recording: str | None = None
        self._recordings: list[ThreadedRecording] = []
        self._ended = asyncio.Event()
        runner.subscribe(call_id, self._on_event)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    def _on_event(self, event: object) -> None:
        if isinstance(event, DigitReceived):
            self._digits.append(event.digit)
            self._digit_arrived.set()
        elif isinstance(event, PlaybackFinished):
            future = self._playbacks.pop(event.playback_id, None)
            if future is not None and not future.done():
                future.set_result(event)
        elif isinstance(event, MediaLegClosed):
            self._ended.set()
            self._digit_arrived.set()
            for tap in self._taps:
                if tap.wakeup is not None:
                    tap.wakeup()

    def _check_open(self) -> None:
        if self.ended:
            raise CallEndedError(f"call {self.call_id} has ended")

    # ------------------------------------------------------------------ prompts

    async def _frames(self, prompt: PromptSource) -> Frames:
        if isinstance(prompt, tuple):
            return prompt
        frames = self.prompts.cached(prompt, self.law)
        if frames is not None:
            return frames
        # Converting a WAV file is CPU work: off the event loop (cached after the first time).
        return await asyncio.to_thread(self.prompts.get, Path(prompt), self.law)

    async def play(
        self, prompts: Sequence[PromptSource], *, barge_in: bool = False
    ) -> PlaybackFinished:
        """Play prompts in order; returns when they end, are interrupted or stopped."""
        self._check_open()
        frames = tuple([await self._frames(prompt) for prompt in prompts])
        self._check_open()
        playback_id = self.runner.engine.play(self.call_id, frames, barge_in=barge_in)
        future: asyncio.Future[PlaybackFinished] = asyncio.get_running_loop().create_future()
        self._playbacks[playback_id] = future
        self.runner.arm()
        self.runner.dispatch()  # the playback this one replaced, if any
        return await future

    def stop_playback(self) -> None:
        if not self.ended:
            self.runner.engine.stop_playback(self.call_id)
            self.runner.dispatch()

    # ------------------------------------------------------------------ digits

    def flush_digits(self) -> str:
        """Discard the digits typed ahead; returns them."""
        digits = "".join(self._digits)
        self._digits.clear()
        return digits

    async def collect_digits(
        self,
        max_digits: int,
        *,
        terminator: str | None = "#",
        first_timeout: float = 5.0,
        inter_digit_timeout: float = 3.0,
    ) -> CollectResult:
        """Digits until `max_digits`, the terminator, or a timeout (see `DigitCollector`)."""
        clock = self.runner.clock
        collector = DigitCollector(
            max_digits=max_digits,
            now=clock(),
            terminator=terminator,
            first_timeout=first_timeout,
            inter_digit_timeout=inter_digit_timeout,
        )
        while True:
            while self._digits:
                result = collector.feed(self._digits.popleft(), clock())
                if result is not None:
                    return result
            self._check_open()
            deadline = collector.next_deadline
            assert deadline is not None  # the collection is still running
            self._digit_arrived.clear()
            try:
                await asyncio.wait_for(self._digit_arrived.wait(), max(0.0, deadline - clock()))
            except TimeoutError:
                result = collector.on_timer(max(clock(), deadline))
                if result is not None:
                    return result

    # ------------------------------------------------------------------ speech tap

    async def listen(self, *, capacity: int = 50) -> AsyncIterator[Pcm]:
        """The caller's audio as 20 ms frames of 8 kHz int16, until the call ends or the
        iterator is closed. A reader that falls `capacity` frames behind loses the oldest."""
        self._check_open()
        tap = AudioTap(capacity=capacity)
        ready = asyncio.Event()
        tap.wakeup = ready.set
        self._taps.append(tap)
        self.runner.engine.add_tap(self.call_id, tap)
        self.runner.arm()
        try:
            while True:
                frame = tap.pop()
                if frame is not None:
                    yield frame
                    continue
                if self.ended or tap.closed:
                    return
                ready.clear()
                await ready.wait()
        finally:
            self._taps.remove(tap)
            if not self.ended:
                self.runner.engine.remove_tap(self.call_id, tap)

    # ------------------------------------------------------------------ recording

    @property
    def recording(self) -> str | None:
        """The id of the recording running, if any."""
        return self._recording

    async def record(
        self, path: str | os.PathLike[str], *, layout: RecordingLayout = RecordingLayout.STEREO
    ) -> str:
        """Start recording the call to a WAV file; returns the recording id."""
        self._check_open()
        writer = await asyncio.to_thread(RecordingWriter, path, layout=layout)
        recording_id = secrets.token_hex(8)
        sink = ThreadedRecording(writer, self.runner.recordings)
        try:
            self.runner.engine.start_recording(
                self.call_id, recording_id, sink, layout=layout.value, file=Path(path).name
            )
        except MediaStateError:
            sink.close()
            raise
        self._recordings.append(sink)
        self._recording = recording_id
        self.runner.dispatch()
        return recording_id

    def stop_recording(self) -> float | None:
        """Stop the recording; its length in seconds, None if none was running. The file is
        finished off the event loop: `wait_recordings` waits until it is complete."""
        if self.ended:
            return None
        duration = self.runner.engine.stop_recording(self.call_id)
        self._recording = None
        self.runner.dispatch()
        return duration

    async def wait_recordings(self) -> None:
        """Wait until the files of this call's stopped recordings (all of them once the call
        ended) are complete on disk."""
        for sink in [sink for sink in self._recordings if sink.closed]:
            await sink.wait_closed()
        self._recordings = [sink for sink in self._recordings if not sink.finished.is_set()]

    # ------------------------------------------------------------------ bridging and hold

    def bridge(self, other: MediaCall) -> None:
        """Connect this call's audio with another's (caller ↔ agent)."""
        self._check_open()
        other._check_open()
        self.runner.engine.bridge(self.call_id, other.call_id)

    def unbridge(self) -> None:
        if not self.ended:
            self.runner.engine.unbridge(self.call_id)

    async def hold(self, music: PromptSource | None = None) -> None:
        """Put the call on hold: no audio across its bridge; it hears `music` looped."""
        self._check_open()
        frames = await self._frames(music) if music is not None else ()
        self._check_open()
        self.runner.engine.hold(self.call_id, (frames,) if frames else ())
        self.runner.arm()
        self.runner.dispatch()

    def resume(self) -> None:
        self._check_open()
        self.runner.engine.resume(self.call_id)
        self.runner.dispatch()

    # ------------------------------------------------------------------ supervisor monitoring

    def monitor(self, agent: MediaCall, mode: MonitorMode) -> None:
        """Join this leg (a supervisor's phone) to the bridge of `agent`, the leg the supervisor
        coaches (its bridged peer is the caller), in `mode` (see `telephony.media.mix`)."""
        self._check_open()
        agent._check_open()
        self.runner.engine.monitor(self.call_id, agent.call_id, mode)
        self.runner.arm()

    def set_monitor_mode(self, mode: MonitorMode) -> None:
        self._check_open()
        self.runner.engine.set_monitor_mode(self.call_id, mode)

    def end_monitor(self) -> None:
        """Leave the monitored call this leg takes part in (no-op when it takes part in none)."""
        if not self.ended:
            self.runner.engine.end_monitor(self.call_id)

    def hangup(self) -> None:
        """End the call (the signalling layer sends BYE; media ends when the call does)."""
        if self._hangup is not None and not self.ended:
            self._hangup()
