"""Recording file names: one file per recording, never one over another."""

from __future__ import annotations

from pathlib import Path

from cxos.recordings import CallRecordings

NOON = 1_795_780_800.0  # 2026-11-27 12:00:00 UTC


def test_recordings_are_named_after_the_call_and_the_second_they_start(tmp_path: Path) -> None:
    recordings = CallRecordings(tmp_path, clock=lambda: NOON + 0.5)
    assert recordings.path_for("a/b@host") == tmp_path / "a_b_host-20261127T120000Z.wav"


def test_a_second_recording_of_a_call_within_the_same_second_gets_its_own_file(
    tmp_path: Path,
) -> None:
    recordings = CallRecordings(tmp_path, clock=lambda: NOON)
    names = []
    for _ in range(3):
        path = recordings.path_for("c1")
        path.write_bytes(b"RIFF")  # the recording's writer creates it
        names.append(path.name)
    assert names == [
        "c1-20261127T120000Z.wav",
        "c1-20261127T120000Z-2.wav",
        "c1-20261127T120000Z-3.wav",
    ]
