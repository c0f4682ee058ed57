"""The catalogue of every domain event the server publishes, across all layers.

Each layer declares its events in its own ``events.py`` (events carry no wall-clock time; the bus
stamps it). This module gathers them so the external contract — one JSON Schema per event type
and version, and the reference in docs/events.md — is derived from the code in one place.
"""

from __future__ import annotations

import types
from pathlib import Path

import acd.events
import cxos.agent_calls
import ivr.events
import speech.events
import telephony.events
import telephony.media.events
import telephony.sip.registrar_events
from cxos.eventschema import EventCatalog, event_classes_in, reference_markdown

#: Where generated text starts in docs/events.md; everything after it is rewritten.
REFERENCE_MARKER = "<!-- generated event reference follows -->"


def event_modules() -> tuple[types.ModuleType, ...]:
    return (
        telephony.events,
        telephony.media.events,
        telephony.sip.registrar_events,
        ivr.events,
        acd.events,
        speech.events,
        cxos.agent_calls,
    )


def catalog() -> EventCatalog:
    """Every published event class, each with its schema."""
    return EventCatalog(event_classes_in(*event_modules()))


def documented_reference(document: str) -> str:
    """``document`` (docs/events.md) with its generated reference brought up to date."""
    head, marker, _ = document.partition(REFERENCE_MARKER)
    if not marker:
        raise ValueError(f"the document has no {REFERENCE_MARKER!r} line")
    return f"{head}{REFERENCE_MARKER}\n\n{reference_markdown(catalog())}\n"


def main() -> int:
    """Rewrite the event reference of docs/events.md (run from the repository root)."""
    path = Path("docs/events.md")
    path.write_text(documented_reference(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
