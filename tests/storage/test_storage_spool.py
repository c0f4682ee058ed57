"""The spool: append-only runs named in publication order, bounded, one process at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxos.bus import EventBus
from cxos.storage.spool import Spool, SpoolError, SpoolFullError
from tests.storage.storage_scenarios import SettableClock, numbered_events


def ids(count: int) -> list[str]:
    bus = EventBus(clock=SettableClock())
    return [str(bus.publish(event).id) for event in numbered_events(count)]


def test_runs_hold_lines_in_order_and_sort_in_publication_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    event_ids = ids(6)
    for event_id in event_ids[:3]:
        spool.append(event_id, f'{{"id":"{event_id}"}}'.encode())
    assert spool.sealed_runs() == []  # the active run is not offered for replay
    assert spool.active_records == 3
    assert spool.seal() == tmp_path / f"{event_ids[0]}.jsonl"
    assert spool.seal() is None
    # A run written later holding older events (what close() does) still sorts first.
    spool.write_run([(i, i.encode()) for i in event_ids[3:]])

    runs = spool.sealed_runs()
    assert [run.name for run in runs] == [f"{event_ids[0]}.jsonl", f"{event_ids[3]}.jsonl"]
    assert list(Spool.read_run(runs[0])) == [f'{{"id":"{i}"}}'.encode() for i in event_ids[:3]]
    assert list(Spool.read_run(runs[1])) == [i.encode() for i in event_ids[3:]]
    size = spool.bytes_used
    spool.remove_run(runs[0])
    assert spool.bytes_used == size - sum(len(f'{{"id":"{i}"}}\n') for i in event_ids[:3])
    spool.close()


def test_runs_left_by_a_previous_process_are_sealed_and_counted(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.open()
    (event_id,) = ids(1)
    first.append(event_id, b"{}")
    first.close()

    second = Spool(tmp_path)
    second.open()
    assert [run.name for run in second.sealed_runs()] == [f"{event_id}.jsonl"]
    assert second.bytes_used == 3
    second.close()


def test_the_spool_is_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=20)
    spool.open()
    first, second = ids(2)
    spool.append(first, b"0123456789")
    with pytest.raises(SpoolFullError, match="is full"):
        spool.append(second, b"0123456789")
    assert spool.active_records == 1
    spool.close()


def test_two_processes_cannot_share_a_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.open()
    with pytest.raises(SpoolError, match="in use by another process"):
        Spool(tmp_path).open()
    first.close()
    again = Spool(tmp_path)
    again.open()
    again.close()
