"""Recording a caller's voicemail for the IVR runner: beep, record, stop at the key, the maximum
length or the hang-up, and report it to the session as ``RecordingFinished``."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.actions import RecordVoicemail
from ivr.inbox import Inbox, RecordingDue, RecordingStarted
from ivr.inputs import RecordingFinished
from ivr.ports import IvrCall
from ivr.prompts import write_tone

__all__ = ["VoicemailRecorder", "safe_file_name"]

logger = logging.getLogger(__name__)

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


def safe_file_name(name: str) -> str:
    """``name`` with anything but letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``."""
    cleaned = _UNSAFE_NAME.sub("_", name).lstrip(".")
    return cleaned or "_"


@dataclass(slots=True)
class _Recording:
    record_id: int
    recording_id: str
    started: float
    max_seconds: float
    due: asyncio.TimerHandle


class VoicemailRecorder:
    """At most one voicemail of one call at a time.

    Files go to ``<folder>/<mailbox>/<call id>-<record id>.wav``. Before recording, the beep
    (``beep_file``, or a tone written once as ``beep.wav`` in ``folder``) is played.
    """

    def __init__(
        self,
        call: IvrCall,
        inbox: Inbox,
        spawn: Spawn,
        *,
        folder: Path,
        beep_file: Path | None,
        max_beep_seconds: float,
    ) -> None:
        self._call = call
        self._inbox = inbox
        self._spawn = spawn
        self._folder = folder
        self._beep_file = beep_file
        self._max_beep_seconds = max_beep_seconds
        self._starting: asyncio.Task[None] | None = None
        self._recording: _Recording | None = None

    @property
    def recording(self) -> bool:
        return self._recording is not None

    def start(self, action: RecordVoicemail) -> None:
        self._starting = self._spawn(self._start(action))

    async def _start(self, action: RecordVoicemail) -> None:
        call = self._call
        folder = self._folder / safe_file_name(action.mailbox)
        path = folder / f"{safe_file_name(call.call_id)}-{action.record_id}.wav"
        try:
            if action.beep:
                beep = await self._beep()
                async with asyncio.timeout(self._max_beep_seconds):
                    await call.play([str(beep)], barge_in=False)
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            recording_id = await call.record(str(path))
        except asyncio.CancelledError:
            raise
        except Exception:
            if call.ended:
                return  # the hang-up is reported on its own
            logger.error(
                "call %s: voicemail could not be recorded; hanging up",
                call.call_id,
                exc_info=True,
            )
            call.hangup()
            return
        started = asyncio.get_running_loop().time()
        self._inbox.post(
            RecordingStarted(action.record_id, recording_id, started, action.max_seconds)
        )

    async def _beep(self) -> Path:
        if self._beep_file is not None:
            return self._beep_file
        beep = self._folder / "beep.wav"
        if not beep.is_file():
            await asyncio.to_thread(write_tone, beep)
        return beep

    def started(self, item: RecordingStarted) -> None:
        """The recording runs; it is due to end after its maximum length."""
        self._starting = None
        loop = asyncio.get_running_loop()
        due = loop.call_at(
            item.started + item.max_seconds, self._inbox.post, RecordingDue(item.record_id)
        )
        self._recording = _Recording(
            record_id=item.record_id,
            recording_id=item.recording_id,
            started=item.started,
            max_seconds=item.max_seconds,
            due=due,
        )
        logger.info("call %s: recording voicemail %s", self._call.call_id, item.recording_id)

    def is_due(self, item: RecordingDue) -> bool:
        return self._recording is not None and self._recording.record_id == item.record_id

    def finish(self) -> RecordingFinished:
        """Stop the recording that runs; what the session is told about it."""
        recording, self._recording = self._recording, None
        assert recording is not None, "no voicemail is being recorded"
        recording.due.cancel()
        duration = self._call.stop_recording()
        if duration is None:  # the call ended, which closed the recording
            elapsed = asyncio.get_running_loop().time() - recording.started
            duration = min(max(0.0, elapsed), recording.max_seconds)
        return RecordingFinished(
            record_id=recording.record_id,
            recording_id=recording.recording_id,
            duration_seconds=duration,
        )

    def abandon(self) -> None:
        """The session no longer wants a recording: stop whatever is under way."""
        if self._starting is not None:
            self._starting.cancel()
            self._starting = None
        if self._recording is not None:
            self._recording.due.cancel()
            self._recording = None
            self._call.stop_recording()
