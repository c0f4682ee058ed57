"""A supervisor on a bridged call, sans-IO: who hears whom, and the per-tick mix of two voices.

Three parties take part: the caller, the agent (the leg a supervisor coaches) and the
supervisor. The monitor mode decides who hears whom (`HEARS`):

=======  ==================  ===================  ================
mode     caller hears        agent hears          supervisor hears
=======  ==================  ===================  ================
listen   agent               caller               caller + agent
whisper  agent               caller + supervisor  caller + agent
barge    agent + supervisor  caller + supervisor  caller + agent
=======  ==================  ===================  ================

A party on hold (the caller, when the call API or the agent's phone holds) neither hears nor is
heard; it hears its music on hold instead, like on a plain bridge.

How each listener is fed (`plan`). A listener that hears a single party gets that party's
packets relayed as they arrive, exactly as a plain bridge does: no decoding, no added delay, so
listen mode leaves the caller and the agent as they were. A listener that hears two parties gets
one frame per engine tick: the sum of the two parties' decoded frames, saturated to 16 bits,
encoded in the listener's law (`Mix.play`). Each speaker's audio comes through its leg's jitter
buffer and the few decoded frames the engine keeps per leg (`EngineSettings.max_pending_pcm`):
that is the per-source buffer that lets a late or lost packet from one party cost only that
party's frame (concealed, or left out) while the tick goes on with the others. A speaker with no
frame at a tick is simply left out of the sum; a listener none of whose speakers has one gets no
packet at that tick.

Packets relayed and frames mixed share the listener's sequence numbers and media clock; every
change of plan starts a new talkspurt (marker bit, RFC 3551 §4.1), so the far end re-anchors
its playout when a listener moves between relay and mix.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

import numpy as np

from telephony.media.leg import Address
from telephony.media.tap import Pcm
from telephony.rtp.g711 import SAMPLES_PER_FRAME

if TYPE_CHECKING:
    from telephony.media.bridge import LegSlot

__all__ = ["HEARS", "Mix", "MixPlan", "MonitorMode", "Party", "mix_pcm", "plan"]

_INT16_MIN: Final = -32768
_INT16_MAX: Final = 32767
_SILENCE: Final = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
_SILENCE.flags.writeable = False


class MonitorMode(enum.StrEnum):
    """How a supervisor takes part in a call."""

    LISTEN = "listen"
    """Hears the caller and the agent; nobody hears the supervisor."""
    WHISPER = "whisper"
    """Hears both; the agent hears the supervisor too, the caller does not (coaching)."""
    BARGE = "barge"
    """Joins the conversation: everyone hears the other two."""


class Party(enum.Enum):
    CALLER = "caller"
    AGENT = "agent"
    SUPERVISOR = "supervisor"


_C, _A, _S = Party.CALLER, Party.AGENT, Party.SUPERVISOR

#: listener -> the parties it hears, per mode (the table in the module docstring).
HEARS: Final[Mapping[MonitorMode, Mapping[Party, tuple[Party, ...]]]] = MappingProxyType(
    {
        MonitorMode.LISTEN: MappingProxyType({_C: (_A,), _A: (_C,), _S: (_C, _A)}),
        MonitorMode.WHISPER: MappingProxyType({_C: (_A,), _A: (_C, _S), _S: (_C, _A)}),
        MonitorMode.BARGE: MappingProxyType({_C: (_A, _S), _A: (_C, _S), _S: (_C, _A)}),
    }
)


@dataclass(frozen=True, slots=True)
class MixPlan:
    """How every listener is fed: packets relayed from one speaker, or frames mixed."""

    relays: tuple[tuple[Party, Party], ...]
    """(speaker, listener): the speaker's packets go to the listener as they arrive."""
    mixes: tuple[tuple[Party, tuple[Party, ...]], ...]
    """(listener, speakers): once per tick, the listener gets the sum of the speakers' frames."""

    @property
    def decoded(self) -> frozenset[Party]:
        """The parties whose audio must be decoded (they speak into a mix)."""
        return frozenset(speaker for _, speakers in self.mixes for speaker in speakers)


def plan(mode: MonitorMode, held: frozenset[Party] = frozenset()) -> MixPlan:
    """The plan for `mode` with the parties in `held` on hold (they hear and are heard by no one).

    A leg relays to one listener at most; a second listener that hears only that same speaker
    gets its audio through the mix instead (with the modes above this never happens, but the
    rule keeps the plan valid whatever the table says).
    """
    relays: list[tuple[Party, Party]] = []
    mixes: list[tuple[Party, tuple[Party, ...]]] = []
    relaying: set[Party] = set()
    for listener, speakers in HEARS[mode].items():
        if listener in held:
            continue
        audible = tuple(speaker for speaker in speakers if speaker not in held)
        if not audible:
            continue
        if len(audible) == 1 and audible[0] not in relaying:
            relaying.add(audible[0])
            relays.append((audible[0], listener))
        else:
            mixes.append((listener, audible))
    return MixPlan(relays=tuple(relays), mixes=tuple(mixes))


def mix_pcm(frames: Sequence[Pcm | None]) -> Pcm | None:
    """The sum of the frames that are there, saturated to the int16 range; None if none is.

    Summed in 32 bits, so two full-scale voices clip at ±32767 instead of wrapping round. A
    frame shorter than the others (a peer with another packet time) adds to their start.
    """
    present = [frame for frame in frames if frame is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    present.sort(key=len, reverse=True)
    total = present[0].astype(np.int32)
    for frame in present[1:]:
        total[: len(frame)] += frame
    # Two in-place ufuncs: np.clip costs several times more per call on a 160-sample frame.
    np.maximum(total, _INT16_MIN, out=total)
    np.minimum(total, _INT16_MAX, out=total)
    mixed: Pcm = total.astype(np.int16)
    return mixed


@dataclass(slots=True, eq=False)
class Mix:
    """The three legs of one monitored call and the plan that feeds them (engine state)."""

    caller: LegSlot
    agent: LegSlot
    supervisor: LegSlot
    mode: MonitorMode
    outputs: list[tuple[LegSlot, tuple[LegSlot, ...]]] = field(default_factory=list)
    """The listeners fed by the mix at each tick, with their speakers (from the plan)."""
    hearers: dict[LegSlot, tuple[LegSlot, ...]] = field(default_factory=dict)
    """speaker -> the legs that hear it, relayed or mixed (where its telephone-events go)."""

    @property
    def members(self) -> tuple[LegSlot, LegSlot, LegSlot]:
        return (self.caller, self.agent, self.supervisor)

    def slot(self, party: Party) -> LegSlot:
        if party is Party.CALLER:
            return self.caller
        return self.agent if party is Party.AGENT else self.supervisor

    def apply(self) -> MixPlan:
        """Set each leg's relay target and decoding as the plan for the current mode and holds
        says. The engine then updates the legs' decoding (`LegSlot.decodes`)."""
        held = frozenset(party for party in Party if self.slot(party).held)
        current = plan(self.mode, held)
        for slot in self.members:
            slot.mix = self
            slot.relay_to = None
            slot.transcode = None
            slot.leg.new_talkspurt()
        for speaker, listener in current.relays:
            source, target = self.slot(speaker), self.slot(listener)
            source.relay_to = target
            source.transcode = source.codec.transcode_table(target.codec.law)
        decoded = current.decoded
        recorded = any(slot.recording is not None for slot in self.members)
        for party in Party:
            # A recording of any leg takes what each leg sent: every voice is decoded then.
            self.slot(party).mix_decode = recorded or party in decoded
        self.outputs = [
            (self.slot(listener), tuple(self.slot(speaker) for speaker in speakers))
            for listener, speakers in current.mixes
        ]
        hearers: dict[LegSlot, list[LegSlot]] = {}
        for speaker, listener in current.relays:
            hearers.setdefault(self.slot(speaker), []).append(self.slot(listener))
        for listener, speakers in current.mixes:
            for speaker in speakers:
                hearers.setdefault(self.slot(speaker), []).append(self.slot(listener))
        self.hearers = {speaker: tuple(listeners) for speaker, listeners in hearers.items()}
        return current

    def release(self) -> None:
        """Leave the legs as a plain bridge (caller and agent) and an idle supervisor leg; the
        caller's relay is recomputed by the engine (`update_relay`)."""
        caller, agent = self.caller, self.agent
        for slot in self.members:
            slot.mix = None
            slot.mix_decode = False
            slot.relay_to = None
            slot.transcode = None
            slot.leg.new_talkspurt()
        caller.transcode = caller.codec.transcode_table(agent.codec.law)
        agent.transcode = agent.codec.transcode_table(caller.codec.law)
        self.outputs = []
        self.hearers = {}

    def play(self, tick: int, now: float, transmits: list[tuple[str, bytes, Address]]) -> None:
        """One tick: a mixed frame to every listener fed by the mix (decoded frames of this tick
        are in each speaker's `tick_pcm`); what each recorded leg was sent, for its recording."""
        for listener, speakers in self.outputs:
            if listener.playback is not None or listener.tone is not None:
                continue  # a prompt, music on hold or a DTMF tone replaces what it would hear
            pcm = mix_pcm([speaker.tick_pcm for speaker in speakers])
            if pcm is None:
                continue
            leg = listener.leg
            payload = listener.codec.encode(pcm)
            transmits.append((leg.call_id, leg.frame_packet(payload, tick, now), leg.destination))
            if listener.recording is not None:
                listener.sent_pcm = pcm
        for listener in self.members:
            if listener.recording is None or listener.sent_pcm is not None:
                continue  # not recorded, or its frame is set (mixed above, or a prompt played)
            source = next((s for s in self.members if s.relay_to is listener), None)
            if source is not None and source.tick_pcm is not None:
                listener.sent_pcm = source.tick_pcm
            else:
                # Nothing reached it this tick: silence, not what its own relay target heard.
                listener.sent_pcm = _SILENCE
