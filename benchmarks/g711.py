"""Micro-benchmark: cost of the per-frame media work, in µs per 20 ms frame (160 samples).

Run: python benchmarks/g711.py [--frames N]
"""

from __future__ import annotations

import argparse
import platform
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np

from telephony.rtp.g711 import (
    SAMPLES_PER_FRAME,
    alaw_to_ulaw,
    decode_alaw,
    decode_ulaw,
    encode_alaw,
    encode_ulaw,
    ulaw_to_alaw,
)
from telephony.rtp.inband import InbandDtmfDetector
from telephony.rtp.resample import Resampler


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def per_frame_us(action: Callable[[], object], frames: int) -> float:
    best = min(timeit.repeat(action, number=frames, repeat=5))
    return best / frames * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=20000, help="frames per timing run")
    frames = parser.parse_args().frames

    rng = np.random.default_rng(0)
    pcm = rng.integers(-12000, 12000, SAMPLES_PER_FRAME).astype(np.int16)
    ulaw, alaw = encode_ulaw(pcm), encode_alaw(pcm)
    # Line noise at about -60 dBm0: the quiet a caller listening to a prompt sends.
    quiet = rng.normal(0, 10, SAMPLES_PER_FRAME).astype(np.int16)
    detector, quiet_detector = InbandDtmfDetector(), InbandDtmfDetector()
    upsampler = Resampler(8000, 16000)

    cases: list[tuple[str, Callable[[], object]]] = [
        ("encode µ-law (int16 -> PCMU)", lambda: encode_ulaw(pcm)),
        ("decode µ-law (PCMU -> int16)", lambda: decode_ulaw(ulaw)),
        ("encode A-law (int16 -> PCMA)", lambda: encode_alaw(pcm)),
        ("decode A-law (PCMA -> int16)", lambda: decode_alaw(alaw)),
        ("transcode PCMU -> PCMA", lambda: ulaw_to_alaw(ulaw)),
        ("transcode PCMA -> PCMU", lambda: alaw_to_ulaw(alaw)),
        ("in-band DTMF detection, loud", lambda: detector.process(pcm)),
        ("in-band DTMF detection, quiet", lambda: quiet_detector.process(quiet)),
        ("resample 8 kHz -> 16 kHz", lambda: upsampler.process(pcm)),
    ]
    print(f"machine: {platform.platform()} | {cpu_model()} | Python {platform.python_version()}")
    print(f"numpy {np.__version__}; best of 5 runs of {frames} frames")
    for name, action in cases:
        print(f"{name:32s} {per_frame_us(action, frames):8.2f} µs/frame")


if __name__ == "__main__":
    main()
