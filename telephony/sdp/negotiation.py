"""The SDP offer/answer model (RFC 3264) for one audio stream.

Works on the session descriptions of `telephony.sdp.description` (RFC 4566). The negotiation
functions only ever accept one audio stream (G.711 PCMU or PCMA plus RFC 4733 telephone-event)
and reject every other stream with port 0, as RFC 3264 §6 asks.

Comfort noise (RFC 3389 §5, static payload type 13 "CN/8000") is offered, and accepted when
offered: the media legs take it in (counted, heard as silence). The peer's `a=rtcp` (RFC 3605)
says where its RTCP goes (`Negotiated.rtcp`). RTCP multiplexing (`a=rtcp-mux`, RFC 5761) is
neither offered nor answered: by RFC 5761 §5.1.1 a peer that offered it then keeps RTP and
RTCP on separate ports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from telephony.sdp.description import (
    PCMA,
    PCMU,
    Attribute,
    Codec,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    SdpError,
    SdpNegotiationError,
    SessionDescription,
)

__all__ = [
    "TELEPHONE_EVENT",
    "Negotiated",
    "SdpSession",
    "answer_offer",
    "make_offer",
    "process_answer",
]

TELEPHONE_EVENT = "telephone-event"
COMFORT_NOISE = "CN"
_CN_PAYLOAD_TYPE = 13  # static (RFC 3551 §6, table 4)
# RFC 4733 events we understand: DTMF 0-9 * # A-D (0-15) and flash (16).
_SUPPORTED_EVENTS = frozenset(range(17))
_SUPPORTED_PROTOS = ("RTP/AVP", "RTP/AVPF")
# Stands in for our o= line until `SdpSession.stamp` writes the real one.
_PLACEHOLDER_ORIGIN = Origin(session_id="0", session_version=0, address="0.0.0.0")


@dataclass(frozen=True, slots=True, kw_only=True)
class Negotiated:
    """What an offer/answer exchange settled for the one audio stream we accepted."""

    codec: Codec  # with the payload type both sides use on this session
    telephone_event: int | None  # RFC 4733 payload type, None when the peer has none
    remote_address: str
    remote_port: int
    ptime: int  # milliseconds per packet the peer wants to receive (RFC 4566 §6 a=ptime)
    direction: Direction  # ours: whether we may send and should expect to receive
    media_index: int  # which m= line of the description carries the stream
    rtcp: tuple[str, int] | None = None  # the peer's a=rtcp address (RFC 3605), if it gave one
    comfort_noise: bool = False  # both sides take RFC 3389 comfort noise

    @property
    def remote_hold(self) -> bool:
        """The peer does not want our media (RFC 3264 §8.4: sendonly, inactive, or c=0.0.0.0)."""
        return not self.direction.sends


class SdpSession:
    """Our side of one SDP session: a fixed session id and a version that goes up by exactly one
    each time what we say changes, and stays put when we repeat ourselves (RFC 3264 §8)."""

    def __init__(
        self, *, session_id: int, address: str, username: str = "-", version: int = 0
    ) -> None:
        self._template = Origin(
            username=username,
            session_id=str(session_id),
            session_version=version,
            addr_type="IP6" if ":" in address else "IP4",
            address=address,
        )
        self._last: SessionDescription | None = None

    @property
    def version(self) -> int:
        return self._template.session_version

    def stamp(self, description: SessionDescription) -> SessionDescription:
        """`description` with our o= line; bumps the version if its content changed."""
        body = replace(description, origin=self._template)
        if self._last is not None and body != self._last:
            version = self._template.session_version + 1
            self._template = replace(self._template, session_version=version)
            body = replace(description, origin=self._template)
        self._last = body
        return body


def answer_offer(
    offer: SessionDescription,
    local_address: str,
    local_port: int,
    *,
    session: SdpSession,
    supported: Sequence[Codec] = (PCMU, PCMA),
    prefer: Literal["offer", "local"] = "offer",
    direction: Direction = Direction.SENDRECV,
    ptime: int = 20,
) -> tuple[SessionDescription, Negotiated]:
    """Answer `offer`: accept the first usable audio stream with one codec (the offerer's first in
    `supported` with prefer="offer", else ours), keep the offerer's payload type numbers (RFC 3264
    §6.1), reject every other stream with port 0 in the same order (§6). `direction` is what we
    want (sendonly when we hold). Raises `SdpNegotiationError` (488), and only that, when nothing
    can be accepted.
    """
    answers: list[MediaDescription] = []
    negotiated: Negotiated | None = None
    reasons: list[str] = []
    for index, media in enumerate(offer.media):
        if negotiated is not None or media.port == 0 or media.media != "audio":
            answers.append(_rejected(media))
            continue
        if media.proto not in _SUPPORTED_PROTOS:
            reasons.append(f"audio stream {index} uses {media.proto}")
            answers.append(_rejected(media))
            continue
        codec = _choose_codec(media, supported, prefer)
        if codec is None:
            offered = ", ".join(_format_name(media, fmt) for fmt in media.formats)
            reasons.append(f"audio stream {index} offers no supported codec ({offered})")
            answers.append(_rejected(media))
            continue
        connection = offer.connection_for(media)
        if connection is None:
            # RFC 4566 §5.7: a stream needs a c= of its own or one at session level.
            reasons.append(f"audio stream {index} has no c= line")
            answers.append(_rejected(media))
            continue
        event_pt, events = _telephone_event(media, codec.clock_rate)
        # RFC 3264 §6.1: we send only if the offerer receives, receive only if it sends. A c= of
        # 0.0.0.0 (§8.4) means the offerer cannot receive, whatever its attribute says.
        offered = media.direction(offer.direction)
        ours = Direction.from_flags(
            send=offered.receives and not connection.unspecified and direction.sends,
            receive=offered.sends and direction.receives,
        )
        formats = [str(codec.payload_type)]
        attributes = [Attribute("rtpmap", f"{codec.payload_type} {codec.name}/{codec.clock_rate}")]
        if event_pt is not None:
            formats.append(str(event_pt))
            attributes.append(
                Attribute("rtpmap", f"{event_pt} {TELEPHONE_EVENT}/{codec.clock_rate}")
            )
            attributes.append(Attribute("fmtp", f"{event_pt} {events}"))
        comfort_noise = _offers_comfort_noise(media, codec.clock_rate)
        if comfort_noise:
            formats.append(str(_CN_PAYLOAD_TYPE))
            attributes.append(Attribute("rtpmap", f"{_CN_PAYLOAD_TYPE} {COMFORT_NOISE}/8000"))
        attributes += [Attribute("ptime", str(ptime)), Attribute(ours.value)]
        answers.append(
            MediaDescription(
                media="audio",
                port=local_port,
                proto=media.proto,
                formats=tuple(formats),
                attributes=tuple(attributes),
            )
        )
        negotiated = Negotiated(
            codec=codec,
            telephone_event=event_pt,
            remote_address=connection.address,
            remote_port=media.port,
            ptime=_ptime(media),
            direction=ours,
            media_index=index,
            rtcp=_rtcp_address(media, connection.address),
            comfort_noise=comfort_noise,
        )
    if negotiated is None:
        detail = "; ".join(reasons) or "no audio stream offered"
        raise SdpNegotiationError(f"nothing in common: {detail}")
    answer = SessionDescription(
        origin=_PLACEHOLDER_ORIGIN,
        connection=Connection.for_address(local_address),
        media=tuple(answers),
    )
    return session.stamp(answer), negotiated


def make_offer(
    local_address: str,
    local_port: int,
    *,
    session: SdpSession,
    codecs: Sequence[Codec] = (PCMU, PCMA),
    telephone_event: int | None = 101,
    ptime: int = 20,
    direction: Direction = Direction.SENDRECV,
    comfort_noise: bool = True,
) -> SessionDescription:
    """An offer for one audio stream, for calls we originate (to agents) or re-offers (hold).
    Stamped through `session`, so a changed re-offer carries the next o= version."""
    if not codecs:
        raise ValueError("an offer needs at least one codec")
    formats = [str(codec.payload_type) for codec in codecs]
    attributes = [
        Attribute("rtpmap", f"{codec.payload_type} {codec.name}/{codec.clock_rate}")
        for codec in codecs
    ]
    if telephone_event is not None:
        formats.append(str(telephone_event))
        attributes.append(Attribute("rtpmap", f"{telephone_event} {TELEPHONE_EVENT}/8000"))
        attributes.append(Attribute("fmtp", f"{telephone_event} 0-16"))
    if comfort_noise:
        formats.append(str(_CN_PAYLOAD_TYPE))
        attributes.append(Attribute("rtpmap", f"{_CN_PAYLOAD_TYPE} {COMFORT_NOISE}/8000"))
    attributes += [Attribute("ptime", str(ptime)), Attribute(direction.value)]
    media = MediaDescription(
        media="audio", port=local_port, formats=tuple(formats), attributes=tuple(attributes)
    )
    description = SessionDescription(
        origin=_PLACEHOLDER_ORIGIN, connection=Connection.for_address(local_address), media=(media,)
    )
    return session.stamp(description)


def process_answer(offer: SessionDescription, answer: SessionDescription) -> Negotiated:
    """Read the answer to an offer we made (`make_offer`). Raises `SdpError` when the answer breaks
    RFC 3264 §6 and `SdpNegotiationError` when it accepted no audio stream with a codec we offered.
    """
    if len(answer.media) != len(offer.media):
        raise SdpError(
            f"answer has {len(answer.media)} m= lines, offer had {len(offer.media)} (RFC 3264 §6)"
        )
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True)):
        if ours.media != "audio" or ours.port == 0 or theirs.port == 0:
            continue
        # The answer's order is the answerer's preference; its payload type numbers are the ones
        # it expects to receive (RFC 3264 §6.1).
        offered = [
            Codec(
                name=rtpmap.encoding, payload_type=rtpmap.payload_type, clock_rate=rtpmap.clock_rate
            )
            for fmt in ours.formats
            if (rtpmap := ours.rtpmap(fmt)) is not None
            and rtpmap.encoding.lower() not in (TELEPHONE_EVENT, COMFORT_NOISE.lower())
        ]
        codec = _choose_codec(theirs, offered, "offer")
        if codec is None:
            raise SdpNegotiationError(f"answer stream {index} has no codec we offered")
        connection = _require_connection(answer, theirs, index)
        our_direction = ours.direction(offer.direction)
        their_direction = theirs.direction(answer.direction)
        event_pt, _ = _telephone_event(theirs, codec.clock_rate)
        return Negotiated(
            codec=codec,
            telephone_event=event_pt,
            remote_address=connection.address,
            remote_port=theirs.port,
            ptime=_ptime(theirs),
            direction=Direction.from_flags(
                send=our_direction.sends
                and their_direction.receives
                and not connection.unspecified,
                receive=our_direction.receives and their_direction.sends,
            ),
            media_index=index,
            rtcp=_rtcp_address(theirs, connection.address),
            comfort_noise=_offers_comfort_noise(theirs, codec.clock_rate)
            and _offers_comfort_noise(ours, codec.clock_rate),
        )
    raise SdpNegotiationError("the answer rejected every audio stream")


def _rejected(media: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a rejected stream is answered with port 0 and (any of) the offered formats.
    return MediaDescription(media=media.media, port=0, proto=media.proto, formats=media.formats)


def _format_name(media: MediaDescription, fmt: str) -> str:
    rtpmap = media.rtpmap(fmt)
    return fmt if rtpmap is None else f"{rtpmap.encoding}/{rtpmap.clock_rate}"


def _choose_codec(
    media: MediaDescription, supported: Sequence[Codec], prefer: Literal["offer", "local"]
) -> Codec | None:
    offered: list[tuple[int, int, Codec]] = []
    for position, fmt in enumerate(media.formats):
        rtpmap = media.rtpmap(fmt)
        for rank, codec in enumerate(supported):
            if rtpmap is not None and codec.matches(rtpmap):
                offered.append((position, rank, replace(codec, payload_type=rtpmap.payload_type)))
    if not offered:
        return None
    offered.sort(key=(lambda item: item[0]) if prefer == "offer" else (lambda item: item[1]))
    return offered[0][2]


def _telephone_event(media: MediaDescription, clock_rate: int) -> tuple[int | None, str]:
    """RFC 4733 §7.1: the offered telephone-event payload type at the codec's clock rate, and the
    events both sides know as an fmtp value. Without fmtp the offerer supports 0-15 (§7.1.1)."""
    for fmt in media.formats:
        rtpmap = media.rtpmap(fmt)
        if rtpmap is None or rtpmap.encoding.lower() != TELEPHONE_EVENT:
            continue
        if rtpmap.clock_rate != clock_rate:
            continue
        events = _parse_events(media.fmtp(fmt) or "0-15")
        common = sorted(events & _SUPPORTED_EVENTS)
        if common:
            return rtpmap.payload_type, _format_events(common)
    return None, ""


def _offers_comfort_noise(media: MediaDescription, clock_rate: int) -> bool:
    """Whether the stream lists CN at the codec's rate (RFC 3389 §5; 8000 for G.711)."""
    for fmt in media.formats:
        rtpmap = media.rtpmap(fmt)
        if (
            rtpmap is not None
            and rtpmap.encoding.upper() == COMFORT_NOISE
            and rtpmap.clock_rate == clock_rate
            and rtpmap.payload_type == _CN_PAYLOAD_TYPE
        ):
            return True
    return False


def _rtcp_address(media: MediaDescription, rtp_address: str) -> tuple[str, int] | None:
    """RFC 3605 §2.1: ``a=rtcp:<port> [IN IP4|IP6 <address>]``; the address defaults to the
    stream's. None when absent or unreadable (RTCP then goes to the RTP port + 1)."""
    value = media.attribute("rtcp")
    if value is None:
        return None
    parts = value.split()
    if not parts or not parts[0].isdigit() or not 0 < int(parts[0]) <= 0xFFFF:
        return None
    if len(parts) == 4 and parts[1] == "IN" and parts[2] in ("IP4", "IP6"):
        return parts[3], int(parts[0])
    return (rtp_address, int(parts[0])) if len(parts) == 1 else None


def _parse_events(value: str) -> frozenset[int]:
    events: set[int] = set()
    for part in value.replace(" ", "").split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            return frozenset()  # an fmtp we cannot read: do not guess which events it means
        events.update(range(int(low), int(high if dash else low) + 1))
    return frozenset(events)


def _format_events(events: Sequence[int]) -> str:
    ranges: list[str] = []
    start = previous = events[0]
    for event in [*events[1:], -2]:
        if event != previous + 1:
            ranges.append(str(start) if start == previous else f"{start}-{previous}")
            start = event
        previous = event
    return ",".join(ranges)


def _ptime(media: MediaDescription) -> int:
    value = media.attribute("ptime")
    if value is not None and value.strip().isdigit() and 10 <= int(value) <= 60:
        return int(value) // 10 * 10
    return 20


def _require_connection(
    description: SessionDescription, media: MediaDescription, index: int
) -> Connection:
    connection = description.connection_for(media)
    if connection is None:
        # RFC 4566 §5.7: every media section needs a c= of its own or one at session level.
        raise SdpError(f"media stream {index} has no c= line at media or session level")
    return connection
