"""The events of calls in progress, kept by the writer so their CDRs need no read-back (sans-IO).

Rebuilding a CDR from the database means reading the call's stored events back and decoding
them. The writer already holds every event it stores, so for a call whose whole history it has
stored itself it folds the CDR from memory instead. A call is known only when this process
stored its ``call.started`` (or ``call.agent_started``) as the call's first event; it is
forgotten when its ``call.ended`` is stored (late amendments then read back), when any of its
events comes from a spool replay or is not newly inserted, and when the bounds are exceeded.
A forgotten or unknown call is folded from the database, so the CDR is the same either way.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cxos.storage.cdr import CallDetailRecord, fold_call

Envelope = Mapping[str, Any]

_STARTS = frozenset({"call.started", "call.agent_started"})
_ENDS = frozenset({"call.ended"})


@dataclass(frozen=True, slots=True, kw_only=True)
class CdrCacheOptions:
    max_calls: int = 10_000
    """Calls kept at once; the oldest is forgotten beyond this."""
    max_events: int = 200
    """Events kept for one call; a longer call is forgotten and read back."""


class CallEventCache:
    """Per call in progress, its stored envelopes in publication order."""

    def __init__(self, options: CdrCacheOptions | None = None) -> None:
        self._options = options or CdrCacheOptions()
        self._calls: dict[str, list[Envelope]] = {}
        self._forgotten: set[str] = set()
        """Calls forgotten while rows were being stored: a spilled event may be missing."""
        self._strays: dict[str, None] = {}
        """Recent calls with events stored while unknown: a later start is not their first."""
        self._unknown: set[str] = set()
        """Calls of the rows last staged that are not known."""

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._calls

    def staged(
        self, rows: Sequence[tuple[str | None, str, str | Envelope]]
    ) -> dict[str, list[Envelope]]:
        """The histories ``rows`` (``(call_id, type, envelope)`` in publication order, all
        newly stored; the envelope as JSON or as its decoded dict) would give, for the calls
        that would be known afterwards.

        Nothing changes until ``commit``: the transaction storing the rows may still fail.
        """
        self._forgotten.clear()
        staged: dict[str, list[Envelope]] = {}
        unknown = self._unknown
        unknown.clear()
        for call_id, event_type, text in rows:
            if call_id is None or call_id in unknown:
                continue
            history = staged.get(call_id)
            if history is None:
                known = self._calls.get(call_id)
                if known is not None:
                    history = staged[call_id] = list(known)
                elif event_type in _STARTS and call_id not in self._strays:
                    history = staged[call_id] = []
                else:
                    unknown.add(call_id)
                    continue
            history.append(json.loads(text) if isinstance(text, str) else text)
        return staged

    def commit(self, staged: Mapping[str, list[Envelope]]) -> None:
        """The rows behind ``staged`` are stored: keep open calls, forget ended ones."""
        options = self._options
        for call_id, history in staged.items():
            self._calls.pop(call_id, None)
            if call_id in self._forgotten or len(history) > options.max_events:
                continue
            if any(envelope.get("type") in _ENDS for envelope in history):
                continue
            self._calls[call_id] = history
        while len(self._calls) > options.max_calls:
            del self._calls[next(iter(self._calls))]
        self._stray(self._unknown)
        self._unknown.clear()
        self._forgotten.clear()

    def _stray(self, call_ids: Iterable[str]) -> None:
        """Events of these calls were stored unknown: never take a later start as their first."""
        for call_id in call_ids:
            self._strays.pop(call_id, None)
            self._strays[call_id] = None
        while len(self._strays) > self._options.max_calls:
            del self._strays[next(iter(self._strays))]

    def forget(self, call_ids: Collection[str | None]) -> None:
        """These calls' stored histories are no longer known to be complete here."""
        for call_id in call_ids:
            if call_id is not None:
                self._calls.pop(call_id, None)
                self._forgotten.add(call_id)
                self._stray([call_id])


def fold_staged(
    staged: Mapping[str, Sequence[Envelope]], call_ids: Iterable[str]
) -> tuple[list[CallDetailRecord], set[str]]:
    """CDRs of those ``call_ids`` whose history is staged, and the ids left to read back."""
    records: list[CallDetailRecord] = []
    missing: set[str] = set()
    for call_id in call_ids:
        history = staged.get(call_id)
        record = fold_call(call_id, history) if history is not None else None
        if record is None:
            missing.add(call_id)
        else:
            records.append(record)
    return records, missing
