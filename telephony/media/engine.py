"""The media engine of one worker, sans-IO: every leg, one pacing tick for all of them.

Inputs are datagrams (`receive`, `receive_rtcp`) and the passage of time (`tick(now)`); outputs
are datagrams to send (`Transmit`: which leg's socket, the bytes, the destination) and media
events (`take_events`). The asyncio runner arms one timer at `next_deadline`.

Pacing. Ticks fall on an absolute 20 ms grid from the engine's origin: tick `n` is due at
``origin + n * 0.020``, and its frame carries the timestamp of that slot, so a late timer never
shifts the grid and playout never drifts. One tick serves every playing leg of the worker. When
the timer fires late by more than a frame (a stalled or starved loop), the ticks due are caught
up at once by default: each frame then reaches the receiver as early as it still can, which is
what its jitter buffer has to absorb (lateness against the RTP timestamps). `catch_up_spacing`
plays them one at a time that far apart instead, trading two packets at once for more lateness;
measured on a loaded machine it did worse on both counts and skipped more ticks (see
docs/benchmarks.md, "Media relay and playout"). At most `max_catch_up` ticks are kept for
catching up; older ones are skipped (their timestamps left as a gap, which the receiver
conceals).

Relay. Audio from a bridged leg is forwarded as it arrives (cut-through), restamped into the other
leg's stream and transcoded between µ-law and A-law by table when the laws differ: the packet is
not held for a tick, so relaying adds no delay and no pacing jitter of its own. A leg whose audio
is decoded (audio tap, recording, in-band DTMF) also feeds a jitter buffer, drained once per tick.

While a leg plays something (a prompt, whisper, music on hold) that replaces the peer's audio
towards it; relay resumes when the playback ends. Hold stops relay both ways and plays music on
hold to the held leg.

Supervisor monitoring (`monitor`) adds a third leg to a bridge: `telephony.media.monitors`.

Key presses (RFC 4733 events) reach every leg that hears the leg they came from, as events or
as tones: `telephony.media.keys`. A key relayed to two listeners leaves its second datagram in
`keys.sends`.

Comfort noise. With `EngineSettings.comfort_noise_dbm0` set, silent frames of what a leg plays
go out as low-level noise (RFC 3389 §1: digital silence sounds like a dead line). Inbound
comfort-noise packets (RFC 3389 §4) are counted and stand for silence (`MediaLeg.comfort_noise`);
they are not relayed.
"""

from __future__ import annotations

import logging
import random
from typing import Final

from telephony.media.bridge import (
    LegSlot,
    MediaStateError,
    UnknownLegError,
    connect,
    disconnect,
    update_relay,
)
from telephony.media.decoding import decode_frames, write_recordings
from telephony.media.events import (
    DigitReceived,
    MediaLegClosed,
    PlaybackFinished,
    RecordingStarted,
    RecordingStopped,
)
from telephony.media.keys import Keys
from telephony.media.leg import (
    COMFORT_NOISE_PAYLOAD_TYPE,
    Address,
    MediaLeg,
    Transmit,
)
from telephony.media.mix import MonitorMode
from telephony.media.monitors import Monitors
from telephony.media.playout import Frames, Playback, comfort_noise_frames
from telephony.media.recorder import Recording, RecordingSink
from telephony.media.reports import Reports
from telephony.media.settings import FRAME_SECONDS, EngineSettings, LegCounters, LegSettings
from telephony.media.tap import AudioTap
from telephony.rtp.g711 import Law, codec_for
from telephony.rtp.inband import InbandDtmfDetector

logger = logging.getLogger(__name__)

_EPSILON: Final = 1e-9

__all__ = ["EngineSettings", "MediaEngine", "MediaStateError", "Transmit", "UnknownLegError"]


class MediaEngine:
    """All media legs of one worker process."""

    def __init__(
        self,
        *,
        origin: float,
        settings: EngineSettings | None = None,
        wallclock_offset: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings if settings is not None else EngineSettings()
        self.origin = origin
        self.wallclock_offset = wallclock_offset
        """Unix time minus the monotonic clock, for NTP timestamps in sender reports."""
        self._rng = rng if rng is not None else random.Random()
        self._slots: dict[str, LegSlot] = {}
        self._playing: dict[str, LegSlot] = {}
        self._decoding: dict[str, LegSlot] = {}
        self._monitors = Monitors(self._update_decoding)
        self._noise: dict[Law, tuple[bytes, ...]] = {}
        self._next_tick = 0
        self._catch_up_at = 0.0  # while behind: when the next tick may be played
        self._next_playback = 1
        self._events: list[object] = []
        self.keys = Keys(self._events, self._barge_in)
        """Key presses of every leg: detected, relayed, or played as tones (`media.keys`)."""
        self._reports = Reports(
            interval=self.settings.leg.rtcp_interval,
            wallclock_offset=wallclock_offset,
            rng=self._rng,
            events=self._events,
        )
        self.skipped_ticks = 0
        # Counters of the legs already closed, so that totals survive their legs (metrics).
        self._closed_counters = LegCounters()
        self._closed_lost = 0

    # ------------------------------------------------------------------ legs

    def open_leg(
        self,
        call_id: str,
        *,
        law: Law,
        payload_type: int,
        event_payload_type: int | None,
        remote: tuple[str, int],
        now: float,
        settings: LegSettings | None = None,
        ptime: int | None = None,
        rtcp: tuple[str, int] | None = None,
        signalling: Address | None = None,
    ) -> MediaLeg:
        """Start a leg; `ptime` is the peer's a=ptime in ms (what it wants to receive), `rtcp`
        its a=rtcp address (RFC 3605), `signalling` where its SIP goes (never sent RTCP)."""
        if call_id in self._slots:
            raise MediaStateError(f"call {call_id} already has a media leg")
        tick = max(self._next_tick, self._tick_at(now))
        leg = MediaLeg(
            call_id=call_id,
            law=law,
            payload_type=payload_type,
            event_payload_type=event_payload_type,
            remote=remote,
            # RFC 3550 §5.1: SSRC, first sequence number and timestamp are random.
            ssrc=self._rng.getrandbits(32),
            first_sequence=self._rng.getrandbits(16),
            first_timestamp=self._rng.getrandbits(32),
            tick_origin=tick,
            grid_origin=self.origin + tick * FRAME_SECONDS,
            now=now,
            events=self._events,
            settings=settings if settings is not None else self.settings.leg,
            ptime=ptime,
            rtcp=rtcp,
            signalling=signalling,
        )
        self._slots[call_id] = LegSlot(leg=leg, codec=codec_for(law))
        self._reports.schedule(call_id, now)
        return leg

    def leg(self, call_id: str) -> MediaLeg:
        return self._slot(call_id).leg

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def totals(self) -> tuple[LegCounters, int]:
        """Packet counters and packets lost summed over every leg since start, open or closed.

        Read when metrics are scraped: the sum walks the open legs, nothing is kept per packet.
        """
        total = LegCounters()
        total.add(self._closed_counters)
        lost = self._closed_lost
        for slot in self._slots.values():
            total.add(slot.leg.counters)
            lost += max(0, slot.leg.stats.lost)
        return total, lost

    def close_leg(self, call_id: str, now: float) -> None:
        """End a leg's media: stop what it does, report its figures, forget it."""
        slot = self._slots.get(call_id)
        if slot is None:
            return
        if slot.mix is not None:
            self.end_monitor(call_id)
        if slot.peer is not None:
            self.unbridge(call_id)
        self._stop_playback(slot, "stopped")
        if slot.recording is not None:
            self.stop_recording(call_id)
        for tap in slot.taps:
            tap.close()
        slot.taps.clear()
        slot.closed = True
        for table in (self._slots, self._playing, self._decoding):
            table.pop(call_id, None)
        self.keys.forget(call_id)
        leg = slot.leg
        self._closed_counters.add(leg.counters)
        self._closed_lost += max(0, leg.stats.lost)
        self._events.append(
            MediaLegClosed(
                call_id=call_id,
                packets_received=leg.counters.received,
                packets_sent=leg.counters.sent,
                packets_lost=max(0, leg.stats.lost),
                jitter_ms=leg.stats.jitter_ms,
                dropped=leg.counters.dropped,
                foreign_address=leg.counters.foreign_address,
                remote_fraction_lost=leg.remote_fraction_lost,
            )
        )

    def _slot(self, call_id: str) -> LegSlot:
        try:
            return self._slots[call_id]
        except KeyError:
            raise UnknownLegError(call_id) from None

    # ------------------------------------------------------------------ receive (hot path)

    def receive(self, call_id: str, data: bytes, source: Address, now: float) -> Transmit | None:
        """One datagram on a leg's RTP port. Returns the relayed packet to send, if any."""
        slot = self._slots.get(call_id)
        if slot is None:
            return None
        leg = slot.leg
        target = slot.relay_to
        if (
            target is not None
            and leg.jitter is None
            and target.playback is None
            and target.tone is None
        ):
            out = target.leg
            relayed = leg.relay_next(data, source, now, out, slot.transcode)
            if relayed is not None:
                return out.call_id, relayed, out.destination
        packet = leg.receive(data, source, now)
        if packet is None:
            return None
        if packet.payload_type == leg.payload_type:
            if leg.jitter is not None:
                leg.buffer_audio(packet, now)
            target = slot.relay_to
            if target is None or target.playback is not None or target.tone is not None:
                return None
            table = slot.transcode
            payload = packet.payload if table is None else packet.payload.translate(table)
            out = target.leg
            return (
                out.call_id,
                out.relay_packet(packet, payload, out.payload_type, now),
                out.destination,
            )
        if packet.payload_type == COMFORT_NOISE_PAYLOAD_TYPE:
            leg.comfort_noise(packet, now)
            return None
        return self.keys.receive(slot, packet, now)  # a telephone-event (RFC 4733)

    def _barge_in(self, slot: LegSlot, digit: str) -> None:
        playback = slot.playback
        if playback is not None and playback.barge_in:
            self._stop_playback(slot, "barged_in", digit)

    def receive_rtcp(self, call_id: str, data: bytes, source: Address, now: float) -> None:
        slot = self._slots.get(call_id)
        if slot is not None:
            slot.leg.receive_rtcp(data, source, now, now + self.wallclock_offset)

    # ------------------------------------------------------------------ pacing

    def _tick_at(self, now: float) -> int:
        return int((now - self.origin) / FRAME_SECONDS + _EPSILON)

    @property
    def next_deadline(self) -> float | None:
        """When `tick` must run next (monotonic seconds), or None with no leg open."""
        if not self._slots:
            return None
        return max(self.origin + self._next_tick * FRAME_SECONDS, self._catch_up_at)

    def tick(self, now: float) -> list[Transmit]:
        """Play the tick due by `now` (several if catching up all at once); return the RTP
        datagrams to send."""
        due = self._tick_at(now)
        transmits: list[Transmit] = []
        if due < self._next_tick or now < self._catch_up_at - _EPSILON:
            return transmits
        first = max(self._next_tick, due - self.settings.max_catch_up + 1)
        self.skipped_ticks += first - self._next_tick
        spacing = self.settings.catch_up_spacing
        last = first if spacing else due
        self._next_tick = last + 1
        # Behind the grid: the next tick follows after `spacing`, not at once (see above).
        self._catch_up_at = now + spacing if last < due else 0.0
        for tick in range(first, last + 1):
            if self._playing:
                self._play(tick, now, transmits)
            if self.keys.busy:
                self.keys.play_tones(tick, now, transmits)
        if self._decoding:
            self._decode(now, last, transmits)
        if self.keys.busy:
            self.keys.timers(now)
        if self._reports.due(now):
            self._reports.run(now, self._slots)
        return transmits

    def _play(self, tick: int, now: float, transmits: list[Transmit]) -> None:
        comfort_noise = self.settings.comfort_noise_dbm0 is not None
        for call_id, slot in list(self._playing.items()):
            playback = slot.playback
            assert playback is not None
            frame = playback.next_frame()
            leg = slot.leg
            noise = self._noise_frames(leg.law) if comfort_noise else None
            if frame is None:
                rest = leg.flush_frames(now)  # a last, shorter packet (ptime 40 or 60)
                if rest is not None:
                    transmits.append((call_id, rest, leg.destination))
                self._stop_playback(slot, "completed")
                continue
            if noise is not None and frame == slot.silence:
                frame = noise[tick % len(noise)]
            packet = leg.play_frame(frame, tick, now)
            if packet is not None:
                transmits.append((call_id, packet, leg.destination))
            if slot.recording is not None:
                slot.sent_pcm = slot.codec.decode(frame)

    def _noise_frames(self, law: Law) -> tuple[bytes, ...]:
        frames = self._noise.get(law)
        if frames is None:
            level = self.settings.comfort_noise_dbm0
            assert level is not None
            frames = self._noise[law] = comfort_noise_frames(law, level, self._rng.getrandbits(64))
        return frames

    def _decode(self, now: float, tick: int, transmits: list[Transmit]) -> None:
        slots = list(self._decoding.values())
        digits = decode_frames(slots, now, self.settings.max_pending_pcm)
        if self._monitors:
            self._monitors.play(tick, now, transmits)
        failed = write_recordings(slots)
        for slot, digit in digits:
            self._barge_in(slot, digit)
            self._events.append(
                DigitReceived(call_id=slot.leg.call_id, digit=digit, duration_ms=0, source="inband")
            )
        for slot in failed:
            logger.warning("call %s: recording failed", slot.leg.call_id)
            self.stop_recording(slot.leg.call_id)

    def take_rtcp(self) -> list[Transmit]:
        """RTCP datagrams produced by the last ticks (sent from each leg's RTCP port)."""
        return self._reports.take()

    def take_events(self) -> list[object]:
        """Media events since the last call; the list is handed over."""
        # Legs append to this very list, so it is copied and emptied, not replaced.
        out = list(self._events)
        self._events.clear()
        return out

    @property
    def has_events(self) -> bool:
        return bool(self._events)

    # ------------------------------------------------------------------ playback

    def play(
        self,
        call_id: str,
        prompts: tuple[Frames, ...],
        *,
        barge_in: bool = False,
        loop: bool = False,
    ) -> int:
        """Start playing `prompts` (frames in the leg's law) on a leg, replacing any playback.
        Returns the playback id that its `PlaybackFinished` event will carry."""
        slot = self._slot(call_id)
        self._stop_playback(slot, "stopped")
        playback_id = self._next_playback
        self._next_playback += 1
        slot.playback = Playback(playback_id, prompts, barge_in=barge_in, loop=loop)
        slot.leg.new_talkspurt()
        self._playing[call_id] = slot
        return playback_id

    def stop_playback(self, call_id: str) -> None:
        self._stop_playback(self._slot(call_id), "stopped")

    def playing(self, call_id: str) -> int | None:
        playback = self._slot(call_id).playback
        return playback.playback_id if playback is not None else None

    def _stop_playback(self, slot: LegSlot, reason: str, digit: str | None = None) -> None:
        playback = slot.playback
        if playback is None:
            return
        slot.playback = None
        self._playing.pop(slot.leg.call_id, None)
        slot.leg.new_talkspurt()
        self._events.append(
            PlaybackFinished(
                call_id=slot.leg.call_id,
                playback_id=playback.playback_id,
                reason=reason,  # type: ignore[arg-type]
                played_seconds=playback.played_seconds,
                digit=digit,
            )
        )

    # ------------------------------------------------------------------ bridging and hold

    def bridge(self, call_id: str, other_id: str) -> None:
        """Connect two legs so each hears the other (media relay, with µ-law↔A-law by table)."""
        if call_id == other_id:
            raise MediaStateError("a leg cannot be bridged to itself")
        first, second = self._slot(call_id), self._slot(other_id)
        for slot in (first, second):
            if slot.peer is not None:
                raise MediaStateError(f"call {slot.leg.call_id} is already bridged")
            if slot.mix is not None:
                raise MediaStateError(f"call {slot.leg.call_id} is monitoring a call")
        connect(first, second)
        self._update_decoding(first)
        self._update_decoding(second)

    def unbridge(self, call_id: str) -> None:
        slot = self._slot(call_id)
        if slot.mix is not None and slot.peer is not None:
            self.end_monitor(call_id)  # the monitored conversation is over
        peer = disconnect(slot)
        if peer is not None:
            self._update_decoding(slot)
            self._update_decoding(peer)

    def bridged_to(self, call_id: str) -> str | None:
        peer = self._slot(call_id).peer
        return peer.leg.call_id if peer is not None else None

    def hold(self, call_id: str, music: tuple[Frames, ...]) -> int | None:
        """Put a leg on hold: no audio either way across its bridge; it hears `music` looped
        (no playback when `music` is empty). Returns the music's playback id."""
        slot = self._slot(call_id)
        if slot.held:
            raise MediaStateError(f"call {call_id} is already on hold")
        slot.held = True
        update_relay(slot)
        if slot.mix is not None:
            self._monitors.remix(slot.mix)
        if any(music):
            return self.play(call_id, music, loop=True)
        self._stop_playback(slot, "stopped")
        return None

    def resume(self, call_id: str) -> None:
        slot = self._slot(call_id)
        if not slot.held:
            raise MediaStateError(f"call {call_id} is not on hold")
        slot.held = False
        self._stop_playback(slot, "stopped")
        update_relay(slot)
        if slot.mix is not None:
            self._monitors.remix(slot.mix)

    def is_held(self, call_id: str) -> bool:
        return self._slot(call_id).held

    # ------------------------------------------------------------------ supervisor monitoring

    def monitor(self, supervisor_id: str, agent_id: str, mode: MonitorMode) -> None:
        """Join the leg `supervisor_id` to the bridge of `agent_id` (the leg the supervisor
        coaches; its bridged peer is the caller) in `mode` (see `telephony.media.mix`)."""
        self._monitors.start(self._slot(supervisor_id), self._slot(agent_id), mode)

    def set_monitor_mode(self, call_id: str, mode: MonitorMode) -> None:
        """Change the mode of the monitored call that leg `call_id` takes part in."""
        self._monitors.set_mode(self._slot(call_id), mode)

    def monitor_mode(self, call_id: str) -> MonitorMode | None:
        mix = self._slot(call_id).mix
        return mix.mode if mix is not None else None

    def end_monitor(self, call_id: str) -> None:
        """Take the supervisor out of the monitored call that leg `call_id` takes part in (any
        of the three): caller and agent go back to their plain bridge. No-op if none."""
        slot = self._slots.get(call_id)
        if slot is not None:
            self._monitors.end(slot)

    # ------------------------------------------------------------------ decoding consumers

    def add_tap(self, call_id: str, tap: AudioTap) -> None:
        slot = self._slot(call_id)
        slot.taps.append(tap)
        self._update_decoding(slot)

    def remove_tap(self, call_id: str, tap: AudioTap) -> None:
        slot = self._slots.get(call_id)
        tap.close()
        if slot is not None and tap in slot.taps:
            slot.taps.remove(tap)
            self._update_decoding(slot)

    def enable_inband_dtmf(self, call_id: str, detector: InbandDtmfDetector | None = None) -> None:
        """Detect DTMF tones in the leg's audio (trunks that do not send RFC 4733 events)."""
        slot = self._slot(call_id)
        slot.inband = detector if detector is not None else InbandDtmfDetector()
        self._update_decoding(slot)

    def start_recording(
        self,
        call_id: str,
        recording_id: str,
        sink: RecordingSink,
        *,
        layout: str = "stereo",
        file: str = "",
    ) -> None:
        """Record the leg: what it receives, and what it sends (bridged peer or prompts).
        `file` names where the sink writes, for the event."""
        slot = self._slot(call_id)
        if slot.recording is not None:
            raise MediaStateError(f"call {call_id} is already being recorded")
        if layout not in ("mixed", "stereo"):
            raise ValueError(f"unknown recording layout {layout!r}")
        slot.recording = Recording(recording_id, sink, layout)
        self._update_decoding(slot)
        if slot.peer is not None:
            self._update_decoding(slot.peer)
        if slot.mix is not None:
            self._monitors.remix(slot.mix)
        self._events.append(
            RecordingStarted(
                call_id=call_id,
                recording_id=recording_id,
                layout=layout,  # type: ignore[arg-type]
                file=file,
            )
        )

    def stop_recording(self, call_id: str) -> float | None:
        """Stop and close the leg's recording; its duration in seconds, None if there was none."""
        slot = self._slot(call_id)
        recording = slot.recording
        if recording is None:
            return None
        slot.recording = None
        try:
            recording.sink.close()
        except OSError as error:
            logger.warning("call %s: closing recording failed: %s", call_id, error)
        duration = recording.sink.duration_seconds
        self._update_decoding(slot)
        if slot.peer is not None:
            self._update_decoding(slot.peer)
        if slot.mix is not None:
            self._monitors.remix(slot.mix)
        self._events.append(
            RecordingStopped(
                call_id=call_id, recording_id=recording.recording_id, duration_seconds=duration
            )
        )
        return duration

    def _update_decoding(self, slot: LegSlot) -> None:
        peer = slot.peer
        slot.recorded_by_peer = peer is not None and peer.recording is not None
        call_id = slot.leg.call_id
        if slot.decodes and not slot.closed:
            slot.leg.enable_decoding()
            self._decoding[call_id] = slot
        else:
            slot.leg.disable_decoding()
            if slot.inband is not None:
                slot.inband.reset()
            slot.pending_pcm.clear()
            slot.tick_pcm = None
            self._decoding.pop(call_id, None)
