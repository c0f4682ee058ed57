"""Captures of an RTP stream, written by hand, for SIPp's ``play_pcap_audio`` to play as a caller.

A test speaks with generated audio (a WAV file) and keys with RFC 4733 telephone-events; this
module turns both into the packets a phone would send and writes them as a pcap file. One
:class:`RtpStream` numbers every packet it makes (sequence numbers and timestamps go on from one
file to the next, as in one call), so several files played one after another by a scenario are a
single stream to the receiver.

File format (libpcap, as read by SIPp through libpcap; all written with ``struct``):

- Global header, 24 bytes, little-endian: magic ``0xA1B2C3D4`` (microsecond timestamps),
  version 2.4, time zone 0, timestamp accuracy 0, snapshot length 65535, link type 1 (Ethernet).
- Per packet: a 16-byte record header (seconds, microseconds, captured length, original length;
  little-endian) and the frame:

  - Ethernet II: destination and source MAC (6 bytes each, locally administered), EtherType
    ``0x0800`` (IPv4);
  - IPv4 (RFC 791): version 4, header length 5 words, total length, identification (counting),
    don't-fragment, TTL 64, protocol 17 (UDP), header checksum (RFC 1071 one's complement sum),
    source and destination address;
  - UDP (RFC 768): ports, length, checksum 0 (no checksum: allowed over IPv4; SIPp rewrites the
    addresses anyway);
  - RTP (RFC 3550 §5.1): version 2, no padding, extension or CSRC; marker; payload type;
    sequence number; timestamp; SSRC; then the payload.

Audio packets carry 20 ms (160 samples) of G.711 µ-law (payload type 0) or A-law (8), RFC 3551
§4.5.14; the first packet of a talk spurt has the marker bit (§4.1). A key is an RFC 4733 §2.3
event: packets every 20 ms with the same timestamp and a growing duration, the first with the
marker bit, and the last one (end bit set) sent three times (§2.5.1.4).
"""

from __future__ import annotations

import struct
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from telephony.rtp.g711 import Law, encode_alaw, encode_ulaw

SAMPLE_RATE_HZ = 8000
FRAME_SAMPLES = 160
FRAME_SECONDS = 0.020
TELEPHONE_EVENT_PAYLOAD_TYPE = 101

_PCAP_MAGIC = 0xA1B2C3D4
_LINKTYPE_ETHERNET = 1
_ETHERTYPE_IPV4 = 0x0800
_IPPROTO_UDP = 17
_EVENT_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}  # RFC 4733 §3.2
#: The keypad's row and column frequencies (ITU-T Q.23), by key.
_KEYPAD_HZ = {
    key: (row_hz, column_hz)
    for row_hz, keys in zip((697, 770, 852, 941), ("123A", "456B", "789C", "*0#D"), strict=True)
    for key, column_hz in zip(keys, (1209, 1336, 1477, 1633), strict=True)
}
#: Each tone of a key about 9 dB below a full-scale sine: loud, and the pair cannot clip.
_TONE_AMPLITUDE = 11000


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet and when it is sent, in seconds from the start of its stream."""

    at: float
    data: bytes


class RtpStream:
    """The packets of one RTP stream: one SSRC, continuous sequence numbers and timestamps."""

    def __init__(
        self,
        law: Law,
        *,
        ssrc: int = 0x4358_4F53,
        first_sequence: int = 1000,
        first_timestamp: int = 8000,
        event_payload_type: int = TELEPHONE_EVENT_PAYLOAD_TYPE,
    ) -> None:
        self.law = law
        self.ssrc = ssrc
        self.sequence = first_sequence
        self.timestamp = first_timestamp
        self.event_payload_type = event_payload_type
        self.clock = 0.0

    def audio(self, samples: npt.NDArray[np.int16]) -> list[RtpPacket]:
        """20 ms packets of ``samples`` (8 kHz; a last partial frame is padded with silence)."""
        padded = -len(samples) % FRAME_SAMPLES
        if padded:
            samples = np.concatenate((samples, np.zeros(padded, dtype=np.int16)))
        packets = []
        for index, start in enumerate(range(0, len(samples), FRAME_SAMPLES)):
            payload = self._encode(samples[start : start + FRAME_SAMPLES])
            packets.append(self._packet(self.law.payload_type, payload, marker=index == 0))
            self.timestamp += FRAME_SAMPLES
            self.clock += FRAME_SECONDS
        return packets

    def silence(self, seconds: float) -> list[RtpPacket]:
        """``seconds`` of digital silence, sent as audio (a line, not a gap)."""
        return self.audio(np.zeros(round(seconds * SAMPLE_RATE_HZ), dtype=np.int16))

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the timestamp moves on, RFC 3550 §5.1)."""
        frames = round(seconds / FRAME_SECONDS)
        self.timestamp += frames * FRAME_SAMPLES
        self.clock += frames * FRAME_SECONDS

    def key(self, key: str, *, seconds: float = 0.16, volume: int = 10) -> list[RtpPacket]:
        """An RFC 4733 telephone-event for ``key`` (0-9, * or #) lasting ``seconds``."""
        event = _EVENT_CODES[key]
        frames = max(1, round(seconds / FRAME_SECONDS))
        packets = []
        for index in range(1, frames + 1):
            end = index == frames
            duration = index * FRAME_SAMPLES
            payload = struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)
            for _ in range(3 if end else 1):
                packets.append(self._packet(self.event_payload_type, payload, marker=index == 1))
            self.clock += FRAME_SECONDS
        self.timestamp += frames * FRAME_SAMPLES
        return packets

    def tones(self, key: str, *, seconds: float = 0.12, events: bool = False) -> list[RtpPacket]:
        """``key`` as the keypad's two tones in the audio (ITU-T Q.23), as a phone without
        telephone-events sends it, ``seconds`` long. With ``events``, every 20 ms of tone also
        goes as an RFC 4733 event packet, as gateways that send a key both ways do."""
        low, high = _KEYPAD_HZ[key]
        frames = max(1, round(seconds / FRAME_SECONDS))
        time = np.arange(frames * FRAME_SAMPLES) / SAMPLE_RATE_HZ
        samples = (
            _TONE_AMPLITUDE * (np.sin(2 * np.pi * low * time) + np.sin(2 * np.pi * high * time))
        ).astype(np.int16)
        if not events:
            return self.audio(samples)
        start = self.timestamp
        packets = []
        for index in range(frames):
            # Each 20 ms of tone, then its event packet: one SSRC and sequence space, the
            # event's timestamp the instant the key went down (RFC 4733 §2.1, §2.5.1.3).
            self.timestamp = start + index * FRAME_SAMPLES
            frame = self._encode(samples[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES])
            packets.append(self._packet(self.law.payload_type, frame, marker=index == 0))
            self.timestamp = start
            end = index == frames - 1
            payload = struct.pack(
                "!BBH", _EVENT_CODES[key], (0x80 if end else 0) | 10, (index + 1) * FRAME_SAMPLES
            )
            for _ in range(3 if end else 1):
                packets.append(self._packet(self.event_payload_type, payload, marker=index == 0))
            self.clock += FRAME_SECONDS
        self.timestamp = start + frames * FRAME_SAMPLES
        return packets

    def _encode(self, samples: npt.NDArray[np.int16]) -> bytes:
        return encode_ulaw(samples) if self.law is Law.ULAW else encode_alaw(samples)

    def _packet(self, payload_type: int, payload: bytes, *, marker: bool) -> RtpPacket:
        header = struct.pack(
            "!BBHII",
            0x80,  # version 2, no padding, no extension, no CSRC
            (0x80 if marker else 0) | payload_type,
            self.sequence & 0xFFFF,
            self.timestamp & 0xFFFF_FFFF,
            self.ssrc,
        )
        self.sequence += 1
        return RtpPacket(at=self.clock, data=header + payload)


def read_wav(path: Path) -> npt.NDArray[np.int16]:
    """The samples of an 8 kHz mono 16-bit WAV file."""
    with wave.open(str(path), "rb") as wav:
        shape = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
        if shape != (SAMPLE_RATE_HZ, 1, 2):
            raise ValueError(
                f"{path.name} is {shape} (rate, channels, bytes), not 8 kHz mono 16-bit"
            )
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)


def write_pcap(
    path: Path,
    packets: Sequence[RtpPacket],
    *,
    source: tuple[str, int] = ("127.0.0.1", 6000),
    destination: tuple[str, int] = ("127.0.0.1", 6002),
) -> None:
    """Write ``packets`` as a pcap file, timed from the first packet (see the module docs)."""
    if not packets:
        raise ValueError("a capture needs at least one packet")
    start = packets[0].at
    out = bytearray(struct.pack("<IHHiIII", _PCAP_MAGIC, 2, 4, 0, 0, 65535, _LINKTYPE_ETHERNET))
    for ident, packet in enumerate(packets):
        frame = _ethernet(_ipv4(_udp(packet.data, source[1], destination[1]), source[0],
                                destination[0], ident))  # fmt: skip
        offset = round((packet.at - start) * 1_000_000)
        out += struct.pack("<IIII", offset // 1_000_000, offset % 1_000_000, len(frame), len(frame))
        out += frame
    path.write_bytes(bytes(out))


def _ethernet(payload: bytes) -> bytes:
    destination = bytes((0x02, 0, 0, 0, 0, 0x02))
    source = bytes((0x02, 0, 0, 0, 0, 0x01))
    return destination + source + struct.pack("!H", _ETHERTYPE_IPV4) + payload


def _ipv4(payload: bytes, source: str, destination: str, ident: int) -> bytes:
    addresses = bytes(map(int, source.split("."))) + bytes(map(int, destination.split(".")))
    fields = (0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64, _IPPROTO_UDP)
    header = struct.pack("!BBHHHBB", *fields) + b"\0\0" + addresses
    checksum = _internet_checksum(header)
    return header[:10] + struct.pack("!H", checksum) + header[12:] + payload


def _udp(payload: bytes, source_port: int, destination_port: int) -> bytes:
    return struct.pack("!HHHH", source_port, destination_port, 8 + len(payload), 0) + payload


def _internet_checksum(data: bytes) -> int:
    """RFC 1071: the one's complement of the one's complement sum of 16-bit words."""
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)
