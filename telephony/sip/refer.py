"""REFER (RFC 3515) as the server receives it from an agent's phone: reading Refer-To, and the
NOTIFY requests that report the transfer's progress, sans-IO.

A phone's blind transfer is a REFER in its call with us. We accept it with 202, which creates an
implicit subscription to the "refer" event in that dialog (§2.4.4); its first NOTIFY says
"100 Trying" (§2.4.4: a NOTIFY is sent at once), and the last one carries the final status of
the new call as a message/sipfrag body with Subscription-State: terminated (§2.4.5).
"""

from __future__ import annotations

from dataclasses import dataclass

from telephony.sip.errors import SipParseError, reason_phrase_for
from telephony.sip.message import SipRequest
from telephony.sip.uri import NameAddr

#: RFC 3420 sipfrag with the version parameter RFC 3515 §2.4.5 asks for.
SIPFRAG = "message/sipfrag;version=2.0"
#: How long (seconds) we keep the implicit subscription open while the transfer runs.
SUBSCRIPTION_SECONDS = 60


class ReferError(Exception):
    """A REFER that cannot be accepted; `status` is the response to send (RFC 3515 §2.4.2)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferTarget:
    """Where a REFER asks the call to go."""

    refer_to: str  # the Refer-To URI as written
    user: str  # its user part: an agent's SIP user or a number
    replaces: str | None  # RFC 3891 Replaces of an attended transfer, unescaped


def read_refer_to(request: SipRequest) -> ReferTarget:
    """The target of a REFER. RFC 3515 §2.4.1: exactly one Refer-To, else 400."""
    values = request.headers.get_all("Refer-To")
    if len(values) != 1:
        raise ReferError(400, f"a REFER needs exactly one Refer-To, not {len(values)}")
    try:
        address = NameAddr.parse(values[0])
    except SipParseError as exc:
        raise ReferError(400, f"unreadable Refer-To: {exc.detail}") from None
    uri = address.uri
    if uri.scheme not in ("sip", "sips", "tel") or not uri.user:
        # We can only transfer to an agent or a number: a URI without a user names neither.
        raise ReferError(400, f"Refer-To names no user or number: {values[0][:80]!r}")
    method = uri.params.get("method")
    if method is not None and method.upper() != "INVITE":
        # §2.4.2: a REFER for another method is refused; only call transfers are served.
        raise ReferError(403, f"Refer-To asks for method {method[:20]}")
    replaces = next((v for k, v in uri.headers.items() if k.lower() == "replaces"), None)
    return ReferTarget(refer_to=str(uri), user=uri.user, replaces=replaces)


def sipfrag(status: int) -> bytes:
    """The status line of the referred call as a message/sipfrag body (RFC 3515 §2.4.5)."""
    return f"SIP/2.0 {status} {reason_phrase_for(status)}\r\n".encode("ascii")


def notify_headers(final: bool) -> list[tuple[str, str]]:
    """Event and Subscription-State of a NOTIFY for the implicit refer subscription (§2.4.4)."""
    state = "terminated;reason=noresource" if final else f"active;expires={SUBSCRIPTION_SECONDS}"
    return [("Event", "refer"), ("Subscription-State", state)]
