"""Key presses on the media path, sans-IO: RFC 4733 events in, passed on, or played as tones.

A telephone-event (RFC 4733) that arrives on a leg is detected there (`DtmfReceiver`: each key
once, with its duration) and passed on to every leg that hears that leg
(`bridge.event_targets`): the bridged peer on a plain bridge, each listener of the speaker
while a supervisor monitors the call (`telephony.media.mix`). The event packets are relayed as
they come, restamped into the listener's stream (RFC 4733 §2.5: its timestamp stays that of the
key's start), to a listener that negotiated telephone-events. A listener that did not gets the
key as tones in its audio (`telephony.rtp.tones`), once the key is released and for as long as
it was held; the tones replace what it hears meanwhile, and its relay resumes after them.

Nothing goes to a listener that hears a prompt or music on hold: that replaces what it hears.
"""

from __future__ import annotations

from collections.abc import Callable

from telephony.media.bridge import LegSlot, event_targets
from telephony.media.events import DigitReceived
from telephony.media.leg import Transmit
from telephony.media.playout import Playback
from telephony.rtp.dtmf import DtmfDigit, DtmfKeyDown, DtmfOutput
from telephony.rtp.packet import RtpPacket
from telephony.rtp.tones import dtmf_tone_frames

__all__ = ["Keys"]


class Keys:
    """The RFC 4733 side of every leg of one engine."""

    def __init__(self, events: list[object], barge_in: Callable[[LegSlot, str], None]) -> None:
        self._events = events
        self._barge_in = barge_in
        self._timed: dict[str, LegSlot] = {}  # receivers waiting for a key's end
        self._toning: dict[str, LegSlot] = {}
        self.sends: list[Transmit] = []
        """Datagrams beyond the one `receive` returned (a key relayed to two listeners)."""

    @property
    def busy(self) -> bool:
        """Whether a tick has work here (a key's end to time, tones to play)."""
        return bool(self._timed or self._toning)

    def take_sends(self) -> list[Transmit]:
        """The datagrams left in `sends`, handed over."""
        out, self.sends = self.sends, []
        return out

    def forget(self, call_id: str) -> None:
        self._timed.pop(call_id, None)
        self._toning.pop(call_id, None)

    def receive(self, slot: LegSlot, packet: RtpPacket, now: float) -> Transmit | None:
        """One telephone-event packet of `slot`'s leg: detect, and relay it (the first datagram
        returned, any other left in `sends`)."""
        leg = slot.leg
        outputs = leg.dtmf.receive(packet.timestamp, packet.marker, packet.payload, now)
        if outputs:
            self._on_outputs(slot, outputs)
        if leg.dtmf.next_deadline() is not None:
            self._timed[leg.call_id] = slot
        first: Transmit | None = None
        for target in event_targets(slot):
            out = target.leg
            if target.playback is not None or target.tone is not None:
                continue
            if out.event_payload_type is None:
                continue  # it gets the key as tones once released
            transmit = (
                out.call_id,
                out.relay_packet(packet, packet.payload, out.event_payload_type, now),
                out.destination,
            )
            if first is None:
                first = transmit
            else:
                self.sends.append(transmit)
        return first

    def timers(self, now: float) -> None:
        """Keys whose end packets were all lost end by timeout (RFC 4733 §2.5.1.4)."""
        for call_id, slot in list(self._timed.items()):
            receiver = slot.leg.dtmf
            deadline = receiver.next_deadline()
            if deadline is None:
                del self._timed[call_id]
            elif now >= deadline:
                self._on_outputs(slot, receiver.handle_timer(now))
                del self._timed[call_id]

    def _on_outputs(self, slot: LegSlot, outputs: tuple[DtmfOutput, ...]) -> None:
        call_id = slot.leg.call_id
        for output in outputs:
            if isinstance(output, DtmfKeyDown):
                self._barge_in(slot, output.digit)
            elif isinstance(output, DtmfDigit):
                self._tones_for(slot, output)
                self._events.append(
                    DigitReceived(
                        call_id=call_id,
                        digit=output.digit,
                        duration_ms=output.duration_ms,
                        source="rfc4733",
                    )
                )

    def _tones_for(self, slot: LegSlot, digit: DtmfDigit) -> None:
        for target in event_targets(slot):
            leg = target.leg
            if leg.event_payload_type is not None or target.playback is not None:
                continue
            frames = dtmf_tone_frames(digit.digit, digit.duration_ms, leg.law)
            if not frames:
                continue
            if target.tone is None:
                target.tone = Playback(0, (frames,))
                leg.new_talkspurt()
                self._toning[leg.call_id] = target
            else:  # keys pressed in quick succession: one after the other
                target.tone.prompts = (*target.tone.prompts, frames)

    def play_tones(self, tick: int, now: float, transmits: list[Transmit]) -> None:
        """One tick of every leg hearing tones."""
        for call_id, slot in list(self._toning.items()):
            tone = slot.tone
            frame = tone.next_frame() if tone is not None and slot.playback is None else None
            leg = slot.leg
            if frame is None:
                # Done (or a prompt started meanwhile, which takes over): relay resumes.
                rest = leg.flush_frames(now)
                if rest is not None:
                    transmits.append((call_id, rest, leg.destination))
                slot.tone = None
                del self._toning[call_id]
                leg.new_talkspurt()
                continue
            packet = leg.play_frame(frame, tick, now)
            if packet is not None:
                transmits.append((call_id, packet, leg.destination))
            if slot.recording is not None:
                slot.sent_pcm = slot.codec.decode(frame)
