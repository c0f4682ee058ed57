"""One asyncio task running jobs one at a time, in the order they were submitted.

The ACD service feeds every engine input through it so that a job's awaits (a store round trip,
a telephony request) never interleave with another job's changes to the engine.

The queue is bounded (``max_pending``): :meth:`SerialWorker.call` waits for room (back-pressure
on API callers); :meth:`SerialWorker.submit`, for reports that must not block, drops the job and
logs when the queue is full, returning False.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from acd.agent_state import IllegalTransitionError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[], Awaitable[Any]]


async def _stop_worker() -> None:
    """Queued by :meth:`SerialWorker.stop`: the worker ends when it reaches it."""


class SerialWorker:
    """Runs jobs in order; ``after_each`` is called after every job (e.g. to re-arm a timer)."""

    def __init__(self, name: str, max_pending: int, after_each: Callable[[], None]) -> None:
        self._name = name
        self._max_pending = max_pending
        self._after_each = after_each
        self._jobs: asyncio.Queue[tuple[Job, asyncio.Future[Any] | None]] = asyncio.Queue(
            max_pending
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self._name} is already running")
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Stop after the jobs already queued; jobs submitted later are never run."""
        task, self._task = self._task, None
        if task is None:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._jobs.put((_stop_worker, done))
        await task

    async def call(self, job: Callable[[], Awaitable[T]]) -> T:
        """Run ``job`` after the jobs queued before it; its result or exception comes back."""
        if self._task is None:
            raise RuntimeError(f"{self._name} is not running")
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._jobs.put((job, done))
        return await done

    def submit(self, job: Job, what: str) -> bool:
        """Queue ``job`` without waiting; its failure is logged. False if it was dropped."""
        if self._task is None:
            logger.warning("%s is stopped: %s dropped", self._name, what)
            return False
        try:
            self._jobs.put_nowait((job, None))
        except asyncio.QueueFull:
            logger.error("%s: %d inputs pending, %s dropped", self._name, self._max_pending, what)
            return False
        return True

    async def _run(self) -> None:
        while True:
            job, done = await self._jobs.get()
            if job is _stop_worker:
                if done is not None:
                    done.set_result(None)
                return
            try:
                result = await job()
            except Exception as exc:
                if done is not None:
                    if not done.done():
                        done.set_exception(exc)
                elif isinstance(exc, LookupError | IllegalTransitionError):
                    # A report crossing the engine's own decision (a hang-up of a call already
                    # over, an agent moved meanwhile): nothing to do, worth a line in the log.
                    logger.warning("%s: report not applied: %s", self._name, exc)
                else:
                    logger.exception("%s: report failed", self._name)
            else:
                if done is not None and not done.done():
                    done.set_result(result)
            self._after_each()
