"""Recording a leg: one tick's audio in each direction, handed to a sink that writes it.

The engine stays free of file I/O: it hands each tick's two frames (what the leg received, and
what it sent: the bridged peer's audio or the prompt it played) to a `RecordingSink`. The asyncio
layer passes a `telephony.media.recording_thread.ThreadedRecording`, which batches the ticks on
the event loop and has a writer thread encode and write the WAV file
(`telephony.rtp.audio.RecordingWriter`), so the loop never waits for the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from telephony.media.tap import Pcm


class RecordingSink(Protocol):
    """Where a recording goes (`RecordingWriter` is one)."""

    @property
    def duration_seconds(self) -> float: ...

    def write(self, caller: Pcm | None, agent: Pcm | None) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class Recording:
    """An active recording of one leg."""

    recording_id: str
    sink: RecordingSink
    layout: str
    failed: bool = False

    def write(self, received: Pcm | None, sent: Pcm | None) -> bool:
        """Write one tick; False (and the recording marked failed) if the sink raised."""
        if self.failed:
            return False
        try:
            self.sink.write(received, sent)
        except (OSError, ValueError):
            self.failed = True
            return False
        return True
