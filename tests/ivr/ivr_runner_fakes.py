"""A virtual-time event loop and in-memory stand-ins for a call, TTS, a recognizer and the CRM,
for driving the IVR runner without a phone.

The loop's clock moves only when nothing is ready to run: where a real loop would sleep until its
next timer, it jumps there, so a caller who waits five seconds costs no real time. While a worker
thread runs (``asyncio.to_thread``) the loop waits for it for real instead of jumping ahead.
"""

from __future__ import annotations

import asyncio
import selectors
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ivr.ports import PcmFrame
from speech.recognizer import RecognitionResult

T = TypeVar("T")

#: Virtual time at which every test starts.
START = 1000.0


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self._loop.threads_running:
            # A worker thread will wake the loop when done: wait for it in real time.
            return super().select(0.05 if timeout is None else min(timeout, 0.05))
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self._loop.now += timeout  # idle: jump to the next timer instead of sleeping
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = START
        self.threads_running = 0
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self.now

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        future: asyncio.Future[T] = super().run_in_executor(executor, func, *args)
        self.threads_running += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _future: object) -> None:
        self.threads_running -= 1


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a virtual-time loop."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)


def elapsed() -> float:
    """Virtual seconds since the test started."""
    return asyncio.get_running_loop().time() - START


def later(seconds: float, action: Callable[..., object], *args: Any) -> None:
    """Run ``action(*args)`` ``seconds`` (virtual) from now."""
    asyncio.get_running_loop().call_later(seconds, action, *args)


# The call -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaybackResult:
    reason: str


@dataclass(frozen=True, slots=True)
class Collected:
    digits: str


@dataclass
class Playback:
    """One ``play`` of the call: what, when, and how it ended."""

    files: tuple[str, ...]
    barge_in: bool
    started: float
    ended: float | None = None
    reason: str | None = None


class FakeCall:
    """A call whose caller is scripted by the test: keys (``press``), hanging up (``leave``).

    Each prompt file plays for ``seconds_per_file`` (virtual) seconds; a key stops a prompt
    played with barge-in, and is kept for the next ``collect_digits`` (type-ahead).
    """

    def __init__(self, call_id: str = "call-1", *, seconds_per_file: float = 2.0) -> None:
        self.call_id = call_id
        self.seconds_per_file = seconds_per_file
        self.playbacks: list[Playback] = []
        self.recordings: list[tuple[str, float]] = []  # (path, started)
        self.recording_stopped_at: float | None = None
        self.hung_up_by_server = False
        self.listeners = 0
        self.listening = 0
        self._digits: deque[str] = deque()
        self._digit_arrived = asyncio.Event()
        self._ended = asyncio.Event()
        self._current: tuple[Playback, asyncio.Future[PlaybackResult]] | None = None
        self._recording: float | None = None

    # IvrCall ----------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    async def play(self, prompts: Sequence[str], *, barge_in: bool) -> PlaybackResult:
        if self.ended:
            raise RuntimeError("call ended")
        loop = asyncio.get_running_loop()
        self._finish_playback("stopped")
        playback = Playback(files=tuple(prompts), barge_in=barge_in, started=loop.time())
        self.playbacks.append(playback)
        future: asyncio.Future[PlaybackResult] = loop.create_future()
        self._current = (playback, future)
        handle = loop.call_later(
            self.seconds_per_file * len(prompts), self._finish_playback, "completed", playback
        )
        future.add_done_callback(lambda _: handle.cancel())
        return await future

    def stop_playback(self) -> None:
        self._finish_playback("stopped")

    async def collect_digits(
        self,
        max_digits: int,
        *,
        terminator: str | None,
        first_timeout: float,
        inter_digit_timeout: float,
    ) -> Collected:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + first_timeout
        got = ""
        while True:
            while self._digits:
                key = self._digits.popleft()
                if key == terminator:
                    return Collected(got)
                got += key
                if len(got) >= max_digits:
                    return Collected(got)
                deadline = loop.time() + inter_digit_timeout
            if self.ended:
                raise RuntimeError("call ended")
            self._digit_arrived.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._digit_arrived.wait()
            except TimeoutError:
                return Collected(got)

    async def listen(self) -> AsyncIterator[PcmFrame]:
        self.listeners += 1
        self.listening += 1
        try:
            while not self.ended:
                await asyncio.sleep(0.02)
                yield np.zeros(160, dtype=np.int16)
        finally:
            self.listening -= 1

    async def record(self, path: str) -> str:
        if self.ended:
            raise RuntimeError("call ended")
        now = asyncio.get_running_loop().time()
        self.recordings.append((path, now))
        self._recording = now
        return f"recording-{len(self.recordings)}"

    def stop_recording(self) -> float | None:
        if self.ended or self._recording is None:
            return None
        now = asyncio.get_running_loop().time()
        duration, self._recording = now - self._recording, None
        self.recording_stopped_at = now
        return duration

    def hangup(self) -> None:
        self.hung_up_by_server = True
        self._end()

    # The caller -------------------------------------------------------------------------------

    def press(self, keys: str) -> None:
        for key in keys:
            if self._current is not None and self._current[0].barge_in:
                self._finish_playback("barged_in")
            self._digits.append(key)
        self._digit_arrived.set()

    def leave(self) -> None:
        """The caller hangs up."""
        self._end()

    # What the caller heard -----------------------------------------------------------------------

    def heard(self, renderer: FakeRenderer) -> list[str]:
        """Every prompt played, as its text (or file name), in order."""
        return [renderer.text_of(file) for playback in self.playbacks for file in playback.files]

    def _end(self) -> None:
        if self.ended:
            return
        self._finish_playback("stopped")
        if self._recording is not None:
            self._recording = None
            self.recording_stopped_at = asyncio.get_running_loop().time()
        self._ended.set()
        self._digit_arrived.set()

    def _finish_playback(self, reason: str, which: Playback | None = None) -> None:
        if self._current is None:
            return
        playback, future = self._current
        if which is not None and which is not playback:
            return
        self._current = None
        playback.ended = asyncio.get_running_loop().time()
        playback.reason = reason
        if not future.done():
            future.set_result(PlaybackResult(reason))


# Prompts, speech and the CRM ----------------------------------------------------------------


class FakeRenderer:
    """Text-to-speech that names a file after the text; ``fail_on`` texts raise."""

    def __init__(self, fail_on: Sequence[str] = ()) -> None:
        self.rendered: list[tuple[str, str]] = []
        self._texts: dict[str, str] = {}
        self._fail_on = tuple(fail_on)

    async def render(self, text: str, *, language: str) -> Path:
        if any(part in text for part in self._fail_on):
            raise OSError(f"cannot render {text!r}")
        self.rendered.append((text, language))
        path = Path("tts") / language / f"{len(self._texts)}.wav"
        self._texts[str(path)] = text
        return path

    def text_of(self, file: str) -> str:
        return self._texts.get(file, Path(file).name)


@dataclass
class Utterance:
    """What the caller says at one question: speech starts ``after`` seconds of listening and
    the result comes ``lasting`` seconds later; ``result`` None means silence."""

    result: RecognitionResult | None
    after: float = 1.0
    lasting: float = 1.0


def heard(text: str, confidence: float = 0.9) -> RecognitionResult:
    return RecognitionResult(text=text, confidence=confidence, engine="fake")


@dataclass
class FakeSpeechSession:
    script: deque[Utterance]
    grammars: list[tuple[str, ...] | None] = field(default_factory=list)
    frames: int = 0
    prompt_ends: int = 0
    closed: bool = False
    cancelled: int = 0

    async def recognize(
        self,
        frames: AsyncIterator[PcmFrame],
        *,
        grammar: tuple[str, ...] | None,
        language: str,
        no_input_timeout: float,
        max_speech_seconds: float,
        prompt_playing: bool,
        on_speech_started: Callable[[], None],
    ) -> RecognitionResult | None:
        self.grammars.append(grammar)
        loop = asyncio.get_running_loop()
        try:
            if not self.script:
                await asyncio.sleep(3600)  # a caller who never speaks
            utterance = self.script.popleft()
            if utterance.result is None:
                await asyncio.sleep(no_input_timeout)
                return None
            start = loop.time() + utterance.after
            async for _frame in frames:  # listens to the call's audio meanwhile
                self.frames += 1
                if loop.time() >= start:
                    break
            on_speech_started()
            await asyncio.sleep(utterance.lasting)
            return utterance.result
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def prompt_ended(self) -> None:
        self.prompt_ends += 1

    async def close(self) -> None:
        self.closed = True


class FakeRecognizer:
    def __init__(self, *utterances: Utterance) -> None:
        self.session = FakeSpeechSession(deque(utterances))
        self.opened: list[str] = []

    async def open_session(self, *, call_id: str) -> FakeSpeechSession:
        self.opened.append(call_id)
        return self.session


class FakeCrm:
    """Answers after ``delay`` seconds with ``record`` (None: no such customer)."""

    def __init__(self, record: Mapping[str, str] | None, *, delay: float = 0.1) -> None:
        self.record = record
        self.delay = delay
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    async def lookup(self, key: str, fields: tuple[str, ...]) -> Mapping[str, str] | None:
        self.asked.append((key, fields))
        await asyncio.sleep(self.delay)
        return self.record
