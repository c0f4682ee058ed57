"""Bounded workers that run recognisers off the event loop.

Two kinds, because the engines differ in how they treat the GIL:

- :class:`WorkerThreads` — a fixed number of threads. Vosk releases the GIL while it decodes, so
  several streams decode in parallel in one process and share one loaded model.
- :class:`ProcessEngine` — a fixed number of worker processes, each loading its own copy of an
  engine (pocketsphinx holds the GIL while it decodes, so threads would serialise on it and stall
  the event loop). Sessions live inside a worker; the parent holds blocking proxies that speak to
  it over a pipe, and those proxies are themselves run on :class:`WorkerThreads`.

Bounds and what happens at them: each pool has a fixed number of workers; a worker process hosts
at most ``max_sessions_per_process`` sessions (opening one more raises :class:`RecognizerError`);
a request that gets no answer within ``request_timeout`` seconds, or whose worker dies, raises
:class:`RecognizerError`, and the dead worker is replaced for the next session. Callers above
(:mod:`speech.service`) bound the audio waiting for a worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from speech.recognizer import RecognitionResult, RecognizerEngine, RecognizerError

__all__ = ["ProcessEngine", "RemoteSession", "WorkerThreads"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# How often a blocked request checks that its worker process is still alive, in seconds.
_LIVENESS_POLL_SECONDS: Final = 0.05
# Frames a proxy collects before sending them to its worker in one message (200 ms of audio):
# one pipe round trip per 10 frames instead of per frame.
_ACCEPT_BATCH_FRAMES: Final = 10


class WorkerThreads:
    """A fixed set of threads for blocking recogniser calls, awaited from the event loop."""

    __slots__ = ("_executor", "_workers")

    def __init__(self, workers: int, *, name: str = "speech") -> None:
        if workers < 1:
            raise ValueError(f"a worker pool needs at least one thread, got {workers}")
        self._workers = workers
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=name
        )

    @property
    def workers(self) -> int:
        """Number of threads."""
        return self._workers

    async def run(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run ``function(*args)`` on a worker thread; the loop stays free meanwhile."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(
            self._executor, functools.partial(context.run, function, *args)
        )

    def close(self) -> None:
        """Stop accepting work and let running calls finish in the background."""
        self._executor.shutdown(wait=False, cancel_futures=True)


# Worker process side ---------------------------------------------------------------------------


def _serve(connection: multiprocessing.connection.Connection, factory: EngineFactory) -> None:
    """Main loop of a worker process: host sessions of one engine, answer one request at a time.

    A request is ``(operation, session_id, argument)``; the answer is ``("ok", value)`` or
    ``("error", reason)``. The loop ends when the parent closes its end of the pipe.
    """
    try:
        engine = factory()
    except Exception as exc:  # reported to the parent, which raises it as a RecognizerError
        connection.send(("error", f"engine failed to load: {exc}"))
        return
    connection.send(("ok", engine.name))
    sessions: dict[int, Any] = {}
    while True:
        try:
            operation, session_id, argument = connection.recv()
        except (EOFError, OSError):
            return
        try:
            value: object = None
            if operation == "open":
                sessions[session_id] = engine.open_session(call_id=argument)
            elif operation == "close":
                session = sessions.pop(session_id, None)
                if session is not None:
                    session.close()
            else:
                session = sessions[session_id]
                if operation == "start":
                    session.start(argument)
                elif operation == "accept":
                    for frame in argument:
                        session.accept(frame)
                elif operation == "partial":
                    value = session.partial()
                elif operation == "finish":
                    value = session.finish()
                else:
                    raise ValueError(f"unknown worker operation {operation!r}")
            connection.send(("ok", value))
        except RecognizerError as exc:
            connection.send(("error", exc.reason))
        except Exception as exc:  # one session's failure must not end the others on this worker
            connection.send(("error", f"{type(exc).__name__}: {exc}"))


# Parent side -----------------------------------------------------------------------------------

EngineFactory = Callable[[], RecognizerEngine]
"""A picklable callable that builds the engine inside a worker process."""


@dataclass(slots=True)
class _Worker:
    index: int
    process: multiprocessing.process.BaseProcess
    connection: multiprocessing.connection.Connection
    lock: threading.Lock
    sessions: int = 0
    dead_reason: str | None = None
    generation: int = 0


class ProcessEngine:
    """An engine whose sessions run in a fixed pool of worker processes.

    ``factory`` builds the real engine in each worker (it is pickled, so it must be a module-level
    function or a :func:`functools.partial` of one). Methods block (they wait on a pipe): call
    them from :class:`WorkerThreads`, like any other session.
    """

    def __init__(
        self,
        factory: EngineFactory,
        *,
        name: str,
        processes: int,
        max_sessions_per_process: int = 64,
        request_timeout: float = 10.0,
        start_timeout: float = 60.0,
    ) -> None:
        if processes < 1:
            raise ValueError(f"a process pool needs at least one process, got {processes}")
        self._factory = factory
        self._name = name
        self._max_sessions = max_sessions_per_process
        self._request_timeout = request_timeout
        self._start_timeout = start_timeout
        # Spawned, not forked: the parent runs threads and an event loop that a fork would copy
        # in an inconsistent state.
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._session_ids = itertools.count(1)
        self._closed = False
        self._workers = [self._spawn(index) for index in range(processes)]
        for worker in self._workers:
            self._await_ready(worker)

    @property
    def name(self) -> str:
        """Name of the engine the workers run."""
        return self._name

    @property
    def worker_pids(self) -> tuple[int | None, ...]:
        """Process ids of the workers (for monitoring)."""
        return tuple(worker.process.pid for worker in self._workers)

    def open_session(self, *, call_id: str) -> RemoteSession:
        """Open a session on the least busy live worker (restarting a dead one if needed)."""
        with self._lock:
            if self._closed:
                raise RecognizerError(self._name, "the speech worker pool is closed")
            for index, worker in enumerate(self._workers):
                if worker.dead_reason is not None or not worker.process.is_alive():
                    logger.warning(
                        "restarting %s worker %d: %s", self._name, index, worker.dead_reason
                    )
                    self._retire(worker)
                    self._workers[index] = self._spawn(index, worker.generation + 1)
                    self._await_ready(self._workers[index])
            worker = min(self._workers, key=lambda w: w.sessions)
            if worker.sessions >= self._max_sessions:
                raise RecognizerError(
                    self._name,
                    f"all {len(self._workers)} speech worker processes are at their limit of "
                    f"{self._max_sessions} sessions",
                )
            worker.sessions += 1
        session = RemoteSession(self, worker, next(self._session_ids), call_id)
        try:
            self.request(worker, "open", session.session_id, call_id)
        except RecognizerError:
            with self._lock:
                worker.sessions -= 1
            raise
        return session

    def request(self, worker: _Worker, operation: str, session_id: int, argument: object) -> Any:
        """Send one request to ``worker`` and wait for its answer (blocking)."""
        with worker.lock:
            if worker.dead_reason is not None:
                raise RecognizerError(self._name, worker.dead_reason)
            try:
                worker.connection.send((operation, session_id, argument))
                deadline = time.monotonic() + self._request_timeout
                while not worker.connection.poll(_LIVENESS_POLL_SECONDS):
                    if not worker.process.is_alive():
                        raise EOFError
                    if time.monotonic() > deadline:
                        self._mark_dead(
                            worker, f"worker gave no answer within {self._request_timeout} s"
                        )
                        worker.process.kill()
                        raise RecognizerError(self._name, worker.dead_reason or "timeout")
                status, value = worker.connection.recv()
            except (EOFError, OSError, BrokenPipeError):
                worker.process.join(timeout=1.0)
                self._mark_dead(
                    worker, f"worker process exited with code {worker.process.exitcode}"
                )
                raise RecognizerError(self._name, worker.dead_reason or "worker died") from None
        if status != "ok":
            raise RecognizerError(self._name, str(value))
        return value

    def release(self, worker: _Worker) -> None:
        """A session of ``worker`` was closed."""
        with self._lock:
            worker.sessions = max(0, worker.sessions - 1)

    def close(self) -> None:
        """Stop every worker process."""
        with self._lock:
            self._closed = True
            for worker in self._workers:
                self._retire(worker)

    def _spawn(self, index: int, generation: int = 0) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_serve,
            args=(child_end, self._factory),
            name=f"{self._name}-worker-{index}",
            daemon=True,
        )
        process.start()
        child_end.close()
        return _Worker(
            index=index,
            process=process,
            connection=parent_end,
            lock=threading.Lock(),
            generation=generation,
        )

    def _await_ready(self, worker: _Worker) -> None:
        if not worker.connection.poll(self._start_timeout):
            self._retire(worker)
            raise RecognizerError(
                self._name, f"worker process did not start within {self._start_timeout} s"
            )
        try:
            status, value = worker.connection.recv()
        except EOFError:
            worker.process.join(timeout=1.0)
            raise RecognizerError(
                self._name, f"worker process exited with code {worker.process.exitcode}"
            ) from None
        if status != "ok":
            self._retire(worker)
            raise RecognizerError(self._name, str(value))

    def _mark_dead(self, worker: _Worker, reason: str) -> None:
        if worker.dead_reason is None:
            worker.dead_reason = reason
            if self._closed:
                # The pool was closed (the server stops) while a request was in flight: the
                # worker went because it was told to, not a failure to report.
                logger.debug("%s worker %d stopped: %s", self._name, worker.index, reason)
            else:
                logger.error("%s worker %d failed: %s", self._name, worker.index, reason)

    @staticmethod
    def _retire(worker: _Worker) -> None:
        worker.connection.close()
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join(timeout=2.0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=1.0)


class RemoteSession:
    """A :class:`~speech.recognizer.RecognizerSession` living in a worker process.

    Frames are sent in batches of 200 ms (or sooner, before any other request), so a stream costs
    five pipe round trips a second.
    """

    __slots__ = ("_buffer", "_call_id", "_closed", "_engine", "_worker", "session_id")

    def __init__(
        self, engine: ProcessEngine, worker: _Worker, session_id: int, call_id: str
    ) -> None:
        self._engine = engine
        self._worker = worker
        self.session_id = session_id
        self._call_id = call_id
        self._buffer: list[bytes] = []
        self._closed = False

    @property
    def worker_pid(self) -> int | None:
        """Process id of the worker hosting this session."""
        return self._worker.process.pid

    def start(self, grammar: tuple[str, ...] | None) -> None:
        self._buffer.clear()
        self._request("start", grammar)

    def accept(self, pcm_frame: bytes) -> None:
        self._buffer.append(bytes(pcm_frame))
        if len(self._buffer) >= _ACCEPT_BATCH_FRAMES:
            self._flush()

    def partial(self) -> str:
        self._flush()
        text = self._request("partial", None)
        return str(text)

    def finish(self) -> RecognitionResult:
        self._flush()
        result = self._request("finish", None)
        if not isinstance(result, RecognitionResult):
            raise RecognizerError(self._engine.name, f"worker answered {result!r} to finish")
        return result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        try:
            if self._worker.dead_reason is None:
                self._engine.request(self._worker, "close", self.session_id, None)
        except RecognizerError:
            logger.debug("session %d closed with its worker gone", self.session_id)
        finally:
            self._engine.release(self._worker)

    def _flush(self) -> None:
        if self._buffer:
            frames, self._buffer = tuple(self._buffer), []
            self._request("accept", frames)

    def _request(self, operation: str, argument: object) -> Any:
        if self._closed:
            raise RecognizerError(self._engine.name, "the session is closed")
        return self._engine.request(self._worker, operation, self.session_id, argument)
