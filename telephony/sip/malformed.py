"""Answering requests the parser refused (RFC 3261 §8.2, §18.3, §21.4; RFC 4475 §3.1.2), sans-IO.

A `SipParseError` carries the status to answer with (400, 413, 416, 420, 505, 513 ...) and, when
the start line and header fields could be read, the request as far as it went. When the parser
gave up earlier (a malformed request line, a message over the size limit) this module reads the
request again leniently: method from the first word of the start line, header fields as written.
Such a request is answered when a response can be routed to its sender: it has a Via and is not
an ACK (ACK is never answered, §17.2.1). Responses and anything less readable are dropped; the
caller counts them.

Where the response goes follows §18.2.2 and RFC 3581 §4 from the top Via. When that Via itself
is the broken part, the datagram's source is the only address known to reach the sender, and the
response goes there, as `rport` would have sent it.
"""

from __future__ import annotations

from telephony.sip.checks import ALLOW
from telephony.sip.errors import SipParseError
from telephony.sip.grammar import is_token
from telephony.sip.headers import parse_header_lines
from telephony.sip.message import SipMessage, SipRequest, build_response
from telephony.sip.transaction_server import response_destination
from telephony.sip.transaction_types import Address, Transmit
from telephony.sip.uri import NameAddr


def salvage_request(data: bytes, *, max_head: int) -> SipRequest | None:
    """The request in `data` as far as its start line's first word and its header fields read,
    or None when `data` is a response or not even that much is readable.

    Only the first `max_head` bytes are searched for the end of the header section, so an
    oversized message (513) can still be answered when its header section is of a sane size.
    """
    start = 0
    # RFC 3261 §7.5: CRLFs before the start line are ignored.
    while data.startswith(b"\r\n", start):
        start += 2
    end = data.find(b"\r\n\r\n", start, start + max_head)
    if end < 0:
        return None
    head = data[start:end].decode("utf-8", "surrogateescape")
    lines = head.split("\r\n")
    if any("\r" in line or "\n" in line for line in lines):
        return None
    start_line = lines[0]
    if start_line[:4].upper() == "SIP/":
        return None  # a response: never answered (§18.1.2)
    method, _, rest = start_line.partition(" ")
    if not is_token(method):
        return None
    try:
        headers = parse_header_lines(lines[1:])
    except SipParseError:
        return None
    # Between the method and the version, whatever spacing the request line had.
    uri = rest.strip().rpartition(" ")[0].strip() or rest.strip()
    return SipRequest(method=method, uri=uri, headers=headers)


def check_stream_framing(message: SipMessage) -> None:
    """RFC 3261 §18.3 / §20.14: on a stream, Content-Length is what frames a message; one without
    it cannot be delimited and is refused (the transport closes the connection after)."""
    if "Content-Length" not in message.headers:
        raise SipParseError(
            "Content-Length is mandatory on a stream transport",
            request=message if isinstance(message, SipRequest) else None,
        )


def stamp_received(request: SipRequest, source: Address) -> None:
    """RFC 3261 §18.2.1 and RFC 3581 §4: note in the top Via where the request really came from,
    so that responses find a sender behind NAT. A Via that does not parse is left alone."""
    try:
        # The view every layer reads: parsed once per message (and again only if we rewrite it).
        top = request.top_via
    except SipParseError:
        return  # no Via, or one that does not parse
    params: dict[str, str | None] = {}
    if top.host.strip("[]") != source[0]:
        params["received"] = source[0]
    if top.has_rport:
        params["received"] = source[0]
        params["rport"] = str(source[1])
    if params:
        vias = request.headers.get_all("Via")
        request.headers.remove("Via")
        request.headers.add("Via", str(top.with_params(params)))
        for value in vias[1:]:
            request.headers.add("Via", value)


def refusal(
    error: SipParseError, request: SipRequest, source: Address, transport: str, to_tag: str
) -> Transmit | None:
    """The final response to a request the parser refused, addressed per §18.2.2, or None when
    it must not or cannot be answered (an ACK, no Via)."""
    if request.method == "ACK" or "Via" not in request.headers:
        return None
    stamp_received(request, source)
    # §8.2.1 / §20.5: a 405 or 501 says what we do implement.
    allow = [("Allow", ALLOW)] if error.status in (405, 501) else []
    response = build_response(
        request,
        error.status,
        error.reason_phrase,
        to_tag=_tag_if_readable(request, to_tag),
        headers=allow,
    )
    try:
        destination = response_destination(request.top_via, source, transport)
    except SipParseError:
        destination = source
    return Transmit(data=response.to_bytes(), destination=destination, transport=transport)


def _tag_if_readable(request: SipRequest, to_tag: str) -> str | None:
    """§8.2.6.2: a final response adds a To tag; only possible when To itself parses."""
    value = request.headers.get("To")
    if value is None:
        return None
    try:
        NameAddr.parse(value)
    except SipParseError:
        return None
    return to_tag
