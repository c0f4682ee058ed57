"""Call recordings on disk: one WAV file per recording, in the node's recordings directory.

Supervisors start and stop them through the API; a queue with ``record`` set starts one for
each call it connects to an agent. The file is named after the call and the instant (UTC) the
recording started, ``CALLID-20261127T081500Z.wav`` (characters a file name should not hold
replaced by ``_``); a second recording of the same call within the same second gets ``-2``,
``-3``... The name is in the ``media.recording_started`` event (``file``), so a CRM that gets
the event can fetch the file.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from telephony.calls import Call
from telephony.rtp.audio import RecordingLayout

__all__ = ["CallRecordings"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class CallRecordings:
    """Starts recordings of calls into ``directory`` (created when first needed)."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self._clock = clock  # wall-clock seconds, for the file names

    def path_for(self, call_id: str) -> Path:
        """A file name no earlier recording has taken."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        stem = f"{_UNSAFE.sub('_', call_id)}-{stamp}"
        path, copy = self.directory / f"{stem}.wav", 1
        while path.exists():
            copy += 1
            path = self.directory / f"{stem}-{copy}.wav"
        return path

    async def start(self, call: Call, *, layout: RecordingLayout) -> tuple[str, Path]:
        """Record ``call`` from now on until it ends or the recording is stopped: its recording
        id and file. Raises OSError when the file cannot be written, RuntimeError (the media
        layer's) when the call is recorded already or has ended."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(call.call_id)
        return await call.record(path, layout=layout), path
