"""SDP session descriptions (RFC 4566) and the offer/answer model for audio (RFC 3264).

Sans-IO: bytes in, values out. `telephony.sdp.description` holds the session-description types,
errors, parser and serializer (RFC 4566); `telephony.sdp.negotiation` holds `SdpSession` and the
offer/answer functions (RFC 3264), which only ever accept one audio stream (G.711 PCMU or PCMA
plus RFC 4733 telephone-event) and reject every other stream with port 0, as RFC 3264 §6 asks.
"""

from telephony.sdp.description import (
    PCMA,
    PCMU,
    Attribute,
    Codec,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SdpError,
    SdpNegotiationError,
    SessionDescription,
    parse_sdp,
)
from telephony.sdp.negotiation import (
    TELEPHONE_EVENT as TELEPHONE_EVENT,
)
from telephony.sdp.negotiation import (
    Negotiated,
    SdpSession,
    answer_offer,
    make_offer,
    process_answer,
)

__all__ = [
    "PCMA",
    "PCMU",
    "Attribute",
    "Codec",
    "Connection",
    "Direction",
    "MediaDescription",
    "Negotiated",
    "Origin",
    "RtpMap",
    "SdpError",
    "SdpNegotiationError",
    "SdpSession",
    "SessionDescription",
    "answer_offer",
    "make_offer",
    "parse_sdp",
    "process_answer",
]
