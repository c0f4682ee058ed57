"""G.711 tables checked against the values ITU-T G.711 tabulates and exhaustively."""

from __future__ import annotations

import numpy as np
import pytest

from telephony.rtp.g711 import (
    ALAW_SILENCE,
    ALAW_TO_ULAW,
    SAMPLES_PER_FRAME,
    ULAW_SILENCE,
    ULAW_TO_ALAW,
    Law,
    alaw_to_ulaw,
    codec_for,
    decode_alaw,
    decode_ulaw,
    encode_alaw,
    encode_ulaw,
    ulaw_to_alaw,
)

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_CODES = bytes(range(256))


def test_zero_encodes_to_the_silence_codes() -> None:
    assert encode_ulaw(np.zeros(1, np.int16)) == bytes([0xFF]) == bytes([ULAW_SILENCE])
    assert encode_alaw(np.zeros(1, np.int16)) == bytes([0xD5]) == bytes([ALAW_SILENCE])
    assert decode_ulaw(bytes([0xFF])).tolist() == [0]
    # µ-law also has a negative zero.
    assert decode_ulaw(bytes([0x7F])).tolist() == [0]


@pytest.mark.parametrize(
    ("linear", "ulaw", "alaw"),
    [
        (32767, 0x80, 0xAA),  # positive full scale: top segment, top step
        (-32768, 0x00, 0x2A),  # negative full scale
        (8, 0xFE, 0xD5),  # µ-law step 1 of segment 0 (14-bit 2); A-law first step
        (-8, 0x7E, 0x55),
        (1000, 0xCE, 0xFA),
        (-1000, 0x4E, 0x7A),
    ],
)
def test_encoder_matches_reference_codes(linear: int, ulaw: int, alaw: int) -> None:
    sample = np.array([linear], np.int16)
    assert encode_ulaw(sample)[0] == ulaw
    assert encode_alaw(sample)[0] == alaw


def test_decoder_reproduces_the_g711_output_levels() -> None:
    ulaw = decode_ulaw(ALL_CODES)
    alaw = decode_alaw(ALL_CODES)
    # G.711 Table 2a: µ-law decoder outputs (14-bit) reach ±8031; ×4 on our scale.
    assert ulaw.max() == 8031 * 4 and ulaw.min() == -8031 * 4
    # G.711 Table 1a: A-law decoder outputs (13-bit) reach ±4032; ×8 on our scale.
    assert alaw.max() == 4032 * 8 and alaw.min() == -4032 * 8
    # The first µ-law segment is linear in steps of 2 (14-bit) from 0 to 30.
    first_segment = decode_ulaw(bytes(range(0xFF, 0xEF, -1)))
    assert (first_segment // 4).tolist() == list(range(0, 32, 2))
    # The first A-law segment's outputs are 1, 3, 5, ... 31 (13-bit).
    first_alaw = decode_alaw(bytes(code ^ 0xD5 for code in range(16)))
    assert (first_alaw // 8).tolist() == list(range(1, 33, 2))
    # A-law has no zero code, so all 256 outputs are distinct.
    assert len(set(alaw.tolist())) == 256
    assert len(set(ulaw.tolist())) == 255


def test_decode_then_encode_is_identity_on_codes() -> None:
    assert encode_alaw(decode_alaw(ALL_CODES)) == ALL_CODES
    expected = bytearray(ALL_CODES)
    expected[0x7F] = 0xFF  # negative zero re-encodes as positive zero
    assert encode_ulaw(decode_ulaw(ALL_CODES)) == bytes(expected)


def test_ulaw_round_trip_error_is_within_half_a_step_for_every_input() -> None:
    linear = ALL_INT16.astype(np.int32)
    error = np.abs(decode_ulaw(encode_ulaw(ALL_INT16)).astype(np.int32) - linear)
    in_range = np.abs(linear) <= 32635
    # Half a step of the segment: (|x| + bias) / 32 bounds it (G.711 steps double per segment).
    assert np.all(error[in_range] <= (np.abs(linear[in_range]) + 132) / 32)
    # Beyond the clip level the error is the distance to the top output level.
    assert error[~in_range].max() == 32768 - 32124
    assert error[np.abs(linear) < 16].max() <= 8


def test_alaw_round_trip_error_is_within_half_a_step_for_every_input() -> None:
    linear = ALL_INT16.astype(np.int32)
    error = np.abs(decode_alaw(encode_alaw(ALL_INT16)).astype(np.int32) - linear)
    assert np.all(error <= np.maximum(8, np.abs(linear) / 32))
    assert error.max() == 512


def test_encoding_is_monotonic() -> None:
    for encode, decode in ((encode_ulaw, decode_ulaw), (encode_alaw, decode_alaw)):
        levels = decode(encode(ALL_INT16)).astype(np.int32)
        assert np.all(np.diff(levels) >= 0)


def test_whole_frame_shapes_and_types() -> None:
    rng = np.random.default_rng(7)
    frame = rng.integers(-20000, 20000, SAMPLES_PER_FRAME).astype(np.int16)
    payload = encode_ulaw(frame)
    assert isinstance(payload, bytes) and len(payload) == SAMPLES_PER_FRAME
    decoded = decode_ulaw(payload)
    assert decoded.dtype == np.int16 and decoded.shape == (SAMPLES_PER_FRAME,)
    assert decode_alaw(b"").shape == (0,)


def test_wider_integers_are_clipped_and_floats_refused() -> None:
    wide = np.array([100000, -100000, 0], dtype=np.int32)
    assert encode_ulaw(wide) == bytes([0x80, 0x00, 0xFF])
    with pytest.raises(TypeError, match="float64"):
        encode_alaw(np.zeros(4))  # type: ignore[arg-type]


def test_tables_are_read_only() -> None:
    decoded = decode_ulaw(b"\x00\x01")
    decoded[0] = 1  # the result is a fresh array ...
    assert decode_ulaw(b"\x00")[0] == -32124  # ... and the table is untouched
    from telephony.rtp import g711

    for name in ("_ULAW_DECODE", "_ULAW_ENCODE", "_ALAW_DECODE", "_ALAW_ENCODE"):
        table = getattr(g711, name)
        with pytest.raises(ValueError, match="read-only"):
            table[0] = 0


def test_transcoding_tables_agree_with_decode_then_encode() -> None:
    assert len(ULAW_TO_ALAW) == len(ALAW_TO_ULAW) == 256
    assert ulaw_to_alaw(ALL_CODES) == encode_alaw(decode_ulaw(ALL_CODES))
    assert alaw_to_ulaw(ALL_CODES) == encode_ulaw(decode_alaw(ALL_CODES))
    assert ulaw_to_alaw(bytes([ULAW_SILENCE])) == bytes([ALAW_SILENCE])
    # A-law has no exact zero: its silence code (+8) lands on µ-law's smallest step.
    assert decode_ulaw(alaw_to_ulaw(bytes([ALAW_SILENCE]))).tolist() == [8]


def test_transcoding_preserves_the_signal() -> None:
    t = np.arange(SAMPLES_PER_FRAME) / 8000
    tone = (12000 * np.sin(2 * np.pi * 1004 * t)).astype(np.int16)
    via_alaw = decode_alaw(ulaw_to_alaw(encode_ulaw(tone))).astype(np.float64)
    error = via_alaw - tone
    snr_db = 10 * np.log10(np.sum(tone.astype(np.float64) ** 2) / np.sum(error**2))
    assert snr_db > 30


def test_codec_object_dispatches_by_law() -> None:
    ulaw, alaw = codec_for(Law.ULAW), codec_for(Law.ALAW)
    assert (Law.ULAW.payload_type, Law.ALAW.payload_type) == (0, 8)
    assert Law("PCMA") is Law.ALAW
    assert ulaw.silence() == b"\xff" * 160 and alaw.silence(2) == b"\xd5\xd5"
    frame = np.full(160, 1234, np.int16)
    assert ulaw.encode(frame) == encode_ulaw(frame)
    assert alaw.encode(frame) == encode_alaw(frame)
    assert np.array_equal(alaw.decode(alaw.encode(frame)), decode_alaw(encode_alaw(frame)))
    assert ulaw.transcode_table(Law.ALAW) == ULAW_TO_ALAW
    assert alaw.transcode_table(Law.ULAW) == ALAW_TO_ULAW
    assert ulaw.transcode_table(Law.ULAW) is None
