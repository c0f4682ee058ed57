"""Just enough PNG decoding (RFC 2083) to check a screenshot without an imaging library."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import numpy.typing as npt

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_png(data: bytes) -> npt.NDArray[np.uint8]:
    """8-bit, non-interlaced RGB or RGBA PNG → array of shape (height, width, channels)."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    offset = len(_SIGNATURE)
    idat = bytearray()
    width = height = channels = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace != 0 or colour not in {2, 6}:
                raise ValueError("only 8-bit non-interlaced RGB/RGBA is supported")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    out = np.zeros((height, stride), dtype=np.int32)
    previous = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        start = y * (stride + 1)
        filter_type = raw[start]
        row = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=start + 1).astype(np.int32)
        if filter_type == 0:
            current = row
        elif filter_type == 2:  # Up
            current = (row + previous) & 0xFF
        else:  # Sub, Average, Paeth: depend on the pixel to the left, so go byte by byte
            current = np.zeros(stride, dtype=np.int32)
            for x in range(stride):
                left = current[x - channels] if x >= channels else 0
                up = previous[x]
                up_left = previous[x - channels] if x >= channels else 0
                if filter_type == 1:
                    predictor = left
                elif filter_type == 3:
                    predictor = (left + up) // 2
                else:
                    p = left + up - up_left
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                    predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
                current[x] = (row[x] + predictor) & 0xFF
        out[y] = current
        previous = current
    return out.reshape(height, width, channels).astype(np.uint8)
