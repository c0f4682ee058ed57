"""G.711 µ-law (PCMU) and A-law (PCMA) by lookup table, a whole frame at a time.

ITU-T G.711 maps 14-bit (µ-law) or 13-bit (A-law) linear samples onto 8-bit codes
with a segmented, roughly logarithmic scale.  We work in 16-bit linear PCM, as
every other part of the media path does: the extra low bits are ignored on
encoding and the decoded values are scaled up (µ-law ×4, A-law ×8).

Every table is computed once at import with numpy and then frozen
(``flags.writeable = False``), so the module holds constants, not state:

* encoding indexes a 65 536-entry table with the samples viewed as ``uint16``;
* decoding indexes a 256-entry table with the payload bytes;
* transcoding between the laws (legs of one bridge that negotiated different
  codecs) is ``bytes.translate`` with a 256-byte table, the fastest path
  Python has, with no numpy round trip at all.

RFC 3551 §4.5.14 fixes the RTP side: PCMU is static payload type 0, PCMA is 8,
both at an 8000 Hz clock, one octet per sample.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_SILENCE",
    "ALAW_TO_ULAW",
    "SAMPLES_PER_FRAME",
    "ULAW_SILENCE",
    "ULAW_TO_ALAW",
    "G711Codec",
    "Law",
    "alaw_to_ulaw",
    "codec_for",
    "decode_alaw",
    "decode_ulaw",
    "encode_alaw",
    "encode_ulaw",
    "ulaw_to_alaw",
]

Int16Array = npt.NDArray[np.int16]

#: 20 ms at 8000 Hz: the packetisation every G.711 leg in CXOS uses (RFC 3551 §4.5.14
#: recommends a default ptime of 20 ms).
SAMPLES_PER_FRAME: Final = 160

#: µ-law code of linear 0 (G.711 Table 2a: positive zero is all ones after inversion).
ULAW_SILENCE: Final = 0xFF
#: A-law code of linear 0 (G.711 Table 1a: positive zero with even bits inverted).
ALAW_SILENCE: Final = 0xD5

# µ-law constants (G.711 §3, expressed on the 16-bit scale): the encoder adds a bias
# of 33 in 14-bit units (132 in 16-bit units) so that every segment starts on a
# power of two, and clips magnitudes so that the biased value fits 15 bits.
_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 32635


class Law(enum.Enum):
    """The companding law of a G.711 stream, valued by its RTP encoding name."""

    ULAW = "PCMU"
    ALAW = "PCMA"

    @property
    def payload_type(self) -> int:
        """Static RTP payload type (RFC 3551 §6, Table 4)."""
        return 0 if self is Law.ULAW else 8

    @property
    def silence_byte(self) -> int:
        """The code of linear zero in this law."""
        return ULAW_SILENCE if self is Law.ULAW else ALAW_SILENCE


_Scalar = TypeVar("_Scalar", bound=np.generic)


def _frozen(array: npt.NDArray[_Scalar]) -> npt.NDArray[_Scalar]:
    array.flags.writeable = False
    return array


def _ulaw_decode_table() -> Int16Array:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF  # codes are sent inverted
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    # Reconstruct at the middle of the quantisation interval: (mantissa·8 + bias)·2^exp.
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    linear = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    sign = np.where(linear < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(linear), _ULAW_CLIP) + _ULAW_BIAS
    # Segment (exponent) = position of the highest set bit above bit 7, 0..7.
    exponent = np.floor(np.log2(magnitude >> 7)).astype(np.int32)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes: npt.NDArray[np.int32] = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return codes.astype(np.uint8)


def _alaw_decode_table() -> Int16Array:
    codes = np.arange(256, dtype=np.int32) ^ 0x55  # even bits are sent inverted
    segment = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    # 13-bit reconstruction at the interval middle: segment 0 is linear (2m+1);
    # segment s >= 1 is (2m + 33)·2^(s-1).  Scaled by 8 onto the 16-bit range.
    magnitude = (
        np.where(
            segment == 0,
            (2 * mantissa + 1),
            (2 * mantissa + 33) << np.maximum(segment - 1, 0),
        )
        << 3
    )
    positive = (codes & 0x80) != 0  # A-law: sign bit 1 means positive
    return np.where(positive, magnitude, -magnitude).astype(np.int16)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    linear = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    value = linear >> 3  # to 13 bits
    negative = value < 0
    # A-law is symmetric around -1/2 on the 13-bit scale: -1 maps like 0, -2 like 1...
    magnitude = np.where(negative, ~value, value)
    segment = np.where(magnitude < 32, 0, np.floor(np.log2(np.maximum(magnitude, 1))) - 4)
    segment = segment.astype(np.int32)  # 0..7: a 13-bit magnitude never exceeds 4095
    shift = np.where(segment == 0, 1, segment)
    mantissa = (magnitude >> shift) & 0x0F
    code = (segment << 4) | mantissa
    mask = np.where(negative, 0x55, 0xD5)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


_ULAW_DECODE: Final = _frozen(_ulaw_decode_table())
_ULAW_ENCODE: Final = _frozen(_ulaw_encode_table())
_ALAW_DECODE: Final = _frozen(_alaw_decode_table())
_ALAW_ENCODE: Final = _frozen(_alaw_encode_table())

#: ``payload.translate(ULAW_TO_ALAW)`` turns a PCMU payload into PCMA.
ULAW_TO_ALAW: Final = bytes(_ALAW_ENCODE[_ULAW_DECODE.view(np.uint16)].tolist())
#: ``payload.translate(ALAW_TO_ULAW)`` turns a PCMA payload into PCMU.
ALAW_TO_ULAW: Final = bytes(_ULAW_ENCODE[_ALAW_DECODE.view(np.uint16)].tolist())


def _as_uint16_index(pcm: npt.NDArray[np.integer]) -> npt.NDArray[np.uint16]:
    index: npt.NDArray[np.uint16]
    if pcm.dtype == np.int16:
        index = pcm.view(np.uint16)
        return index
    if pcm.dtype.kind in "iu":
        index = np.clip(pcm, -32768, 32767).astype(np.int16).view(np.uint16)
        return index
    raise TypeError(f"G.711 encodes integer PCM samples, got an array of dtype {pcm.dtype}")


def decode_ulaw(payload: bytes) -> Int16Array:
    """Decode a PCMU payload into 16-bit linear samples (one per byte)."""
    return _ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def decode_alaw(payload: bytes) -> Int16Array:
    """Decode a PCMA payload into 16-bit linear samples (one per byte)."""
    return _ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def encode_ulaw(pcm: npt.NDArray[np.integer]) -> bytes:
    """Encode 16-bit linear samples as a PCMU payload.

    Wider integer arrays are clipped to the int16 range first; float arrays are
    refused, because their scale (±1.0 or ±32768) cannot be guessed.
    """
    return _ULAW_ENCODE[_as_uint16_index(pcm)].tobytes()


def encode_alaw(pcm: npt.NDArray[np.integer]) -> bytes:
    """Encode 16-bit linear samples as a PCMA payload (see :func:`encode_ulaw`)."""
    return _ALAW_ENCODE[_as_uint16_index(pcm)].tobytes()


def ulaw_to_alaw(payload: bytes) -> bytes:
    """Transcode a PCMU payload to PCMA without going through linear PCM."""
    return payload.translate(ULAW_TO_ALAW)


def alaw_to_ulaw(payload: bytes) -> bytes:
    """Transcode a PCMA payload to PCMU without going through linear PCM."""
    return payload.translate(ALAW_TO_ULAW)


@dataclass(frozen=True, slots=True)
class G711Codec:
    """One law's encoder and decoder behind a common seam (see :func:`codec_for`)."""

    law: Law

    @property
    def silence_byte(self) -> int:
        """The code of linear zero."""
        return self.law.silence_byte

    def silence(self, samples: int = SAMPLES_PER_FRAME) -> bytes:
        """A payload of ``samples`` codes of linear zero."""
        return bytes((self.law.silence_byte,)) * samples

    def encode(self, pcm: npt.NDArray[np.integer]) -> bytes:
        """Encode 16-bit linear samples into a payload of this law."""
        if self.law is Law.ULAW:
            return encode_ulaw(pcm)
        return encode_alaw(pcm)

    def decode(self, payload: bytes) -> Int16Array:
        """Decode a payload of this law into 16-bit linear samples."""
        if self.law is Law.ULAW:
            return decode_ulaw(payload)
        return decode_alaw(payload)

    def transcode_table(self, to: Law) -> bytes | None:
        """The ``bytes.translate`` table from this law to ``to``; None when they match."""
        if to is self.law:
            return None
        return ULAW_TO_ALAW if self.law is Law.ULAW else ALAW_TO_ULAW


def codec_for(law: Law) -> G711Codec:
    """The codec of ``law`` (a small immutable value; cheap to make)."""
    return G711Codec(law)
