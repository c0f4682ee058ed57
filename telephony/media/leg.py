"""One call leg's media state, sans-IO: what it accepts, whom it locks onto, what it sends.

Receive side. `MediaLeg.receive(data, source, now)` runs for every datagram on the leg's RTP
port and returns the packet when it is usable, or None after counting why it was dropped; it never
raises. The checks run cheapest first, so a flood costs least:

1. the source address: once the leg is locked, anything from another address is dropped
   (`LegCounters.foreign_address`) before a single header octet is read;
2. a token bucket on packets from the locked source (`LegCounters.flood`);
3. RFC 3550 §5.1 parsing (`DropCounters.malformed`), then the payload type against the SDP
   answer (`DropCounters.wrong_payload_type`);
4. RFC 3550 §A.1 source validation on the SSRC (`DropCounters.foreign_source`): a new SSRC is
   followed only after it sent packets in sequence with none from the old one in between.

Media locking (symmetric RTP, RFC 4961; the RTP Bleed class of attacks). The rule:

* A valid packet from exactly the address and port in the peer's SDP locks the leg at once.
* A peer behind NAT sends from another address. With `LatchMode.NAT` the leg locks onto such a
  source only after `latch_packets` valid packets in a row from that one address, with one SSRC
  and consecutive sequence numbers, and only within `latch_window` seconds of the leg opening
  (or of a renegotiation). A packet from the SDP address meanwhile wins at once. After the
  window only the SDP address can lock the leg, so a late stray or injected stream never can.
* Once locked, the leg sends to the locked address (symmetric RTP) and drops everything from
  elsewhere, for the rest of the session or until `renegotiate` (a re-INVITE with new SDP).

RTCP (RFC 3550 §6) goes to where the peer's SDP says: the port of its `a=rtcp` attribute
(RFC 3605 §2.1), else its RTP port + 1 (RFC 3550 §11), at the RTP address; once the peer's own
RTCP arrives, to its source (symmetric RTCP, RFC 4961 §3). Never elsewhere: a NAT-latched RTP
source says nothing about where its RTCP goes, so a latched leg sends no RTCP until the peer's
arrives; an address that is the peer's RTP source or its SIP signalling address is never taken
for RTCP (a peer without RTCP multiplexing, RFC 5761, which we do not offer or answer).

Comfort noise (RFC 3389): packets of payload type 13 are accepted like audio for sequence and
loss accounting, counted (`LegCounters.comfort_noise`), and stand for silence where the leg's
audio is decoded; nothing decodes their noise level.

Send side. Outgoing packets carry the leg's own SSRC and sequence numbers. Timestamps follow an
absolute media clock: the frame played at engine tick `n` is stamped
``first_timestamp + (n - tick_origin) * 160`` whatever the tick's actual firing time, so playout
never drifts. A peer that asked for longer packets (a=ptime 40 or 60, RFC 4566 §6) gets what
the leg plays in packets of that many 20 ms frames (`play_frame`), stamped with their first
frame's slot; any other ptime gets 20 ms packets (ptime is a preference: RFC 3551 §4.2 has
receivers accept packets of 0 to 200 ms). Relayed packets keep the spacing of their sender's
timestamps, shifted once per talkspurt onto our media clock, with the marker bit set
(RFC 3551 §4.1) so the receiver re-anchors; they keep their sender's duration too.
"""

from __future__ import annotations

import logging
import socket
import struct
from dataclasses import dataclass, replace
from typing import Any, Final

from telephony.media.events import MediaSourceLocked
from telephony.media.settings import (
    LOCK_TRANSITIONS,
    InvalidLockTransitionError,
    LatchMode,
    LegCounters,
    LegSettings,
    LockInput,
    LockState,
)
from telephony.rtp.dtmf import DtmfReceiver
from telephony.rtp.g711 import SAMPLES_PER_FRAME, Law
from telephony.rtp.jitter import JitterBuffer
from telephony.rtp.packet import RtpPacket, RtpParseError, parse
from telephony.rtp.reframe import Reframer
from telephony.rtp.rtcp import (
    ReceiverReport,
    RtcpParseError,
    SdesChunk,
    SdesItem,
    SdesItemType,
    SenderReport,
    SourceDescription,
    parse_compound,
    serialize_compound,
)
from telephony.rtp.stats import (
    ReceiverStatistics,
    SenderStatistics,
    SourceVerdict,
    round_trip_time,
)

logger = logging.getLogger(__name__)

#: A socket address as asyncio reports it: (host, port) or (host, port, flowinfo, scope_id).
Address = tuple[Any, ...]
#: One datagram to send: the call_id of the leg whose socket sends it, the bytes, where to.
Transmit = tuple[str, bytes, Address]
#: Comfort noise (RFC 3389 §4), a static payload type (RFC 3551 §6, table 4).
COMFORT_NOISE_PAYLOAD_TYPE: Final = 13

CLOCK_RATE: Final = 8000
_HEADER: Final = struct.Struct("!BBHII")
#: The fixed header after its first octet: M/PT, sequence number, timestamp, SSRC.
_RELAY_FIELDS: Final = struct.Struct("!BHII")
_VERSION_OCTET: Final = 0x80
_MARKER: Final = 0x80
_TIMESTAMP_MASK: Final = 0xFFFFFFFF
_ACCEPTED: Final = (SourceVerdict.ACCEPTED, SourceVerdict.PROBATION, SourceVerdict.SOURCE_CHANGED)
_FRAME_MS: Final = 20
_MAX_FRAMES_PER_PACKET: Final = 3


def frames_per_packet(ptime_ms: int | None) -> int:
    """20 ms frames per packet we send for a peer's a=ptime: 2 for 40, 3 for 60, else 1."""
    if ptime_ms is None or ptime_ms % _FRAME_MS:
        return 1
    return max(1, min(ptime_ms // _FRAME_MS, _MAX_FRAMES_PER_PACKET))


@dataclass(slots=True)
class _Candidate:
    """A NAT-translated source on its way to being latched."""

    source: Address
    ssrc: int
    sequence: int
    count: int


def _normalise_host(host: str) -> str:
    """The canonical text of an IP address (as the socket layer reports sources), else `host`."""
    # inet_pton/inet_ntop rather than the ipaddress module: this runs for every leg opened.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, host))
    except OSError:
        return host


class MediaLeg:
    """Receive and send state of one RTP session (one call leg), with no I/O."""

    # Every leg of the worker takes its turn each 20 ms, so a leg's state is seldom in the
    # processor's caches when its next packet comes: slots keep it in one compact object
    # instead of an instance dictionary (benchmarks/relay.py, "500 bridged calls in turn").
    __slots__ = (
        "_burst",
        "_candidate",
        "_events",
        "_grid_origin",
        "_held",
        "_held_tick",
        "_learning_until",
        "_lock_state",
        "_locked",
        "_rate",
        "_relay_offset",
        "_relay_ssrc",
        "_sequence",
        "_signalling",
        "_talkspurt",
        "_tick_origin",
        "_timestamp_origin",
        "_token_time",
        "_tokens",
        "call_id",
        "counters",
        "destination",
        "dtmf",
        "event_payload_type",
        "frames_per_packet",
        "jitter",
        "last_received",
        "law",
        "opened_at",
        "payload_type",
        "reframer",
        "remote",
        "remote_fraction_lost",
        "remote_jitter",
        "round_trip",
        "rtcp_destination",
        "sender",
        "settings",
        "ssrc",
        "stats",
        "timed_out",
    )

    def __init__(
        self,
        *,
        call_id: str,
        law: Law,
        payload_type: int,
        event_payload_type: int | None,
        remote: tuple[str, int],
        ssrc: int,
        first_sequence: int,
        first_timestamp: int,
        tick_origin: int,
        grid_origin: float,
        now: float,
        events: list[object],
        settings: LegSettings | None = None,
        ptime: int | None = None,
        rtcp: tuple[str, int] | None = None,
        signalling: Address | None = None,
    ) -> None:
        self.call_id = call_id
        self.frames_per_packet = frames_per_packet(ptime)
        """20 ms frames in each packet `play_frame` sends (the peer's a=ptime)."""
        self._held: list[bytes] = []  # frames waiting to fill a longer packet
        self._held_tick = 0
        self.settings = settings if settings is not None else LegSettings()
        self.law = law
        self.payload_type = payload_type
        self.event_payload_type = event_payload_type
        self.counters = LegCounters()
        self.stats = ReceiverStatistics(clock_rate=CLOCK_RATE, counters=self.counters.drops)
        self.sender = SenderStatistics(ssrc=ssrc, clock_rate=CLOCK_RATE)
        self.dtmf = DtmfReceiver(clock_rate=CLOCK_RATE, end_timeout=self.settings.dtmf_end_timeout)
        self.jitter: JitterBuffer | None = None
        self.reframer: Reframer | None = None
        """Cuts received packets of any duration into the jitter buffer's 20 ms frames."""
        self.ssrc = ssrc
        self.opened_at = now
        self.last_received: float | None = None
        self.timed_out = False
        self.remote_fraction_lost: float | None = None
        self.remote_jitter: int | None = None
        self.round_trip: float | None = None
        self._events = events
        self._sequence = first_sequence
        self._timestamp_origin = first_timestamp
        self._tick_origin = tick_origin
        self._grid_origin = grid_origin
        self._relay_ssrc: int | None = None
        self._relay_offset = 0
        self._talkspurt = True
        self._lock_state = LockState.LEARNING
        self._locked: Address | None = None
        self._candidate: _Candidate | None = None
        self._learning_until = now + self.settings.latch_window
        self._rate = self.settings.max_packet_rate
        self._burst = self.settings.packet_burst
        self._tokens = self.settings.packet_burst
        self._token_time = now
        self.rtcp_destination: Address | None = None
        self._signalling = (
            (_normalise_host(str(signalling[0])), signalling[1]) if signalling else None
        )
        self.set_remote(remote, rtcp)

    # ------------------------------------------------------------------ addresses and locking

    @property
    def lock_state(self) -> LockState:
        return self._lock_state

    @property
    def locked_source(self) -> Address | None:
        return self._locked

    def set_remote(self, remote: tuple[str, int], rtcp: tuple[str, int] | None = None) -> None:
        """The peer's RTP address from its SDP, and its `a=rtcp` address (RFC 3605) if any."""
        self.remote = (_normalise_host(remote[0]), remote[1])
        self.destination: Address = self.remote
        if rtcp is None:
            rtcp = (self.remote[0], self.remote[1] + 1)  # RFC 3550 §11
        self.rtcp_destination = None
        self._set_rtcp_destination((_normalise_host(rtcp[0]), rtcp[1]))

    def _set_rtcp_destination(self, address: Address) -> None:
        """Send RTCP to `address` unless it is where the peer's RTP or SIP goes: RTCP there
        would land in its audio or its signalling."""
        host_port = (address[0], address[1])
        locked = self._locked
        if host_port in (self.remote, self._signalling) or (
            locked is not None and host_port == (locked[0], locked[1])
        ):
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("call %s: no RTCP to %s", self.call_id, address)
            return
        self.rtcp_destination = address

    def renegotiate(
        self, remote: tuple[str, int], now: float, rtcp: tuple[str, int] | None = None
    ) -> None:
        """New SDP from the peer (re-INVITE): forget the lock and learn the source again."""
        self._lock(LockInput.RENEGOTIATED)
        self._locked = None
        self._candidate = None
        self._learning_until = now + self.settings.latch_window
        self.set_remote(remote, rtcp)

    def _lock(self, event: LockInput) -> None:
        try:
            self._lock_state = LOCK_TRANSITIONS[(self._lock_state, event)]
        except KeyError:
            raise InvalidLockTransitionError(
                f"media lock: no transition from {self._lock_state.name} on {event.name}"
            ) from None

    def _learn(self, packet: RtpPacket, source: Address, now: float) -> bool:
        """Whether a valid packet from `source` may be used while the leg is still learning."""
        if source[0] == self.remote[0] and source[1] == self.remote[1]:
            self._lock_onto(LockInput.SDP_SOURCE, source)
            return True
        if self.settings.latch is LatchMode.STRICT or now > self._learning_until:
            self.counters.foreign_address += 1
            return False
        candidate = self._candidate
        if (
            candidate is None
            or candidate.source != source
            or candidate.ssrc != packet.ssrc
            or packet.sequence != (candidate.sequence + 1) & 0xFFFF
        ):
            self._candidate = candidate = _Candidate(
                source=source, ssrc=packet.ssrc, sequence=packet.sequence, count=1
            )
        else:
            candidate.sequence = packet.sequence
            candidate.count += 1
        if candidate.count < self.settings.latch_packets:
            self.counters.foreign_address += 1
            return False
        self._lock_onto(LockInput.LATCH_CONFIRMED, source)
        return True

    def _lock_onto(self, event: LockInput, source: Address) -> None:
        self._lock(event)
        self._locked = source
        self._candidate = None
        self.destination = source
        if event is LockInput.LATCH_CONFIRMED:
            self.rtcp_destination = None  # until the peer's RTCP shows where its RTCP comes from
        self._events.append(
            MediaSourceLocked(
                call_id=self.call_id,
                address=str(source[0]),
                port=int(source[1]),
                latched=event is LockInput.LATCH_CONFIRMED,
            )
        )

    # ------------------------------------------------------------------ receive

    def receive(self, data: bytes, source: Address, now: float) -> RtpPacket | None:
        """Validate one datagram from `source`; the packet if it is usable, else None."""
        locked = self._locked
        counters = self.counters
        if locked is not None and source != locked:
            counters.foreign_address += 1
            return None
        # Token bucket (refilled by elapsed time): a flood from the locked source is shed here.
        tokens = self._tokens + (now - self._token_time) * self._rate
        self._token_time = now
        tokens = min(tokens, self._burst)
        if tokens < 1.0:
            self._tokens = tokens
            counters.flood += 1
            return None
        self._tokens = tokens - 1.0
        try:
            packet = parse(data)
        except RtpParseError as error:
            counters.drops.malformed += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("call %s: RTP dropped: %s", self.call_id, error)
            return None
        payload_type = packet.payload_type
        if (
            payload_type not in (self.payload_type, self.event_payload_type)
            and payload_type != COMFORT_NOISE_PAYLOAD_TYPE
        ):
            counters.drops.wrong_payload_type += 1
            return None
        if locked is None and not self._learn(packet, source, now):
            return None
        verdict = self.stats.receive(
            ssrc=packet.ssrc, sequence=packet.sequence, timestamp=packet.timestamp, now=now
        )
        if verdict not in _ACCEPTED:
            return None
        if verdict is SourceVerdict.SOURCE_CHANGED and self.jitter is not None:
            self.jitter.reset()
            if self.reframer is not None:
                self.reframer.reset()
        counters.received += 1
        counters.received_octets += len(packet.payload)
        self.last_received = now
        return packet

    def relay_next(
        self, data: bytes, source: Address, now: float, out: MediaLeg, table: bytes | None
    ) -> bytes | None:
        """`receive` then `out.relay_packet` in one step, for the packet that every settled
        bridged stream mostly carries: from the locked source, a plain header (RFC 3550 §5.1:
        no padding, extension or CSRC), our audio payload type, the validated SSRC already
        mapped onto `out`, next in sequence, within the rate limit. Returns the packet for
        `out`; None, with nothing changed on either leg, for any other datagram, which then
        takes the general path. Both paths leave the same state (property-tested)."""
        if source != self._locked or len(data) < 12 or data[0] != _VERSION_OCTET:
            return None
        second, sequence, timestamp, ssrc = _RELAY_FIELDS.unpack_from(data, 1)
        if second & 0x7F != self.payload_type or ssrc != out._relay_ssrc:
            return None
        tokens = min(self._tokens + (now - self._token_time) * self._rate, self._burst)
        if tokens < 1.0 or not self.stats.receive_next(ssrc, sequence, timestamp, now):
            return None
        self._tokens = tokens - 1.0
        self._token_time = now
        payload = data[12:] if table is None else data[12:].translate(table)
        counters = self.counters
        counters.received += 1
        counters.received_octets += len(payload)
        self.last_received = now
        return out._packet(
            out.payload_type,
            payload,
            (timestamp + out._relay_offset) & _TIMESTAMP_MASK,
            now,
            second > 0x7F,
        )

    def enable_decoding(self) -> JitterBuffer:
        """Give the leg a jitter buffer (its audio is about to be decoded)."""
        if self.jitter is None:
            self.jitter = JitterBuffer(self.settings.jitter, counters=self.counters.drops)
            self.reframer = Reframer(
                fill=self.law.silence_byte, samples_per_frame=self.jitter.settings.samples_per_frame
            )
        return self.jitter

    def disable_decoding(self) -> None:
        self.jitter = None
        self.reframer = None

    def comfort_noise(self, packet: RtpPacket, now: float) -> None:
        """A comfort-noise packet (RFC 3389 §4) received: counted; decoding gets a frame of
        silence in its place, so the jitter buffer sees no gap in the sequence."""
        self.counters.comfort_noise += 1
        if self.jitter is not None:
            silence = bytes((self.law.silence_byte,)) * SAMPLES_PER_FRAME
            self.buffer_audio(replace(packet, payload_type=self.payload_type, payload=silence), now)

    def buffer_audio(self, packet: RtpPacket, now: float) -> None:
        """Queue a received audio packet for decoding, whatever its duration (10, 20, 30, 40 ms:
        the peer's ptime, RFC 4566 §6): the jitter buffer gets whole 20 ms frames."""
        jitter, reframer = self.jitter, self.reframer
        if jitter is None or reframer is None:
            return
        for frame in reframer.push(packet):
            jitter.push(frame, now)

    # ------------------------------------------------------------------ send

    def media_clock(self, now: float) -> int:
        """Our RTP timestamp for the instant `now` on the absolute clock."""
        elapsed = round((now - self._grid_origin) * CLOCK_RATE)
        return (self._timestamp_origin + elapsed) & _TIMESTAMP_MASK

    def new_talkspurt(self) -> None:
        """The next packet starts a new stretch of audio (prompt, relay, after silence)."""
        self._talkspurt = True
        self._relay_ssrc = None
        self._held.clear()

    def play_frame(self, payload: bytes, tick: int, now: float) -> bytes | None:
        """A played frame (prompt, music) for engine tick `tick`: the packet to send, or None
        while frames are held to fill a packet of the peer's ptime."""
        if self.frames_per_packet == 1:
            return self.frame_packet(payload, tick, now)
        held = self._held
        if held and tick != self._held_tick + len(held):
            # Ticks were skipped (a loop stalled past `max_catch_up`): the frames held are
            # dropped with them rather than stamped as if contiguous with this one.
            held.clear()
        if not held:
            self._held_tick = tick
        held.append(payload)
        if len(held) < self.frames_per_packet:
            return None
        return self.flush_frames(now)

    def flush_frames(self, now: float) -> bytes | None:
        """Send the frames held for a longer packet now (the playback ended), if any."""
        held = self._held
        if not held:
            return None
        payload = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        return self.frame_packet(payload, self._held_tick, now)

    def frame_packet(self, payload: bytes, tick: int, now: float) -> bytes:
        """The packet carrying `payload` as the frame of engine tick `tick`."""
        timestamp = (
            self._timestamp_origin + (tick - self._tick_origin) * SAMPLES_PER_FRAME
        ) & _TIMESTAMP_MASK
        return self._packet(self.payload_type, payload, timestamp, now)

    def relay_packet(
        self, packet: RtpPacket, payload: bytes, payload_type: int, now: float
    ) -> bytes:
        """A packet from the bridged peer, restamped into this leg's stream."""
        if packet.ssrc != self._relay_ssrc:
            # First packet of this relay (or the peer's source changed): map its timeline onto
            # our media clock as of now; later packets keep their sender's spacing.
            self._relay_ssrc = packet.ssrc
            self._relay_offset = self.media_clock(now) - packet.timestamp
            self._talkspurt = True
        timestamp = (packet.timestamp + self._relay_offset) & _TIMESTAMP_MASK
        return self._packet(payload_type, payload, timestamp, now, packet.marker)

    def _packet(
        self, payload_type: int, payload: bytes, timestamp: int, now: float, marker: bool = False
    ) -> bytes:
        if self._talkspurt:
            self._talkspurt = False
            marker = True
        sequence = self._sequence = (self._sequence + 1) & 0xFFFF
        counters = self.counters
        counters.sent += 1
        counters.sent_octets += len(payload)
        self.sender.on_sent(payload_size=len(payload), timestamp=timestamp, now=now)
        return (
            _HEADER.pack(
                _VERSION_OCTET,
                payload_type | _MARKER if marker else payload_type,
                sequence,
                timestamp,
                self.ssrc,
            )
            + payload
        )

    # ------------------------------------------------------------------ RTCP (RFC 3550 §6)

    def rtcp_report(self, now: float, wallclock: float) -> bytes:
        """Our compound report: SR if we sent since the start, else RR, then SDES CNAME (§6.1)."""
        block = self.stats.report_block(now)
        blocks = (block,) if block is not None else ()
        report: SenderReport | ReceiverReport
        if self.sender.has_sent:
            report = self.sender.sender_report(now=now, wallclock=wallclock, reports=blocks)
        else:
            report = ReceiverReport(ssrc=self.ssrc, reports=blocks)
        cname = SdesChunk(
            ssrc=self.ssrc,
            items=(SdesItem(item_type=SdesItemType.CNAME, value=self.settings.cname),),
        )
        return serialize_compound((report, SourceDescription(chunks=(cname,))))

    def receive_rtcp(self, data: bytes, source: Address, now: float, wallclock: float) -> None:
        """One datagram on the RTCP port: the peer's reports about us and about its stream."""
        expected_host = self._locked[0] if self._locked is not None else self.remote[0]
        if source[0] != expected_host:
            self.counters.rtcp_dropped += 1
            return
        try:
            compound = parse_compound(data)
        except RtcpParseError as error:
            self.counters.rtcp_dropped += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("call %s: RTCP dropped: %s", self.call_id, error)
            return
        self.counters.rtcp_received += 1
        if source != self.rtcp_destination:
            self._set_rtcp_destination(source)  # symmetric RTCP, like RTP (RFC 4961 §3)
        for packet in compound.packets:
            if isinstance(packet, SenderReport):
                self.stats.on_sender_report(packet, now)
            if isinstance(packet, SenderReport | ReceiverReport):
                for block in packet.reports:
                    if block.ssrc == self.ssrc:
                        self.remote_fraction_lost = block.fraction_lost / 256
                        self.remote_jitter = block.jitter
                        rtt = round_trip_time(block, wallclock)
                        if rtt is not None:
                            self.round_trip = rtt
