"""Phases of an IVR session and the error raised when the runner breaks the protocol."""

from __future__ import annotations

import enum

from ivr.actions import IvrAction
from ivr.events import IvrEvent

__all__ = ["IvrOutput", "IvrUsageError", "Phase"]

#: What a session returns: actions for the runner and domain events for the bus.
IvrOutput = IvrAction | IvrEvent


class IvrUsageError(Exception):
    """The runner gave an input the session cannot take in its phase (a local error)."""


class Phase(enum.Enum):
    IDLE = "idle"
    #: A prompt with no question is playing (play, hang-up, voicemail or callback announcement).
    PLAYING = "playing"
    #: A question's greeting is playing; the caller may already answer (barge-in).
    PROMPTING = "prompting"
    #: The greeting is over; the silence timer runs.
    AWAITING_INPUT = "awaiting_input"
    #: Keys are coming in; the inter-digit timer runs.
    ENTERING_DIGITS = "entering_digits"
    LOOKING_UP = "looking_up"
    RECORDING = "recording"
    FINISHED = "finished"
