"""New offers on a call in progress (RFC 3264 §8), sans-IO: answering the peer's, writing ours.

The media of a leg does not move when its peer re-offers: we keep our address, port and codec
and answer with our current description, changing only what the offer obliges us to change —
the direction (§6.1: a sendonly offer gets a recvonly answer; §8.4: a=inactive, or c=0.0.0.0 in
an RFC 2543 phone's hold, means "do not send to me"). A description we repeat unchanged keeps its
o= version; a changed one goes up by exactly one (§8). Our own hold is the same change in the
other direction: our description with a=sendonly (§8.4), and a=sendrecv again to resume.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from telephony.sdp import (
    Attribute,
    Codec,
    Direction,
    MediaDescription,
    SdpError,
    SdpSession,
    SessionDescription,
    answer_offer,
    parse_sdp,
)

_DIRECTIONS = frozenset(direction.value for direction in Direction)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reoffer:
    """What a peer's new offer settled: our answer and where its media now comes from."""

    answer: bytes
    remote_address: str
    remote_port: int
    #: The peer does not want our media: it holds the call (RFC 3264 §8.4).
    remote_hold: bool
    #: Where the peer now wants its RTCP: its a=rtcp (RFC 3605), None when it gave none.
    remote_rtcp: tuple[str, int] | None = None


def answer_reoffer(local_sdp: bytes, offer: bytes) -> Reoffer:
    """Answer `offer` with our session `local_sdp`, adjusted as the module says.

    Raises `SdpNegotiationError` (488) when the offer keeps none of our codecs, `SdpError` (400)
    when either description is unusable.
    """
    ours = parse_sdp(local_sdp)
    index, media = _audio(ours)
    codecs = _codecs(media)
    # The offerer's side of the exchange, computed the way any offer is answered; only its
    # direction and address are used, our description stays ours.
    _, negotiated = answer_offer(
        parse_sdp(offer),
        "0.0.0.0",
        media.port,
        session=SdpSession(session_id=0, address="0.0.0.0"),
        supported=codecs,
    )
    answer = _with_direction(ours, index, negotiated.direction)
    return Reoffer(
        answer=local_sdp if answer is None else answer,
        remote_address=negotiated.remote_address,
        remote_port=negotiated.remote_port,
        remote_hold=negotiated.remote_hold,
        remote_rtcp=negotiated.rtcp,
    )


def with_direction(local_sdp: bytes, direction: Direction) -> bytes:
    """Our description with its audio stream's direction set to `direction` (unchanged bytes
    when it already says so)."""
    ours = parse_sdp(local_sdp)
    index, _ = _audio(ours)
    changed = _with_direction(ours, index, direction)
    return local_sdp if changed is None else changed


def _with_direction(
    description: SessionDescription, index: int, direction: Direction
) -> bytes | None:
    media = description.media[index]
    if media.direction(description.direction) is direction:
        return None
    attributes = tuple(a for a in media.attributes if not _is_direction(a))
    media = replace(media, attributes=(*attributes, Attribute(direction.value)))
    streams = list(description.media)
    streams[index] = media
    origin = replace(description.origin, session_version=description.origin.session_version + 1)
    session_attributes = tuple(a for a in description.attributes if not _is_direction(a))
    changed = replace(
        description, origin=origin, attributes=session_attributes, media=tuple(streams)
    )
    return changed.to_bytes()


def _audio(description: SessionDescription) -> tuple[int, MediaDescription]:
    for index, media in enumerate(description.media):
        if media.media == "audio" and media.port != 0:
            return index, media
    raise SdpError("our session description has no audio stream")


def _codecs(media: MediaDescription) -> tuple[Codec, ...]:
    codecs = tuple(
        Codec(name=rtpmap.encoding, payload_type=rtpmap.payload_type, clock_rate=rtpmap.clock_rate)
        for fmt in media.formats
        if (rtpmap := media.rtpmap(fmt)) is not None
        and rtpmap.encoding.lower() != "telephone-event"
    )
    if not codecs:
        raise SdpError("our audio stream names no codec")
    return codecs


def _is_direction(attribute: Attribute) -> bool:
    return attribute.value is None and attribute.name in _DIRECTIONS
