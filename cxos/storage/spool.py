"""A local append-only spool for events the database could not take in time.

The spool is a directory of *run* files. Each run holds a contiguous stretch of events in
publication order, one compact JSON envelope per line, and is named after the UUIDv7 id of its
first event, so sorting the names sorts the runs in publication order (RFC 9562 §5.7: the
leading 48 bits are the Unix time in milliseconds).

- ``append`` writes to the *active* run with one ``write(2)`` per event: once it returns, the
  event survives the process being killed (not a power cut: the file is synced when sealed).
- ``seal`` closes the active run; the next ``append`` starts a new one. Sealed runs are
  replayed oldest first, then removed.
- The spool is bounded by ``max_bytes``; past it ``append`` raises ``SpoolFullError`` and the
  event is counted as lost by the caller.
- Rows the database refuses for their content (not for an outage) are set aside in
  ``rejected.jsonl`` with the reason, never silently dropped.
- A lock file stops two processes from sharing one spool directory.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

_RUN_NAME = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(-\d+)?\.jsonl$"
)
REJECTED_FILE = "rejected.jsonl"


class SpoolError(RuntimeError):
    """The spool directory cannot be used; the message names it and why."""


class SpoolFullError(SpoolError):
    """Appending would take the spool past its size limit."""


class Spool:
    """Run files in one directory; use from the event loop's thread only."""

    def __init__(self, directory: Path, *, max_bytes: int = 1 << 30) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock: IO[bytes] | None = None
        self._active_fd: int | None = None
        self._active_path: Path | None = None
        self._active_records = 0
        self._bytes = 0

    # Life cycle --------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory, take its lock; runs left by an earlier process count as sealed."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = open(self.directory / ".lock", "a+b")  # noqa: SIM115 - held while open
        except OSError as exc:
            raise SpoolError(f"cannot use spool directory {self.directory}: {exc}") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise SpoolError(f"spool {self.directory} is in use by another process") from None
        self._lock = handle
        self._bytes = sum(path.stat().st_size for path in self.sealed_runs())

    def close(self) -> None:
        self.seal()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # Writing -----------------------------------------------------------------------------------

    @property
    def bytes_used(self) -> int:
        return self._bytes

    @property
    def active_records(self) -> int:
        """Events in the active (unsealed) run."""
        return self._active_records

    def append(self, first_id: str, line: bytes) -> None:
        """Add one envelope (JSON without newline) to the active run, starting one if needed.

        ``first_id`` is the event's id; it names the run when the event is the run's first.
        """
        record = line + b"\n"
        self._reserve(len(record))
        if self._active_fd is None:
            self._active_fd, self._active_path = self._create_run(first_id)
        _write_all(self._active_fd, record)
        self._bytes += len(record)
        self._active_records += 1

    def write_run(self, records: Sequence[tuple[str, bytes]]) -> Path | None:
        """Store ``records`` (id, envelope) as one complete, synced run of their own."""
        if not records:
            return None
        data = b"".join(line + b"\n" for _, line in records)
        self._reserve(len(data))
        fd, path = self._create_run(records[0][0])
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._bytes += len(data)
        return path

    def seal(self, *, sync: bool = True) -> Path | None:
        """Close the active run and return it (None if there was none).

        With ``sync`` the run is flushed to disk first; without, the caller does it with
        ``sync_file`` off the event loop (a flush can take a disk's latency).
        """
        fd, path = self._active_fd, self._active_path
        if fd is None:
            return None
        try:
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
            self._active_fd = None
            self._active_path = None
            self._active_records = 0
        return path

    @staticmethod
    def sync_file(path: Path) -> None:
        """Flush a closed run to disk (blocking)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return  # already replayed and removed
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def set_aside(self, line: bytes, reason: str) -> None:
        """Keep a row the database refused for its content, with the reason, for an operator."""
        entry = json.dumps({"reason": reason, "envelope": line.decode(errors="replace")})
        with open(self.directory / REJECTED_FILE, "ab") as handle:
            handle.write(entry.encode() + b"\n")
        logger.error("event set aside in %s: %s", self.directory / REJECTED_FILE, reason)

    # Reading -----------------------------------------------------------------------------------

    def sealed_runs(self) -> list[Path]:
        """Runs waiting to be replayed, oldest first (never the active one)."""
        runs = [
            path
            for path in self.directory.iterdir()
            if _RUN_NAME.match(path.name) and path != self._active_path
        ]
        return sorted(runs, key=lambda path: path.name)

    def has_sealed(self) -> bool:
        return bool(self.sealed_runs())

    @staticmethod
    def read_run(path: Path) -> Iterator[bytes]:
        """The envelopes of a run, in order, without newlines (blank lines skipped)."""
        with open(path, "rb") as handle:
            for raw in handle:
                line = raw.rstrip(b"\n")
                if line:
                    yield line

    def remove_run(self, path: Path) -> None:
        """Delete a run once every event in it is stored."""
        size = path.stat().st_size
        path.unlink()
        self._bytes = max(0, self._bytes - size)

    # Internals ---------------------------------------------------------------------------------

    def _reserve(self, size: int) -> None:
        if self._lock is None:
            raise SpoolError(f"spool {self.directory} is not open")
        if self._bytes + size > self.max_bytes:
            raise SpoolFullError(
                f"spool {self.directory} is full ({self._bytes} of {self.max_bytes} bytes)"
            )

    def _create_run(self, first_id: str) -> tuple[int, Path]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        base = first_id.lower()
        for attempt in range(100):
            name = f"{base}.jsonl" if attempt == 0 else f"{base}-{attempt}.jsonl"
            path = self.directory / name
            try:
                return os.open(path, flags, 0o600), path
            except FileExistsError:
                continue
        raise SpoolError(f"cannot create a run file for {first_id} in {self.directory}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
