"""Per-leg RTP statistics (RFC 3550 §6.4, Appendix A) and the figures RTCP reports carry.

`ReceiverStatistics` follows the received stream of one leg: source validation with probation and
sequence-number extension (§A.1), expected and lost packets with the per-interval fraction (§A.3),
interarrival jitter (§A.8), the LSR/DLSR pair (§6.4.1), and SSRC changes. It turns all of that into
the `ReportBlock` of our next SR or RR. `SenderStatistics` counts what we send, for the sender info
of an SR. `DropCounters` is the small tally the transport, these statistics and the jitter buffer
bump for every packet they throw away, by reason.

Nothing here reads a clock: arrival times (`now`, monotonic seconds) and wallclock times (Unix
seconds, only for NTP timestamps) are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from telephony.rtp.packet import SEQUENCE_MOD, RtpPacket
from telephony.rtp.rtcp import ReportBlock, SenderReport

MIN_SEQUENTIAL: Final = 2
"""Packets in sequence before a new source is valid (§A.1)."""
MAX_DROPOUT: Final = 3000
"""Largest forward sequence jump taken as loss rather than a restart (§A.1)."""
MAX_MISORDER: Final = 100
"""Largest backward sequence jump taken as reordering rather than a restart (§A.1)."""

NTP_UNIX_EPOCH_OFFSET: Final = 2_208_988_800
"""Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01)."""

_CUMULATIVE_LOST_MAX: Final = 0x7FFFFF
_CUMULATIVE_LOST_MIN: Final = -0x800000


class DropReason(StrEnum):
    """Why a received RTP packet was thrown away; each value names a `DropCounters` field."""

    MALFORMED = "malformed"
    WRONG_PAYLOAD_TYPE = "wrong_payload_type"
    FOREIGN_SOURCE = "foreign_source"
    LATE = "late"
    DUPLICATE = "duplicate"
    OVERFLOW = "overflow"


@dataclass(slots=True)
class DropCounters:
    """Dropped received packets by reason, for one leg. Plain integer fields, so the hot path can
    do `counters.late += 1`; `bump` is the by-reason form."""

    malformed: int = 0
    """Not valid RTP (`RtpParseError`)."""
    wrong_payload_type: int = 0
    """A payload type the SDP answer did not agree on."""
    foreign_source: int = 0
    """From an SSRC that is not the leg's validated source (and has not replaced it)."""
    late: int = 0
    """Arrived after its playout time (jitter buffer)."""
    duplicate: int = 0
    """Same packet already buffered or played (jitter buffer)."""
    overflow: int = 0
    """Discarded by the jitter buffer to stay within its capacity."""

    def bump(self, reason: DropReason) -> None:
        name = reason.value
        setattr(self, name, getattr(self, name) + 1)

    @property
    def total(self) -> int:
        return (
            self.malformed
            + self.wrong_payload_type
            + self.foreign_source
            + self.late
            + self.duplicate
            + self.overflow
        )

    def as_dict(self) -> dict[str, int]:
        # By hand, not dataclasses.asdict (a deep copy): it runs for every leg that closes.
        return {reason.value: getattr(self, reason.value) for reason in DropReason}

    def add(self, other: DropCounters) -> None:
        """Add `other`'s counts to these (totals over legs)."""
        self.malformed += other.malformed
        self.wrong_payload_type += other.wrong_payload_type
        self.foreign_source += other.foreign_source
        self.late += other.late
        self.duplicate += other.duplicate
        self.overflow += other.overflow


class SourceVerdict(StrEnum):
    """What `ReceiverStatistics.receive` made of one packet."""

    ACCEPTED = "accepted"
    """From the validated source and counted."""
    PROBATION = "probation"
    """From the expected source, which is not yet validated (§A.1); not counted."""
    SOURCE_CHANGED = "source_changed"
    """A new SSRC replaced the old one after MIN_SEQUENTIAL packets in sequence; statistics were
    restarted for it and this packet counted. Downstream state (jitter buffer) should reset."""
    FOREIGN = "foreign"
    """From another SSRC; dropped and counted in `DropCounters.foreign_source`."""
    BAD_SEQUENCE = "bad_sequence"
    """A very large sequence jump (§A.1); not counted unless the next packet confirms it."""


@dataclass(slots=True)
class _Candidate:
    """A source that may be replacing the current one: it must send MIN_SEQUENTIAL packets in
    sequence with nothing from the current source in between."""

    ssrc: int
    last_sequence: int
    remaining: int


class ReceiverStatistics:
    """Reception statistics for the one source a leg expects (RFC 3550 §A.1, §A.3, §A.8).

    The first SSRC heard becomes the source, on probation until MIN_SEQUENTIAL packets arrive in
    sequence. Another SSRC replaces it only after sending MIN_SEQUENTIAL consecutive packets with
    no packet from the current source in between: a peer that restarts its stream (re-INVITE, a
    transfer on the far side) is followed, stray or interleaved packets are dropped as foreign.
    """

    # Touched by every relayed packet of every leg: slots, as MediaLeg's.
    __slots__ = (
        "_bad_seq",
        "_base_seq",
        "_candidate",
        "_cycles",
        "_expected_prior",
        "_jitter",
        "_last_sr",
        "_last_sr_arrival",
        "_max_seq",
        "_probation",
        "_received_prior",
        "_transit",
        "clock_rate",
        "counters",
        "min_sequential",
        "received",
        "source_changes",
        "ssrc",
    )

    def __init__(
        self,
        *,
        clock_rate: int,
        counters: DropCounters | None = None,
        min_sequential: int = MIN_SEQUENTIAL,
    ) -> None:
        if clock_rate <= 0 or min_sequential < 1:
            raise ValueError("clock_rate must be positive and min_sequential at least 1")
        self.clock_rate = clock_rate
        self.counters = counters if counters is not None else DropCounters()
        self.min_sequential = min_sequential
        self.ssrc: int | None = None
        self.source_changes = 0
        self.received = 0
        self._candidate: _Candidate | None = None
        self._probation = min_sequential
        self._base_seq = 0
        self._max_seq = 0
        self._bad_seq = SEQUENCE_MOD + 1
        self._cycles = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._transit: float | None = None
        self._jitter = 0.0
        self._last_sr = 0
        self._last_sr_arrival: float | None = None

    def _restart(self, ssrc: int, sequence: int) -> None:
        """Follow `ssrc` from scratch, on probation, as for a newly heard source (§A.1)."""
        self.ssrc = ssrc
        self._init_sequence(sequence)
        self._max_seq = (sequence - 1) & 0xFFFF
        self._probation = self.min_sequential
        self._jitter = 0.0
        self._last_sr = 0
        self._last_sr_arrival = None

    def _init_sequence(self, sequence: int) -> None:
        """§A.1 init_seq: counting starts again from `sequence`."""
        self._base_seq = sequence
        self._max_seq = sequence
        self._bad_seq = SEQUENCE_MOD + 1  # matches no 16-bit sequence number
        self._cycles = 0
        self.received = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._transit = None

    def receive_packet(self, packet: RtpPacket, now: float) -> SourceVerdict:
        """`receive` for a parsed packet."""
        return self.receive(
            ssrc=packet.ssrc, sequence=packet.sequence, timestamp=packet.timestamp, now=now
        )

    def receive(self, *, ssrc: int, sequence: int, timestamp: int, now: float) -> SourceVerdict:
        """Account for one received packet that arrived at `now` (monotonic seconds)."""
        if ssrc == self.ssrc:
            self._candidate = None
        elif self.ssrc is None:
            self._restart(ssrc, sequence)
        else:
            return self._foreign(ssrc, sequence, timestamp, now)
        verdict = self._update_sequence(sequence)
        if verdict is SourceVerdict.ACCEPTED:
            self._update_jitter(timestamp, now)
        return verdict

    def receive_next(self, ssrc: int, sequence: int, timestamp: int, now: float) -> bool:
        """`receive` for the packet a validated source sends next, in order or after a short
        gap: True when it was that packet and is accounted for exactly as `receive` would have
        (ACCEPTED); False, with nothing changed, for any other packet (use `receive`).

        The media relay calls this for every packet of a settled stream, so §A.1 update_seq
        and §A.8 jitter are inlined for the one case that needs neither probation, restart nor
        misorder handling."""
        if ssrc != self.ssrc or self._probation:
            return False
        max_seq = self._max_seq
        delta = (sequence - max_seq) & 0xFFFF
        if not 0 < delta < MAX_DROPOUT:
            return False
        self._candidate = None  # the current source spoke: a would-be replacement starts over
        if sequence < max_seq:  # wrapped: one more 16-bit cycle
            self._cycles += SEQUENCE_MOD
        self._max_seq = sequence
        self.received += 1
        transit = now * self.clock_rate - timestamp
        previous = self._transit
        self._transit = transit
        if previous is not None:
            difference = (transit - previous + 0x80000000) % 0x100000000 - 0x80000000
            self._jitter += (abs(difference) - self._jitter) / 16
        return True

    def _foreign(self, ssrc: int, sequence: int, timestamp: int, now: float) -> SourceVerdict:
        candidate = self._candidate
        if (
            candidate is None
            or candidate.ssrc != ssrc
            or sequence != (candidate.last_sequence + 1) & 0xFFFF
        ):
            candidate = _Candidate(
                ssrc=ssrc, last_sequence=sequence, remaining=self.min_sequential - 1
            )
            self._candidate = candidate
        else:
            candidate.last_sequence = sequence
            candidate.remaining -= 1
        if candidate.remaining > 0:
            self.counters.foreign_source += 1
            return SourceVerdict.FOREIGN
        # The new source passed its probation: follow it from this packet on (§A.1 init_seq).
        self._candidate = None
        self.source_changes += 1
        self._restart(ssrc, sequence)
        self._probation = 0
        self._init_sequence(sequence)
        self.received = 1
        self._update_jitter(timestamp, now)
        return SourceVerdict.SOURCE_CHANGED

    def _update_sequence(self, sequence: int) -> SourceVerdict:
        """§A.1 update_seq: probation, wraparound into cycles, and restart detection."""
        delta = (sequence - self._max_seq) & 0xFFFF
        if self._probation:
            if sequence == (self._max_seq + 1) & 0xFFFF:
                self._probation -= 1
                self._max_seq = sequence
                if self._probation == 0:
                    self._init_sequence(sequence)
                    self.received += 1
                    return SourceVerdict.ACCEPTED
            else:
                self._probation = self.min_sequential - 1
                self._max_seq = sequence
            return SourceVerdict.PROBATION
        if delta < MAX_DROPOUT:
            if sequence < self._max_seq:  # wrapped: one more 16-bit cycle
                self._cycles += SEQUENCE_MOD
            self._max_seq = sequence
        elif delta <= SEQUENCE_MOD - MAX_MISORDER:
            if sequence != self._bad_seq:
                self._bad_seq = (sequence + 1) & 0xFFFF
                return SourceVerdict.BAD_SEQUENCE
            # Two packets in sequence after a big jump: the sender restarted its numbering.
            self._init_sequence(sequence)
        # Otherwise a duplicate or reordered packet within MAX_MISORDER: counted as received.
        self.received += 1
        return SourceVerdict.ACCEPTED

    def _update_jitter(self, timestamp: int, now: float) -> None:
        """§A.8: J += (|D| - J) / 16, D the change in relative transit time, in timestamp units."""
        transit = now * self.clock_rate - timestamp
        previous = self._transit
        self._transit = transit
        if previous is None:
            return
        # The timestamp may have wrapped between the two packets: take D modulo 2**32, signed.
        difference = (transit - previous + 0x80000000) % 0x100000000 - 0x80000000
        self._jitter += (abs(difference) - self._jitter) / 16

    @property
    def validated(self) -> bool:
        return self.ssrc is not None and self._probation == 0

    @property
    def extended_max_sequence(self) -> int:
        """Highest sequence number received, with wrap cycles in the upper bits (§A.1)."""
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        """Packets expected since the source was validated (§A.3)."""
        if not self.validated:
            return 0
        return self.extended_max_sequence - self._base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost; negative when duplicates outnumber losses (§A.3)."""
        return self.expected - self.received

    @property
    def jitter(self) -> float:
        """Interarrival jitter estimate in timestamp units (§A.8)."""
        return self._jitter

    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000 / self.clock_rate

    def on_sender_report(self, report: SenderReport, now: float) -> None:
        """Remember an SR from our source for the LSR/DLSR fields of our next report (§6.4.1)."""
        if report.ssrc == self.ssrc:
            self._last_sr = ntp_short(report.ntp_timestamp)
            self._last_sr_arrival = now

    def report_block(self, now: float) -> ReportBlock | None:
        """The report block about our source for an SR/RR sent at `now`, or None before the source
        is validated. Starts a new interval for the fraction-lost figure (§A.3)."""
        if self.ssrc is None or not self.validated:
            return None
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = (lost_interval << 8) // expected_interval
        delay = 0
        if self._last_sr_arrival is not None:
            delay = int((now - self._last_sr_arrival) * 65536) & 0xFFFFFFFF
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=min(fraction, 0xFF),
            cumulative_lost=max(_CUMULATIVE_LOST_MIN, min(self.lost, _CUMULATIVE_LOST_MAX)),
            highest_sequence=self.extended_max_sequence & 0xFFFFFFFF,
            jitter=int(self._jitter) & 0xFFFFFFFF,
            last_sr=self._last_sr,
            delay_since_last_sr=delay,
        )


class SenderStatistics:
    """What we sent on a leg, for the sender info of our SR (RFC 3550 §6.4.1)."""

    # Touched by every relayed packet of every leg: slots, as MediaLeg's.
    __slots__ = (
        "_last_sent_at",
        "_last_timestamp",
        "clock_rate",
        "octet_count",
        "packet_count",
        "ssrc",
    )

    def __init__(self, *, ssrc: int, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise ValueError("clock_rate must be positive")
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.packet_count = 0
        self.octet_count = 0
        self._last_timestamp: int | None = None
        self._last_sent_at = 0.0

    def on_sent(self, *, payload_size: int, timestamp: int, now: float) -> None:
        """Count one sent packet: `payload_size` octets of payload (no header or padding)."""
        # §6.4.1: both counts wrap around at 2**32.
        self.packet_count = (self.packet_count + 1) & 0xFFFFFFFF
        self.octet_count = (self.octet_count + payload_size) & 0xFFFFFFFF
        self._last_timestamp = timestamp
        self._last_sent_at = now

    @property
    def has_sent(self) -> bool:
        """Whether we sent since the counts started: only then is an SR due instead of an RR."""
        return self._last_timestamp is not None

    def rtp_timestamp_at(self, now: float) -> int:
        """Our media clock at `now`, extrapolated from the last packet sent (§6.4.1 asks the SR's
        RTP timestamp to denote the same instant as its NTP timestamp)."""
        if self._last_timestamp is None:
            return 0
        elapsed = round((now - self._last_sent_at) * self.clock_rate)
        return (self._last_timestamp + elapsed) & 0xFFFFFFFF

    def sender_report(
        self, *, now: float, wallclock: float, reports: tuple[ReportBlock, ...] = ()
    ) -> SenderReport:
        """The SR to send at monotonic `now`, which is Unix time `wallclock`."""
        return SenderReport(
            ssrc=self.ssrc,
            ntp_timestamp=ntp_from_unix(wallclock),
            rtp_timestamp=self.rtp_timestamp_at(now),
            packet_count=self.packet_count,
            octet_count=self.octet_count,
            reports=reports,
        )


# --- NTP time (RFC 3550 §4, §6.4.1) --------------------------------------------------------------


def ntp_from_unix(seconds: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) for a Unix wallclock time."""
    whole = int(seconds // 1)
    fraction = int((seconds - whole) * (1 << 32))
    return ((whole + NTP_UNIX_EPOCH_OFFSET) << 32 | fraction) & 0xFFFFFFFFFFFFFFFF


def unix_from_ntp(ntp_timestamp: int) -> float:
    """Unix wallclock time of a 64-bit NTP timestamp."""
    return (ntp_timestamp >> 32) - NTP_UNIX_EPOCH_OFFSET + (ntp_timestamp & 0xFFFFFFFF) / (1 << 32)


def ntp_short(ntp_timestamp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field of a report block (§6.4.1)."""
    return (ntp_timestamp >> 16) & 0xFFFFFFFF


def round_trip_time(block: ReportBlock, arrival_wallclock: float) -> float | None:
    """Round-trip time in seconds from a report block about our stream that arrived at Unix time
    `arrival_wallclock` (§6.4.1: A - LSR - DLSR). None when the peer has not yet received an SR
    from us (LSR 0) or the figure comes out negative (clock steps, bogus DLSR)."""
    if block.last_sr == 0:
        return None
    arrival = ntp_short(ntp_from_unix(arrival_wallclock))
    units = (arrival - block.last_sr - block.delay_since_last_sr) & 0xFFFFFFFF
    if units >= 0x80000000:
        return None
    return units / 65536
