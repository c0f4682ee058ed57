"""SIP dialogs (RFC 3261 §12), sans-IO: their state, the requests sent in them, and the checks on
requests received in them.

A `Dialog` is created from a 1xx/2xx with a To tag on the UAC side (§12.1.2) or when the UAS
answers (§12.1.1). It builds in-dialog requests with the route set and loose/strict routing of
§12.2.1.1, checks the CSeq order of requests received (§12.2.2, 500 when out of order), and keeps
the re-INVITE bookkeeping of §14 (491 on glare, 500 + Retry-After on overlapping incoming
re-INVITEs, the glare retry delay of §14.1). `DialogSet` finds the dialog of a message by its ID
(Call-ID, local tag, remote tag) and answers 481 when there is none (§12.2.2). The merged-request
(482, §8.2.2.2) and Max-Forwards (483) checks live in `dialog_checks`.

Dialog state changes follow one transition table (`_TRANSITIONS`): early -> confirmed on a 2xx to
the INVITE, early -> terminated on a non-2xx final response, any -> terminated on BYE, 481 or 408
(§12.2.1.2, §15).
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import MappingProxyType

from telephony.sip.errors import SipParseError
from telephony.sip.headers import Headers
from telephony.sip.message import SipRequest, SipResponse, build_response
from telephony.sip.uri import NameAddr, SipUri

logger = logging.getLogger(__name__)

# Requests that may change the remote target: INVITE (RFC 3261 §12.2), UPDATE (RFC 3311), REFER
# (RFC 3515), SUBSCRIBE and NOTIFY (RFC 6665).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "REFER", "SUBSCRIBE", "NOTIFY"})
MAX_FORWARDS = 70  # §8.1.1.6
_MAX_INITIAL_CSEQ = 2**31  # §8.1.1.5: a UAC's first CSeq number is below 2**31


class DialogError(Exception):
    """Local error: the TU asked a dialog for something the RFC forbids (e.g. a second INVITE
    while one is in progress, §14.1)."""


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogEvent(enum.Enum):
    ANSWERED = "2xx to the dialog-creating INVITE"
    REJECTED = "non-2xx final response to the dialog-creating INVITE"
    ENDED = "BYE sent or received, or 481/408 to an in-dialog request"


_TRANSITIONS = MappingProxyType(
    {
        (DialogState.EARLY, DialogEvent.ANSWERED): DialogState.CONFIRMED,
        (DialogState.EARLY, DialogEvent.REJECTED): DialogState.TERMINATED,
        (DialogState.EARLY, DialogEvent.ENDED): DialogState.TERMINATED,
        # A 2xx retransmission or a second 2xx to the same INVITE changes nothing.
        (DialogState.CONFIRMED, DialogEvent.ANSWERED): DialogState.CONFIRMED,
        (DialogState.CONFIRMED, DialogEvent.ENDED): DialogState.TERMINATED,
        (DialogState.TERMINATED, DialogEvent.ENDED): DialogState.TERMINATED,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogId:
    """RFC 3261 §12: Call-ID, local tag and remote tag identify a dialog."""

    call_id: str
    local_tag: str
    remote_tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """A response the TU must send instead of serving a request."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def response_to(self, request: SipRequest, *, to_tag: str | None = None) -> SipResponse:
        return build_response(
            request, self.status, self.reason, to_tag=to_tag, headers=self.headers
        )


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * secrets.randbelow(1_000_001) / 1_000_000


def _uri_of(name_addr: str) -> str:
    return str(NameAddr.parse(name_addr).uri)


def _secure(uri: str, transport: str) -> bool:
    # §12.1.1 / §12.1.2: secure when the request went over TLS to a SIPS Request-URI.
    return transport.upper() == "TLS" and uri.lower().startswith("sips:")


def _contact_uri(message: SipRequest | SipResponse) -> str | None:
    contact = message.headers.get("Contact")
    return _uri_of(contact) if contact is not None else None


class Dialog:
    """One dialog's state (RFC 3261 §12). Mutable; owned by the UA core that created it."""

    __slots__ = (
        "_invite_in",
        "_invite_out",
        "call_id",
        "call_id_owner",
        "local_party",
        "local_seq",
        "local_tag",
        "local_target",
        "remote_party",
        "remote_seq",
        "remote_tag",
        "remote_target",
        "route_set",
        "secure",
        "state",
    )

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_party: NameAddr,
        remote_party: NameAddr,
        local_seq: int | None,
        remote_seq: int | None,
        remote_target: str,
        local_target: str | None,
        route_set: Iterable[str],
        secure: bool,
        state: DialogState,
        call_id_owner: bool,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        # From/To of our requests, tags included (§12.2.1.1).
        self.local_party = local_party.with_tag(local_tag)
        self.remote_party = remote_party.with_tag(remote_tag)
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.remote_target = remote_target
        self.local_target = local_target
        self.route_set: tuple[str, ...] = tuple(route_set)
        self.secure = secure
        self.state = state
        # §14.1: the element that chose the Call-ID waits longer after a 491.
        self.call_id_owner = call_id_owner
        self._invite_out: int | None = None  # CSeq of our INVITE awaiting its final response
        self._invite_in: int | None = None  # CSeq of their INVITE we have not answered finally

    # -- creation ---------------------------------------------------------------------------

    @classmethod
    def uac(cls, request: SipRequest, response: SipResponse, *, transport: str = "UDP") -> Dialog:
        """The dialog a 101-299 response with a To tag creates for the UAC (§12.1.2)."""
        remote_tag = response.to.tag
        local_tag = request.from_.tag
        if remote_tag is None or local_tag is None or not 101 <= response.status < 300:
            raise DialogError("only a 101-299 response with To and From tags creates a dialog")
        dialog = cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_party=request.from_,
            remote_party=response.to,
            local_seq=request.cseq.number,
            remote_seq=None,
            remote_target=_contact_uri(response) or request.uri,
            local_target=_contact_uri(request),
            # §12.1.2: the UAC's route set is the Record-Route of the response, reversed.
            route_set=reversed(response.headers.get_all("Record-Route")),
            secure=_secure(request.uri, transport),
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            call_id_owner=True,
        )
        if request.method == "INVITE" and response.status < 200:
            dialog._invite_out = request.cseq.number
        return dialog

    @classmethod
    def uas(
        cls,
        request: SipRequest,
        response: SipResponse,
        *,
        transport: str = "UDP",
        initial_seq: int | None = None,
    ) -> Dialog:
        """The dialog the UAS creates when it answers `request` with `response` (§12.1.1).

        `response` is the 101-299 response being sent, with our To tag and Contact (and the
        request's Record-Route, see `copy_record_route`). `initial_seq` fixes the first CSeq
        of our own requests; by default it is chosen at random below 2**31 (§8.1.1.5).
        """
        local_tag = response.to.tag
        remote_tag = request.from_.tag
        if local_tag is None or not 101 <= response.status < 300:
            raise DialogError("the answering response needs a To tag and a 101-299 status")
        if remote_tag is None:
            # RFC 2543 peers omit the From tag (§12.2.2 allows an empty remote tag).
            remote_tag = ""
        remote_target = _contact_uri(request)
        if remote_target is None:
            raise DialogError("a dialog-creating request must carry Contact (§8.1.1.8)")
        dialog = cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_party=response.to,
            remote_party=request.from_,
            local_seq=initial_seq,
            remote_seq=request.cseq.number,
            remote_target=remote_target,
            local_target=_contact_uri(response),
            # §12.1.1: the UAS keeps Record-Route in the order of the request.
            route_set=request.headers.get_all("Record-Route"),
            secure=_secure(request.uri, transport),
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            call_id_owner=False,
        )
        if request.method == "INVITE" and response.status < 200:
            dialog._invite_in = request.cseq.number
        return dialog

    @property
    def id(self) -> DialogId:
        return DialogId(call_id=self.call_id, local_tag=self.local_tag, remote_tag=self.remote_tag)

    @property
    def invite_pending(self) -> bool:
        """An INVITE transaction is in progress in either direction (§14.1)."""
        return self._invite_out is not None or self._invite_in is not None

    def apply(self, event: DialogEvent) -> DialogState:
        """Step the dialog's table; a pair not in it is a local error."""
        target = _TRANSITIONS.get((self.state, event))
        if target is None:
            raise DialogError(f"dialog {self.id}: no transition for {event.value} in {self.state}")
        if target is not self.state and logger.isEnabledFor(logging.DEBUG):
            logger.debug("dialog %s: %s -> %s", self.call_id, self.state.value, target.value)
        self.state = target
        return target

    # -- requests we send (§12.2.1) ---------------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> SipRequest:
        """A request inside the dialog (§12.2.1.1), without Via (the transaction layer adds it).

        INVITE is refused while another INVITE is in progress in either direction (§14.1).
        """
        if method in ("ACK", "CANCEL"):
            raise DialogError(f"{method} is built by create_ack or the transaction layer")
        if self.state is DialogState.TERMINATED:
            raise DialogError(f"dialog {self.id} has terminated")
        if method == "INVITE" and self.invite_pending:
            raise DialogError("§14.1: an INVITE is already in progress on this dialog")
        if self.local_seq is None:
            self.local_seq = secrets.randbelow(_MAX_INITIAL_CSEQ - 1) + 1
        else:
            self.local_seq += 1
        if method == "INVITE":
            self._invite_out = self.local_seq
        return self._build(method, self.local_seq, body, content_type, headers)

    def resend_cseq(self, request: SipRequest) -> int:
        """The CSeq number for `request`, sent in this dialog and challenged (401/407), to go
        out again with credentials: a new transaction takes the next number (§8.1.3.5,
        §12.2.1.1). A re-INVITE stays the INVITE in progress under its new number (§14.1)."""
        if self.state is DialogState.TERMINATED:
            raise DialogError(f"dialog {self.id} has terminated")
        self.local_seq = max(self.local_seq or 0, request.cseq.number) + 1
        if request.method == "INVITE" and self._invite_out == request.cseq.number:
            self._invite_out = self.local_seq
        return self.local_seq

    def create_ack(
        self,
        invite_cseq: int,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> SipRequest:
        """The ACK for a 2xx to the INVITE with CSeq `invite_cseq` (§13.2.2.4): same CSeq number,
        method ACK, routed like any in-dialog request. `body` carries a delayed SDP answer."""
        return self._build("ACK", invite_cseq, body, content_type, headers)

    def next_hop(self) -> SipUri:
        """Where an in-dialog request goes first: the top route, else the remote target (§8.1.2);
        the TU resolves it to an address (RFC 3263)."""
        if self.route_set:
            return NameAddr.parse(self.route_set[0]).uri
        return SipUri.parse(self.remote_target)

    def _build(
        self,
        method: str,
        cseq: int,
        body: bytes,
        content_type: str | None,
        extra: Iterable[tuple[str, str]],
    ) -> SipRequest:
        uri, routes = self._request_uri_and_routes()
        out = Headers()
        for route in routes:
            out.add("Route", route)
        out.add("Max-Forwards", str(MAX_FORWARDS))
        out.add("From", str(self.local_party))
        out.add("To", str(self.remote_party))
        out.add("Call-ID", self.call_id)
        out.add("CSeq", f"{cseq} {method}")
        if method in TARGET_REFRESH_METHODS and self.local_target is not None:
            out.add("Contact", f"<{self.local_target}>")
        for name, value in extra:
            out.add(name, value)
        if content_type is not None:
            out.add("Content-Type", content_type)
        return SipRequest(method=method, uri=uri, headers=out, body=body)

    def _request_uri_and_routes(self) -> tuple[str, list[str]]:
        """§12.2.1.1: loose routing keeps the remote target as Request-URI; a strict first hop
        (no `lr`) takes the Request-URI and the remote target becomes the last Route."""
        if not self.route_set:
            return self.remote_target, []
        first = NameAddr.parse(self.route_set[0])
        if "lr" in first.uri.params:
            return self.remote_target, list(self.route_set)
        # §19.1.1 Table 1: a Request-URI carries no `method` parameter and no headers.
        params = {k: v for k, v in first.uri.params.items() if k != "method"}
        strict_uri = SipUri(
            scheme=first.uri.scheme,
            user=first.uri.user,
            password=first.uri.password,
            host=first.uri.host,
            port=first.uri.port,
            params=params,
        )
        return str(strict_uri), [*self.route_set[1:], f"<{self.remote_target}>"]

    # -- responses to our requests (§12.2.1.2) ----------------------------------------------

    def response_received(self, request: SipRequest, response: SipResponse) -> None:
        """Update the dialog with a response to a request it sent (or to the INVITE that
        created it): end of the INVITE in progress, target refresh, early -> confirmed, and the
        dialog's end on 481/408."""
        status = response.status
        if status < 200:
            if self.state is DialogState.EARLY and request.method == "INVITE":
                self._refresh_target(response)
            return
        method = request.method
        cseq = request.cseq.number
        if method == "INVITE" and self._invite_out == cseq:
            self._invite_out = None
        if status in (408, 481):
            # §12.2.1.2: the peer has lost the dialog (or cannot be reached).
            self.apply(DialogEvent.ENDED)
            return
        if self.state is DialogState.EARLY and method == "INVITE":
            if status < 300:
                # §13.2.2.4: the route set is recomputed from the 2xx.
                self.route_set = tuple(reversed(response.headers.get_all("Record-Route")))
                self._refresh_target(response)
                self.apply(DialogEvent.ANSWERED)
            else:
                self.apply(DialogEvent.REJECTED)
            return
        if status < 300 and method in TARGET_REFRESH_METHODS:
            self._refresh_target(response)
        if method == "BYE":
            self.apply(DialogEvent.ENDED)

    def glare_retry_delay(self, uniform: Callable[[float, float], float] = _uniform) -> float:
        """Seconds to wait before retrying a re-INVITE that got 491 (§14.1): 2.1-4 s for the
        owner of the Call-ID, 0-2 s for the other side, in units of 10 ms."""
        low, high = (2.1, 4.0) if self.call_id_owner else (0.0, 2.0)
        return round(uniform(low, high), 2)

    # -- requests we receive (§12.2.2) ------------------------------------------------------

    def receive_request(
        self, request: SipRequest, *, uniform: Callable[[float, float], float] = _uniform
    ) -> Rejection | None:
        """Check an in-dialog request; returns the response to send instead of serving it.

        - CSeq lower than the last one received: 500 (§12.2.2).
        - INVITE while our own INVITE is in progress: 491 (§14.2, glare).
        - INVITE while their previous INVITE is unanswered: 500 with Retry-After 0-10 s (§14.2).
        ACK for a 2xx passes (it carries the INVITE's CSeq and no response).
        """
        method = request.method
        if method == "ACK":
            return None
        cseq = request.cseq.number
        if self.remote_seq is not None and cseq < self.remote_seq:
            return Rejection(status=500, reason="CSeq Out of Order")
        self.remote_seq = cseq
        if method == "INVITE":
            if self._invite_out is not None:
                return Rejection(status=491)
            if self._invite_in is not None:
                retry = int(uniform(0.0, 10.0))
                return Rejection(status=500, headers=(("Retry-After", str(retry)),))
            self._invite_in = cseq
        elif method == "BYE":
            self.apply(DialogEvent.ENDED)
        return None

    def response_sent(self, request: SipRequest, response: SipResponse) -> None:
        """Update the dialog with a response the TU sent to a request received in it."""
        if response.status < 200:
            return
        if request.method == "INVITE" and self._invite_in == request.cseq.number:
            self._invite_in = None
            if self.state is DialogState.EARLY:
                self.apply(DialogEvent.ANSWERED if response.status < 300 else DialogEvent.REJECTED)
        # The remote target changes once the refresh is accepted (RFC 6141 §3.2 on §12.2.2).
        if response.status < 300 and request.method in TARGET_REFRESH_METHODS:
            self._refresh_target(request)

    def _refresh_target(self, message: SipRequest | SipResponse) -> None:
        try:
            target = _contact_uri(message)
        except SipParseError as exc:
            logger.debug("dialog %s: unusable Contact ignored: %s", self.call_id, exc.detail)
            return
        if target is not None:
            self.remote_target = target


def copy_record_route(request: SipRequest, response: SipResponse) -> SipResponse:
    """Copy the request's Record-Route into a dialog-creating response (§12.1.1)."""
    for value in request.headers.get_lines("Record-Route"):
        response.headers.add("Record-Route", value)
    return response


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch:
    """Where an incoming request belongs: `dialog` when it matched one, `rejection` when it must
    be answered with an error instead of being served."""

    dialog: Dialog | None = None
    rejection: Rejection | None = None
    drop: bool = False


class DialogSet:
    """The dialogs of one UA, keyed by (Call-ID, local tag, remote tag)."""

    __slots__ = ("_dialogs",)

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def add(self, dialog: Dialog) -> None:
        if dialog.id in self._dialogs:
            raise DialogError(f"dialog {dialog.id} already exists")
        self._dialogs[dialog.id] = dialog

    def remove(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.pop(dialog_id, None)

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def match_request(self, request: SipRequest) -> Dialog | None:
        """The dialog a received request belongs to: our tag is in To, theirs in From."""
        to_tag = request.to.tag
        if to_tag is None:
            return None
        from_tag = request.from_.tag or ""
        return self._dialogs.get(
            DialogId(call_id=request.call_id, local_tag=to_tag, remote_tag=from_tag)
        )

    def match_response(self, response: SipResponse) -> Dialog | None:
        """The dialog a response to our request belongs to: our tag in From, theirs in To."""
        local_tag = response.from_.tag
        remote_tag = response.to.tag
        if local_tag is None or remote_tag is None:
            return None
        return self._dialogs.get(
            DialogId(call_id=response.call_id, local_tag=local_tag, remote_tag=remote_tag)
        )

    def dispatch(
        self, request: SipRequest, *, uniform: Callable[[float, float], float] = _uniform
    ) -> Dispatch:
        """Route a received request (not CANCEL, which the transaction layer matches).

        No To tag: outside any dialog, the TU serves it as a new request. A To tag that names no
        dialog: 481 (§12.2.2), or a silent drop for an ACK, which gets no response. Otherwise the
        dialog's own checks (`Dialog.receive_request`) decide; a dialog ended by BYE leaves the
        set.
        """
        if request.to.tag is None:
            return Dispatch()
        dialog = self.match_request(request)
        if dialog is None:
            if request.method == "ACK":
                return Dispatch(drop=True)
            return Dispatch(rejection=Rejection(status=481))
        rejection = dialog.receive_request(request, uniform=uniform)
        if dialog.state is DialogState.TERMINATED:
            self._dialogs.pop(dialog.id, None)
        return Dispatch(dialog=dialog, rejection=rejection)
