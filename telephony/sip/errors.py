"""Errors raised by the SIP message layer.

A `SipParseError` is a *remote* error: the peer sent something malformed. It carries the final
response a server should answer with (RFC 3261 §8.2, §21) so that the transport or the UA core can
reply without re-deriving why the message failed.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from telephony.sip.message import SipRequest

# RFC 3261 §21 default reason phrases (plus a few from later RFCs) for the statuses this layer and
# the UA layer produce.
REASON_PHRASES = MappingProxyType(
    {
        100: "Trying",
        180: "Ringing",
        181: "Call Is Being Forwarded",
        182: "Queued",
        183: "Session Progress",
        200: "OK",
        202: "Accepted",
        300: "Multiple Choices",
        301: "Moved Permanently",
        302: "Moved Temporarily",
        305: "Use Proxy",
        380: "Alternative Service",
        400: "Bad Request",
        401: "Unauthorized",
        402: "Payment Required",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        406: "Not Acceptable",
        407: "Proxy Authentication Required",
        408: "Request Timeout",
        410: "Gone",
        413: "Request Entity Too Large",
        414: "Request-URI Too Long",
        415: "Unsupported Media Type",
        416: "Unsupported URI Scheme",
        420: "Bad Extension",
        421: "Extension Required",
        423: "Interval Too Brief",
        480: "Temporarily Unavailable",
        481: "Call/Transaction Does Not Exist",
        482: "Loop Detected",
        483: "Too Many Hops",
        484: "Address Incomplete",
        485: "Ambiguous",
        486: "Busy Here",
        487: "Request Terminated",
        488: "Not Acceptable Here",
        491: "Request Pending",
        493: "Undecipherable",
        500: "Server Internal Error",
        501: "Not Implemented",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Server Time-out",
        505: "Version Not Supported",
        513: "Message Too Large",
        600: "Busy Everywhere",
        603: "Decline",
        604: "Does Not Exist Anywhere",
        606: "Not Acceptable",
    }
)


def reason_phrase_for(status: int) -> str:
    """The RFC 3261 §21 reason phrase for `status`, or a class-generic one for unknown codes."""
    phrase = REASON_PHRASES.get(status)
    if phrase is not None:
        return phrase
    # RFC 3261 §8.1.3.2: an unknown code is treated as the x00 of its class.
    return REASON_PHRASES.get(status // 100 * 100, "Unknown")


class SipParseError(ValueError):
    """A message the peer sent is malformed.

    `status` is the response to send when one can be sent (400, 413, 414, 416, 420, 505, 513 ...),
    `reason_phrase` the text for it, `detail` a short why. `request` is the request as far as it
    could be read (start line and header fields) when that much was well-formed, so that a
    transport can build the error response with `build_response` (RFC 3261 §8.2.6); it is None
    for responses and for messages too broken to answer, which are dropped (RFC 3261 §18.3).
    """

    status: int
    reason_phrase: str
    detail: str
    request: SipRequest | None

    def __init__(
        self,
        detail: str,
        *,
        status: int = 400,
        reason_phrase: str | None = None,
        request: SipRequest | None = None,
    ) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.reason_phrase = (
            reason_phrase if reason_phrase is not None else (reason_phrase_for(status))
        )
        self.detail = detail
        self.request = request
