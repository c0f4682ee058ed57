"""The published event types: unique names, and docs/events.md documents exactly these."""

from __future__ import annotations

from pathlib import Path

from cxos.events import catalog, documented_reference

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_every_event_type_and_version_is_declared_once() -> None:
    classes = catalog().classes()
    keys = [(c.TYPE, c.VERSION) for c in classes]
    assert len(keys) == len(set(keys))
    # One from each layer, so a layer whose events module is dropped from the catalogue shows up.
    prefixes = {t.split(".", 1)[0] for t, _ in keys}
    assert {"call", "queue", "agent", "ivr", "speech", "registration", "media"} <= prefixes


def test_docs_events_md_documents_every_event_type() -> None:
    current = DOCS.read_text(encoding="utf-8")
    assert current == documented_reference(current), (
        "docs/events.md is out of date: run `python -m cxos.events` from the repository root"
    )
