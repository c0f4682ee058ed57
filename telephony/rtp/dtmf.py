"""RFC 4733 telephone-events: the payload, a receiver that reports each key once, a sender.

Sans-IO: the receiver is fed the RTP timestamp, marker bit and payload of every
telephone-event packet with the time it arrived, and exposes the deadline after
which a key whose end packets were all lost is declared over.  Sequence numbers,
SSRCs and the RTP header belong to the packet layer; this module sees payloads.

How a key press travels (RFC 4733 §2.5):

* every packet of one event carries the RTP timestamp of the moment the key went
  down; a new timestamp means a new event (§2.5.1.2), the marker bit flags the
  first packet (§2.5.1.2) but that packet may be lost;
* the duration field grows with each update and the last packet carries the E
  bit; that final packet is sent three times (§2.5.1.4), so duplicates are normal;
* an event longer than the 16-bit duration field is cut into segments, each a
  new timestamp exactly 0xFFFF later, without marker, without E bit on the
  segment boundary (§2.5.1.3); the receiver glues them back (§2.5.2.3).
"""

from __future__ import annotations

import enum
import logging
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Final, Literal

__all__ = [
    "DTMF_KEYS",
    "MAX_DURATION",
    "DtmfDigit",
    "DtmfKeyDown",
    "DtmfOutput",
    "DtmfReceiver",
    "InvalidTransitionError",
    "ReceiverState",
    "TelephoneEvent",
    "TelephoneEventError",
    "TelephoneEventPacket",
    "digit_for_event",
    "event_for_digit",
    "telephone_event_packets",
]

logger = logging.getLogger(__name__)

#: Keys for event codes 0..16 (RFC 4733 §3.2): digits, ``*`` = 10, ``#`` = 11,
#: ``A``..``D`` = 12..15 and hook flash = 16, written ``!`` as in SIP INFO dtmf-relay.
DTMF_KEYS: Final = "0123456789*#ABCD!"
#: Largest value of the 16-bit duration field (RFC 4733 §2.3.5).
MAX_DURATION: Final = 0xFFFF
#: Largest volume: the field holds the power level in -dBm0, 0..63 (RFC 4733 §2.3.4).
MAX_VOLUME: Final = 63

_PAYLOAD: Final = struct.Struct("!BBH")
_END_BIT: Final = 0x80
_RESERVED_BIT: Final = 0x40
_TIMESTAMP_MODULUS: Final = 1 << 32
#: The final packet of an event or segment goes out three times (RFC 4733 §2.5.1.4).
_FINAL_REPEATS: Final = 3


class TelephoneEventError(ValueError):
    """A telephone-event payload that cannot be parsed, with the reason why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def event_for_digit(digit: str) -> int:
    """The RFC 4733 §3.2 event code of a key: ``0``-``9``, ``*``, ``#``, ``A``-``D`` or ``!``."""
    index = DTMF_KEYS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise ValueError(f"{digit!r} is not a DTMF key (expected one of {DTMF_KEYS})")
    return index


def digit_for_event(event: int) -> str | None:
    """The key of a DTMF event code, or None for other telephone events (RFC 4734)."""
    return DTMF_KEYS[event] if 0 <= event < len(DTMF_KEYS) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 §2.3): 4 octets.

    ``duration`` is in RTP timestamp units since the event (segment) began.
    """

    event: int
    end: bool
    volume: int
    duration: int

    SIZE: ClassVar[int] = _PAYLOAD.size

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise ValueError(f"event code {self.event} does not fit 8 bits")
        if not 0 <= self.volume <= MAX_VOLUME:
            raise ValueError(f"volume {self.volume} is outside 0..{MAX_VOLUME} (-dBm0)")
        if not 0 <= self.duration <= MAX_DURATION:
            raise ValueError(f"duration {self.duration} does not fit 16 bits")

    @property
    def digit(self) -> str | None:
        """The key this event stands for, or None when it is not a DTMF event."""
        return digit_for_event(self.event)

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Parse a payload; raise :class:`TelephoneEventError` saying what is wrong."""
        if len(payload) != cls.SIZE:
            raise TelephoneEventError(
                f"telephone-event payload is {len(payload)} bytes, expected {cls.SIZE}"
            )
        event, flags, duration = _PAYLOAD.unpack(payload)
        # The R bit is reserved: senders set it to 0, receivers ignore it (§2.3.3).
        return cls(
            event=event,
            end=bool(flags & _END_BIT),
            volume=flags & MAX_VOLUME,
            duration=duration,
        )

    def to_bytes(self) -> bytes:
        """Serialize to the 4-octet payload (R bit zero)."""
        flags = (_END_BIT if self.end else 0) | self.volume
        return _PAYLOAD.pack(self.event, flags, self.duration)


# ---------------------------------------------------------------------------------------
# Receiver
# ---------------------------------------------------------------------------------------

EndedBy = Literal["end_bit", "timeout", "new_event"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfKeyDown:
    """A key went down: the first packet seen of a new event (lets a prompt stop at once)."""

    digit: str
    rtp_timestamp: int

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit not in DTMF_KEYS:
            raise ValueError(f"{self.digit!r} is not a DTMF key")


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfDigit:
    """A key press, reported exactly once, when it ended.

    ``ended_by`` says how the end was known: the E bit, silence past the timeout
    (every end packet lost), or a newer event arriving first.
    """

    digit: str
    duration_ms: int
    rtp_timestamp: int
    ended_by: EndedBy

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit not in DTMF_KEYS:
            raise ValueError(f"{self.digit!r} is not a DTMF key")
        if self.duration_ms < 0:
            raise ValueError(f"negative duration {self.duration_ms} ms")
        if self.ended_by not in ("end_bit", "timeout", "new_event"):
            raise ValueError(f"unknown end reason {self.ended_by!r}")


DtmfOutput = DtmfKeyDown | DtmfDigit


class ReceiverState(enum.Enum):
    """Where the receiver stands with respect to the latest event."""

    IDLE = "idle"  # no event seen yet
    ACTIVE = "active"  # an event is in progress
    ENDED = "ended"  # the latest event was reported; its stragglers are dropped


class _Input(enum.Enum):
    START = "start"  # first packet of a newer event
    START_ENDED = "start_ended"  # first packet seen of a newer event already carries E
    UPDATE = "update"  # same event, no E bit
    END = "end"  # same event, E bit
    SEGMENT = "segment"  # next segment of a long event (§2.5.2.3)
    STALE = "stale"  # older than the latest event, or inconsistent with it
    TIMEOUT = "timeout"  # no packet for the current event within end_timeout


class _Action(enum.Enum):
    BEGIN = "begin"
    BEGIN_ENDED = "begin_ended"
    SUPERSEDE_BEGIN = "supersede_begin"
    SUPERSEDE_BEGIN_ENDED = "supersede_begin_ended"
    EXTEND = "extend"
    CONTINUE_SEGMENT = "continue_segment"
    FINISH = "finish"
    EXPIRE = "expire"
    DROP = "drop"


_S, _I, _A = ReceiverState, _Input, _Action
#: Every transition the receiver allows; anything else is a bug in the classifier.
_TRANSITIONS: Final[Mapping[tuple[ReceiverState, _Input], tuple[_Action, ReceiverState]]] = (
    MappingProxyType(
        {
            (_S.IDLE, _I.START): (_A.BEGIN, _S.ACTIVE),
            (_S.IDLE, _I.START_ENDED): (_A.BEGIN_ENDED, _S.ENDED),
            (_S.ACTIVE, _I.START): (_A.SUPERSEDE_BEGIN, _S.ACTIVE),
            (_S.ACTIVE, _I.START_ENDED): (_A.SUPERSEDE_BEGIN_ENDED, _S.ENDED),
            (_S.ACTIVE, _I.UPDATE): (_A.EXTEND, _S.ACTIVE),
            (_S.ACTIVE, _I.SEGMENT): (_A.CONTINUE_SEGMENT, _S.ACTIVE),
            (_S.ACTIVE, _I.END): (_A.FINISH, _S.ENDED),
            (_S.ACTIVE, _I.TIMEOUT): (_A.EXPIRE, _S.ENDED),
            (_S.ACTIVE, _I.STALE): (_A.DROP, _S.ACTIVE),
            (_S.ENDED, _I.START): (_A.BEGIN, _S.ACTIVE),
            (_S.ENDED, _I.START_ENDED): (_A.BEGIN_ENDED, _S.ENDED),
            (_S.ENDED, _I.UPDATE): (_A.DROP, _S.ENDED),  # late update of a reported event
            (_S.ENDED, _I.END): (_A.DROP, _S.ENDED),  # retransmitted end (§2.5.1.4)
            (_S.ENDED, _I.STALE): (_A.DROP, _S.ENDED),
        }
    )
)


class InvalidTransitionError(RuntimeError):
    """The receiver was driven into a transition its table does not have."""


class DtmfReceiver:
    """Turns a stream of telephone-event payloads into key presses, each reported once.

    ``clock_rate`` is the telephone-event clock from SDP (8000 unless negotiated
    otherwise).  ``end_timeout`` (seconds) is how long after the last packet of an
    event without E bit the event is taken as ended: a sender updates at least every
    50 ms (§2.5.1.2), so a quarter second of silence means its end packets were lost.
    """

    # Per-leg state touched by every packet or frame of a decoding leg: slots, as MediaLeg's.
    __slots__ = (
        "_clock_rate",
        "_dropped",
        "_duration",
        "_earlier_units",
        "_end_timeout",
        "_event",
        "_first_timestamp",
        "_last_arrival",
        "_segment_tolerance",
        "_state",
        "_timestamp",
    )

    def __init__(self, *, clock_rate: int = 8000, end_timeout: float = 0.25) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate must be positive, got {clock_rate}")
        if end_timeout <= 0:
            raise ValueError(f"end timeout must be positive, got {end_timeout}")
        self._clock_rate = clock_rate
        self._end_timeout = end_timeout
        self._segment_tolerance = int(end_timeout * clock_rate)
        self._state = ReceiverState.IDLE
        self._dropped: Counter[str] = Counter()
        # The latest event: its code, first timestamp, the timestamp of the segment in
        # progress, units of earlier segments and of duration-field wraps, the largest
        # duration seen in the current segment, and when its last packet arrived.
        self._event = 0
        self._first_timestamp = 0
        self._timestamp = 0
        self._earlier_units = 0
        self._duration = 0
        self._last_arrival = 0.0

    @property
    def state(self) -> ReceiverState:
        """The receiver's state (for tests and diagnostics)."""
        return self._state

    @property
    def dropped(self) -> Mapping[str, int]:
        """How many packets were dropped, by reason."""
        return MappingProxyType(self._dropped)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must run next, or None when no event is in progress."""
        if self._state is ReceiverState.ACTIVE:
            return self._last_arrival + self._end_timeout
        return None

    def handle_timer(self, now: float) -> tuple[DtmfOutput, ...]:
        """End an event whose end packets never came, once its deadline has passed."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return ()
        return self._apply(_Input.TIMEOUT, None, now)

    def receive(
        self, timestamp: int, marker: bool, payload: bytes, now: float
    ) -> tuple[DtmfOutput, ...]:
        """Handle one telephone-event packet; return the key-downs and digits it completes.

        A malformed or non-DTMF payload is dropped and counted in :attr:`dropped`,
        never raised: it came from the network.
        """
        try:
            packet = TelephoneEvent.parse(payload)
        except TelephoneEventError as error:
            return self._drop(f"malformed: {error.reason}")
        if packet.digit is None:
            return self._drop(f"event {packet.event} is not a DTMF key")
        timestamp %= _TIMESTAMP_MODULUS
        outputs: tuple[DtmfOutput, ...] = ()
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            # The timer should have fired already; honour it before this packet.
            outputs = self._apply(_Input.TIMEOUT, None, now)
        kind, reason = self._classify(timestamp, marker, packet)
        outputs += self._apply(kind, (timestamp, packet), now)
        if kind is _Input.STALE:
            self._drop(reason)
        return outputs

    # -- classification -------------------------------------------------------------

    def _classify(self, timestamp: int, marker: bool, packet: TelephoneEvent) -> tuple[_Input, str]:
        new_kind = _Input.START_ENDED if packet.end else _Input.START
        if self._state is ReceiverState.IDLE:
            return new_kind, ""
        # Serial-number comparison of 32-bit timestamps (RFC 3550 §5.1 wraps them).
        ahead = (timestamp - self._timestamp) % _TIMESTAMP_MODULUS
        if ahead == 0:
            if packet.event != self._event:
                return _Input.STALE, "event code changed within one event"
            return (_Input.END if packet.end else _Input.UPDATE), ""
        if ahead >= _TIMESTAMP_MODULUS // 2:
            return _Input.STALE, "older than the latest event"
        if (
            self._state is ReceiverState.ACTIVE
            and not marker
            and packet.event == self._event
            and MAX_DURATION - self._segment_tolerance <= ahead <= MAX_DURATION
        ):
            return _Input.SEGMENT, ""
        return new_kind, ""

    # -- transitions ----------------------------------------------------------------

    def _apply(
        self, kind: _Input, packet: tuple[int, TelephoneEvent] | None, now: float
    ) -> tuple[DtmfOutput, ...]:
        try:
            action, target = _TRANSITIONS[(self._state, kind)]
        except KeyError:
            raise InvalidTransitionError(
                f"no transition from {self._state.name} on {kind.name}"
            ) from None
        outputs: tuple[DtmfOutput, ...] = ()
        match action:
            case _Action.EXPIRE:
                outputs = (self._digit("timeout"),)
            case _Action.BEGIN | _Action.BEGIN_ENDED:
                outputs = self._begin(packet, now)
            case _Action.SUPERSEDE_BEGIN | _Action.SUPERSEDE_BEGIN_ENDED:
                outputs = (self._digit("new_event"), *self._begin(packet, now))
            case _Action.EXTEND | _Action.FINISH:
                assert packet is not None
                self._extend(packet[1].duration, now)
                if action is _Action.FINISH:
                    outputs = (self._digit("end_bit"),)
            case _Action.CONTINUE_SEGMENT:
                assert packet is not None
                timestamp, event = packet
                self._earlier_units += (timestamp - self._timestamp) % _TIMESTAMP_MODULUS
                self._timestamp = timestamp
                self._duration = event.duration
                self._last_arrival = now
            case _Action.DROP:
                if kind is not _Input.STALE:  # stale packets are counted by the caller
                    self._drop(f"{kind.value} after the event was reported")
        self._state = target
        return outputs

    def _begin(
        self, packet: tuple[int, TelephoneEvent] | None, now: float
    ) -> tuple[DtmfOutput, ...]:
        assert packet is not None
        timestamp, event = packet
        self._event = event.event
        self._first_timestamp = timestamp
        self._timestamp = timestamp
        self._earlier_units = 0
        self._duration = event.duration
        self._last_arrival = now
        key_down = DtmfKeyDown(digit=DTMF_KEYS[event.event], rtp_timestamp=timestamp)
        if event.end:
            return (key_down, self._digit("end_bit"))
        return (key_down,)

    def _extend(self, duration: int, now: float) -> None:
        self._last_arrival = now
        if duration >= self._duration:
            self._duration = duration
        elif self._duration - duration > MAX_DURATION // 2:
            # The duration field wrapped in place: a sender that did not segment the
            # event (§2.5.1.3 asks it to).  Count the lost 2^16 and go on.
            self._earlier_units += MAX_DURATION + 1
            self._duration = duration
        # else: a reordered, older update; the larger duration stands.

    def _digit(self, ended_by: EndedBy) -> DtmfDigit:
        units = self._earlier_units + self._duration
        return DtmfDigit(
            digit=DTMF_KEYS[self._event],
            duration_ms=round(units * 1000 / self._clock_rate),
            rtp_timestamp=self._first_timestamp,
            ended_by=ended_by,
        )

    def _drop(self, reason: str) -> tuple[DtmfOutput, ...]:
        self._dropped[reason] += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("telephone-event dropped: %s", reason)
        return ()


# ---------------------------------------------------------------------------------------
# Sender
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEventPacket:
    """One packet to send for a key press.

    The RTP timestamp is the key-down timestamp plus ``timestamp_offset`` (non-zero
    only for the later segments of a long event, §2.5.1.3).  ``send_offset`` is
    when to send it, in clock units after the key went down: one packet per media
    tick, in step with the audio packets it replaces.
    """

    marker: bool
    timestamp_offset: int
    send_offset: int
    payload: bytes


def telephone_event_packets(
    digit: str,
    *,
    duration_ms: int = 100,
    volume: int = 10,
    clock_rate: int = 8000,
    ptime_ms: int = 20,
) -> tuple[TelephoneEventPacket, ...]:
    """The packets that carry one key press of ``duration_ms`` (RFC 4733 §2.5.1).

    An update every ``ptime_ms`` with the duration so far, the first with the
    marker bit (§2.5.1.2); then the final packet with the E bit three times, one
    tick apart (§2.5.1.4).  An event longer than 0xFFFF units is cut into
    segments, each ending with three packets of duration 0xFFFF and no E bit,
    the next starting 0xFFFF later without marker (§2.5.1.3).
    """
    event = event_for_digit(digit)
    if duration_ms <= 0:
        raise ValueError(f"key press duration must be positive, got {duration_ms} ms")
    if ptime_ms <= 0:
        raise ValueError(f"packet interval must be positive, got {ptime_ms} ms")
    step = ptime_ms * clock_rate // 1000
    total = duration_ms * clock_rate // 1000
    if step <= 0 or total <= 0:
        raise ValueError(f"clock rate {clock_rate} Hz is too low for {ptime_ms} ms packets")

    packets: list[TelephoneEventPacket] = []

    def emit(*, at: int, segment: int, duration: int, end: bool, repeats: int = 1) -> None:
        payload = TelephoneEvent(event=event, end=end, volume=volume, duration=duration)
        for repeat in range(repeats):
            packets.append(
                TelephoneEventPacket(
                    marker=not packets,
                    timestamp_offset=segment,
                    send_offset=at + repeat * step,
                    payload=payload.to_bytes(),
                )
            )

    segment = 0
    now = step
    while True:
        if now >= total and total - segment <= MAX_DURATION:
            emit(
                at=now, segment=segment, duration=total - segment, end=True, repeats=_FINAL_REPEATS
            )
            break
        if now - segment >= MAX_DURATION:
            emit(at=now, segment=segment, duration=MAX_DURATION, end=False, repeats=_FINAL_REPEATS)
            segment += MAX_DURATION
            continue
        emit(at=now, segment=segment, duration=now - segment, end=False)
        now += step
    packets.sort(key=lambda packet: packet.send_offset)
    return tuple(packets)
