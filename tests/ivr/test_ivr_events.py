"""IVR events follow the event convention: they render as envelopes that match their schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

import ivr.events
from config.ivr import load_ivr_trees
from config.loader import default_config_dir
from cxos.bus import EventBus
from cxos.envelope import to_envelope, to_json
from cxos.eventschema import EventCatalog, event_classes_in
from ivr.events import IvrEntered, IvrEvent, IvrExited, IvrInput, IvrVoicemailRecorded
from ivr.walk import Walker


def test_a_walk_publishes_valid_envelopes() -> None:
    trees = load_ivr_trees(
        default_config_dir() / "ivr",
        queues=frozenset({"sales", "support", "billing"}),
        skills=frozenset(),
    )
    walker = Walker(
        trees["main"],
        started_at=datetime(2026, 11, 25, 3, 0, tzinfo=UTC),  # 22:00 in New York: closed
        call_id="a84b4c76e66710@pbx.example.com",
    )
    walker.start()
    walker.answer_all(["5", "message"])
    walker.finish_silently()
    events = [o for o in walker.outputs if type(o).__module__ == "ivr.events"]
    assert [type(e) for e in events] == [
        IvrEntered,
        IvrInput,
        IvrInput,
        IvrVoicemailRecorded,
        IvrExited,
    ]
    catalog = EventCatalog(event_classes_in(ivr.events))
    bus = EventBus(clock=lambda: 1_764_000_000.0)
    for event in events:
        assert isinstance(event, IvrEvent)
        published = bus.publish(event)
        envelope = json.loads(to_json(published, node="node-a"))
        assert envelope == to_envelope(published, node="node-a")
        assert envelope["call_id"] == "a84b4c76e66710@pbx.example.com"
        catalog.validate(envelope)


def test_events_refuse_impossible_values() -> None:
    with pytest.raises(ValueError, match="digits go with kind dtmf"):
        IvrInput(call_id="c", tree_id="t", node_id="n", kind="dtmf", outcome="invalid", attempt=1)
    with pytest.raises(ValueError, match=r"confidence must be within 0\.\.1"):
        IvrInput(
            call_id="c",
            tree_id="t",
            node_id="n",
            kind="speech",
            speech="yes",
            confidence=1.5,
            outcome="accepted",
            attempt=1,
        )
    with pytest.raises(ValueError, match="seconds_in_ivr must be >= 0"):
        IvrExited(
            call_id="c",
            tree_id="t",
            node_id="n",
            destination="hangup",
            target="normal",
            route=("n",),
            seconds_in_ivr=-1.0,
        )
