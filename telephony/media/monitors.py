"""The supervisor mixes of one media engine, sans-IO: joining, re-planning and leaving them.

`telephony.media.mix` says who hears whom in one monitored call; this keeps every such call of
the engine (by the supervisor's leg), checks that a monitor request makes sense for the legs'
current state, and tells the engine which legs' decoding changed (`update_decoding`), since a
leg that speaks into a mix must be decoded and one that no longer does need not.

In the engine, a listener that hears one party keeps the cut-through relay; one that hears two
gets, at each tick, the saturated sum of their decoded frames (after the decoding pass and
before recordings are written, so a recording holds what was mixed). With no monitor a bridge's
relay is untouched and nothing is decoded for it. After a stalled loop the mix sends one frame
per catch-up step (the jitter buffers keep the rest, bounded).
"""

from __future__ import annotations

from collections.abc import Callable

from telephony.media.bridge import LegSlot, MediaStateError, update_relay
from telephony.media.leg import Transmit
from telephony.media.mix import Mix, MonitorMode

__all__ = ["Monitors"]


class Monitors:
    """Every monitored call of one engine."""

    def __init__(self, update_decoding: Callable[[LegSlot], None]) -> None:
        self._mixes: dict[str, Mix] = {}  # by the supervisor's leg
        self._update_decoding = update_decoding

    def __bool__(self) -> bool:
        return bool(self._mixes)

    def start(self, supervisor: LegSlot, agent: LegSlot, mode: MonitorMode) -> None:
        """Join `supervisor` to the bridge of `agent` (whose bridged peer is the caller)."""
        caller = agent.peer
        if caller is None:
            raise MediaStateError(f"call {agent.leg.call_id} is not bridged")
        if supervisor.peer is not None or supervisor is caller or supervisor is agent:
            raise MediaStateError(f"call {supervisor.leg.call_id} is bridged: it cannot monitor")
        for slot in (supervisor, agent, caller):
            if slot.mix is not None:
                raise MediaStateError(f"call {slot.leg.call_id} is already in a monitored call")
        mix = Mix(caller=caller, agent=agent, supervisor=supervisor, mode=MonitorMode(mode))
        self._mixes[supervisor.leg.call_id] = mix
        self.remix(mix)

    def set_mode(self, slot: LegSlot, mode: MonitorMode) -> None:
        mix = slot.mix
        if mix is None:
            raise MediaStateError(f"call {slot.leg.call_id} is not in a monitored call")
        mix.mode = MonitorMode(mode)
        self.remix(mix)

    def end(self, slot: LegSlot) -> None:
        """Take the supervisor out of the monitored call `slot` takes part in (any of the three):
        caller and agent go back to their plain bridge. No-op if none."""
        mix = slot.mix
        if mix is None:
            return
        self._mixes.pop(mix.supervisor.leg.call_id, None)
        mix.release()
        update_relay(mix.caller)
        for member in mix.members:
            self._update_decoding(member)

    def remix(self, mix: Mix) -> None:
        """Apply the plan again (mode, hold or recording changed)."""
        mix.apply()
        for member in mix.members:
            self._update_decoding(member)

    def play(self, tick: int, now: float, transmits: list[Transmit]) -> None:
        """One tick of every mix (after the decoding pass)."""
        for mix in self._mixes.values():
            mix.play(tick, now, transmits)
