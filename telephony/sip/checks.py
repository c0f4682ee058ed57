"""UAS request inspection, RFC 3261 §8.2: the answers a request gets before any call logic sees it.

Each check returns the response to send, or None when the request may go on. The order is the one
§8.2 gives: method (§8.2.1), header inspection (§8.2.2: URI scheme, merged requests, Require),
content (§8.2.3), plus Max-Forwards exhaustion (§16.3 step 3; a UAS answers 483 as well), the
Accept a response body must satisfy (§21.4.7: 406) and the address of record of a REGISTER
(§10.2: a SIP or SIPS URI in To, else 400).
"""

from __future__ import annotations

from collections.abc import Iterable

from telephony.sip.errors import SipParseError
from telephony.sip.grammar import split_list
from telephony.sip.message import SipRequest, SipResponse, build_response

#: Methods this server implements as a UAS. REFER is accepted in dialogs for transfers (RFC 3515).
SUPPORTED_METHODS = (
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "REFER",
    "NOTIFY",
)
ALLOW = ", ".join(SUPPORTED_METHODS)
#: Methods defined by SIP extensions that this server knows but does not serve: 405, not 501.
KNOWN_UNSERVED_METHODS = frozenset({"SUBSCRIBE", "PUBLISH", "MESSAGE", "PRACK"})
#: Option tags (RFC 3261 §19.2) a peer may put in Require and still be served.
SUPPORTED_OPTIONS = frozenset({"replaces", "norefersub"})
ACCEPTED_CONTENT_TYPES = frozenset({"application/sdp"})
#: What a 200 to OPTIONS or INVITE says we can do (RFC 3261 §11.2, §20.5, §20.1, §20.37).
CAPABILITIES = (
    ("Allow", ALLOW),
    ("Accept", "application/sdp"),
    ("Supported", ", ".join(sorted(SUPPORTED_OPTIONS))),
)
URI_SCHEMES = frozenset({"sip", "sips", "tel"})


def inspect_request(
    request: SipRequest, *, to_tag: str, merged: bool = False
) -> SipResponse | None:
    """The response RFC 3261 §8.2 requires for a request we cannot serve, or None.

    `merged` says the UA core found the request to be a merged copy of one it is already
    handling (§8.2.2.2, see `MergedRequestDetector`); it is answered 482 in its place in §8.2.
    """
    method = request.method
    if method not in SUPPORTED_METHODS:
        # §8.2.1: 405 for a method we recognise but do not allow, 501 for one we do not know.
        status = 405 if method in KNOWN_UNSERVED_METHODS else 501
        return build_response(request, status, to_tag=to_tag, headers=[("Allow", ALLOW)])
    if method in ("ACK", "CANCEL"):
        # ACK never gets a response; CANCEL is matched by the transaction layer (§9.2).
        return None
    scheme = request.uri.split(":", 1)[0].lower() if ":" in request.uri else ""
    if scheme not in URI_SCHEMES:
        # §8.2.2.1: an unsupported Request-URI scheme is answered 416.
        return build_response(request, 416, to_tag=to_tag)
    try:
        max_forwards = request.max_forwards
    except SipParseError:
        return build_response(request, 400, "Bad Max-Forwards", to_tag=to_tag)
    if max_forwards == 0 and method != "OPTIONS":
        # §16.3 step 3 (OPTIONS with Max-Forwards 0 may be answered by the UAS itself, §11).
        return build_response(request, 483, to_tag=to_tag)
    if merged:
        # §8.2.2.2: the same request reached us twice by different paths (a forking proxy).
        return build_response(request, 482, to_tag=to_tag)
    unsupported = sorted(_unsupported(request.headers.get_all("Require")))
    if unsupported:
        # §8.2.2.3: list what we do not support in Unsupported.
        return build_response(
            request, 420, to_tag=to_tag, headers=[("Unsupported", ", ".join(unsupported))]
        )
    if method == "REGISTER" and not _to_is_sip(request):
        # §10.2: the address of record in To must be a SIP or SIPS URI (RFC 4475 §3.3.4).
        return build_response(request, 400, "Address Of Record Must Be A SIP URI", to_tag=to_tag)
    if request.body and method in ("INVITE", "UPDATE", "ACK"):
        content_type = (request.content_type or "").split(";", 1)[0].strip().lower()
        if content_type not in ACCEPTED_CONTENT_TYPES:
            # §8.2.3: 415 with what we accept.
            return build_response(
                request, 415, to_tag=to_tag, headers=[("Accept", "application/sdp")]
            )
        encoding = request.headers.get("Content-Encoding")
        if encoding is not None and encoding.strip().lower() not in ("", "identity"):
            return build_response(
                request, 415, to_tag=to_tag, headers=[("Accept-Encoding", "identity")]
            )
    if (method == "INVITE" or (method == "UPDATE" and request.body)) and not _accepts_sdp(request):
        # §21.4.7: our answer carries SDP; a request whose Accept rules SDP out gets 406
        # (RFC 4475 §3.3.15).
        return build_response(request, 406, to_tag=to_tag)
    return None


def drop_foreign_credentials(request: SipRequest) -> None:
    """Forget Authorization values in a scheme other than Digest, the only one we implement.

    RFC 3261 §22.4 makes Digest the scheme of SIP; credentials in an unknown scheme cannot be
    verified, so the request is treated as one without credentials and challenged with 401
    (RFC 4475 §3.3.7), rather than refused as malformed.
    """
    lines = request.headers.get_lines("Authorization")
    # Auth scheme names are case-insensitive (RFC 3261 §25.1 via RFC 2617).
    digest = [line for line in lines if _auth_scheme(line) == "digest"]
    if len(digest) != len(lines):
        request.headers.remove("Authorization")
        for line in digest:
            request.headers.add("Authorization", line)


def _auth_scheme(value: str) -> str:
    words = value.split(None, 1)
    return words[0].lower() if words else ""


def _to_is_sip(request: SipRequest) -> bool:
    try:
        return request.to.uri.is_sip
    except SipParseError:
        return False


def _accepts_sdp(request: SipRequest) -> bool:
    """Whether the Accept header fields (if any) admit application/sdp (§20.1: absent means
    application/sdp; present but empty means no body at all)."""
    if "Accept" not in request.headers:
        return True
    for value in request.headers.get_all("Accept"):
        media_range = value.split(";", 1)[0].strip().lower()
        if media_range in ("application/sdp", "application/*", "*/*"):
            return True
    return False


def _unsupported(requires: Iterable[str]) -> Iterable[str]:
    for value in requires:
        for tag in split_list(value):
            if tag.strip().lower() not in SUPPORTED_OPTIONS:
                yield tag.strip()
