"""The relay's fast path (`MediaLeg.relay_next`) against the general receive-then-relay path.

Two engines built alike take the same datagrams; in one of them `relay_next` always declines,
so every packet takes the general path. What goes out and what each leg keeps (counters, RFC 3550
reception and sender statistics, rate limit, sequence numbering) must be the same, whatever the
stream does: gaps, duplicates, reordering, a new SSRC, other payload types, foreign sources,
floods, truncated or padded headers, holds.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.media.engine import EngineSettings, MediaEngine
from telephony.media.leg import MediaLeg
from telephony.media.settings import LegSettings
from telephony.rtp.g711 import Law, codec_for
from telephony.rtp.packet import build_header
from tests.media_engine.media_helpers import AGENT_ADDR, CALLER_ADDR

FOREIGN = ("203.0.113.9", 7000)

# One datagram: which leg it reaches, what it is. Most are what a settled stream carries (so
# the fast path is taken), the rest anything a network or a peer may send.
_ORDINARY = {
    "elapsed": 0.02,
    "sequence_step": 1,
    "ssrc": "same",
    "payload_type": "own",
    "marker": False,
    "first_octet": 0x80,
    "truncated": False,
    "foreign": False,
    "hold": False,
}
_ordinary = st.builds(lambda caller: {**_ORDINARY, "to_caller_leg": caller}, st.booleans())
_VARIATIONS = (
    *(("elapsed", value) for value in (0.0, 0.001, 0.5)),
    *(("sequence_step", value) for value in (2, 0, -1, -3, 3500, 40000)),
    *(("ssrc", value) for value in ("new", "stray")),
    *(("payload_type", value) for value in (0, 8, 13, 101, 96)),
    ("marker", True),
    *(("first_octet", value) for value in (0xA0, 0x90, 0x40)),
    ("truncated", True),
    ("foreign", True),
    ("hold", True),
)
# An ordinary datagram with one or two things changed.
_odd = st.builds(
    lambda caller, changes: {**_ORDINARY, "to_caller_leg": caller, **dict(changes)},
    st.booleans(),
    st.lists(st.sampled_from(_VARIATIONS), min_size=1, max_size=2),
)
_datagram = st.one_of(_ordinary, _ordinary, _ordinary, _odd)


class _Stream:
    """The numbering of one phone's stream."""

    def __init__(self, payload_type: int, ssrc: int, sequence: int, timestamp: int) -> None:
        self.payload_type = payload_type
        self.ssrc, self.sequence, self.timestamp = ssrc, sequence, timestamp

    def datagram(self, step: dict[str, Any]) -> bytes:
        if step["ssrc"] == "new":  # the phone restarts its stream
            self.ssrc = (self.ssrc * 7 + 1) & 0xFFFFFFFF
        ssrc = self.ssrc ^ 0x5A5A if step["ssrc"] == "stray" else self.ssrc
        self.sequence = (self.sequence + step["sequence_step"]) & 0xFFFF
        self.timestamp = (self.timestamp + 160 * step["sequence_step"]) & 0xFFFFFFFF
        payload_type = self.payload_type if step["payload_type"] == "own" else step["payload_type"]
        header = bytearray(
            build_header(payload_type, step["marker"], self.sequence, self.timestamp, ssrc)
        )
        header[0] = step["first_octet"]
        if step["truncated"]:
            return bytes(header[:9])
        body = bytes(range(160))
        if step["first_octet"] & 0x20:  # padding: the last octet counts it
            body += b"\x00\x00\x02"
        return bytes(header) + body


def _engine(fast: bool) -> MediaEngine:
    engine = MediaEngine(
        origin=0.0,
        settings=EngineSettings(leg=LegSettings(max_packet_rate=60.0, packet_burst=4.0)),
        rng=random.Random(7),
    )
    engine.open_leg(
        "caller", law=Law.ULAW, payload_type=0, event_payload_type=101, remote=CALLER_ADDR, now=0
    )
    engine.open_leg(
        "agent", law=Law.ALAW, payload_type=8, event_payload_type=101, remote=AGENT_ADDR, now=0
    )
    engine.bridge("caller", "agent")
    if not fast:
        for call_id in ("caller", "agent"):
            engine.leg(call_id).__class__ = _GeneralPathOnly
    return engine


class _GeneralPathOnly(MediaLeg):
    """A leg whose fast path declines every datagram."""

    __slots__ = ()

    def relay_next(self, *_: Any) -> bytes | None:
        return None


def _fields(state: object) -> dict[str, Any]:
    """Every slot of ``state``, its class's and its bases'."""
    return {
        name: getattr(state, name)
        for klass in type(state).__mro__
        for name in getattr(klass, "__slots__", ())
    }


def _state(leg: MediaLeg) -> dict[str, Any]:
    """What a leg keeps between packets (the statistics objects compared by their fields)."""
    kept = {
        name: value
        for name, value in _fields(leg).items()
        if name not in ("stats", "sender", "dtmf", "settings", "_events")
    }
    kept["stats"] = _fields(leg.stats)
    kept["sender"] = _fields(leg.sender)
    return kept


@settings(max_examples=150, deadline=None)
@given(st.lists(_datagram, min_size=1, max_size=80))
def test_relay_fast_path_sends_and_keeps_what_the_general_path_does(
    steps: list[dict[str, Any]],
) -> None:
    fast, general = _engine(fast=True), _engine(fast=False)
    streams = {
        engine: {
            "caller": _Stream(0, 0x1111, 65500, 0xFFFFF000),
            "agent": _Stream(8, 0x2222, 100, 5000),
        }
        for engine in (fast, general)
    }
    now = 0.0
    for step in steps:
        now += step["elapsed"]
        call_id = "caller" if step["to_caller_leg"] else "agent"
        outputs = []
        for engine in (fast, general):
            if step["hold"]:
                if engine.is_held(call_id):
                    engine.resume(call_id)
                else:
                    engine.hold(call_id, ())
            source = (
                FOREIGN if step["foreign"] else (CALLER_ADDR if call_id == "caller" else AGENT_ADDR)
            )
            datagram = streams[engine][call_id].datagram(step)
            outputs.append((engine.receive(call_id, datagram, source, now), engine.take_events()))
        assert outputs[0] == outputs[1]
        for call_id in ("caller", "agent"):
            assert _state(fast.leg(call_id)) == _state(general.leg(call_id))


def test_relay_fast_path_carries_a_settled_stream() -> None:
    """A plain bridged stream goes out through the fast path, restamped and transcoded."""
    engine = _engine(fast=True)
    taken = []

    class Counting(MediaLeg):
        __slots__ = ()

        def relay_next(self, *arguments: Any) -> bytes | None:
            packet = super().relay_next(*arguments)
            taken.append(packet is not None)
            return packet

    engine.leg("caller").__class__ = Counting
    stream = _Stream(0, 0x1111, 10, 1000)
    step = _ORDINARY
    sent = [
        engine.receive("caller", stream.datagram(step), CALLER_ADDR, n * 0.02) for n in range(10)
    ]
    # The first packets settle the stream (lock, SSRC probation, relay mapping): general path.
    assert taken[-5:] == [True] * 5
    assert all(transmit is not None for transmit in sent[2:])
    call_id, packet, destination = sent[-1]  # type: ignore[misc]
    assert (call_id, destination) == ("agent", AGENT_ADDR)
    assert packet[1] & 0x7F == 8  # the agent's payload type (A-law)
    agent = engine.leg("agent")
    assert int.from_bytes(packet[8:12], "big") == agent.ssrc
    table = codec_for(Law.ULAW).transcode_table(Law.ALAW)
    assert table is not None and packet[12:] == bytes(range(160)).translate(table)
