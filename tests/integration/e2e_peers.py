"""Peers of the end-to-end test: the sounds each side sends, how a recording is judged, the
PyVoIP agent that answers, talks and listens, and the CRM receiver of the webhooks.

Each side of the call sends a tone of its own, so that what a phone heard can be told apart
from anything else on the line (prompts, silence, its own echo): the SIPp caller 500 Hz (a
generated capture), baresip 1,000 Hz (an ``aufile`` WAV), the PyVoIP agent 750 Hz. A recording
has so many seconds of a tone as it has 20 ms frames of sound whose strongest frequency is it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
import wave
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pyVoIP.VoIP import CallState, VoIPCall, VoIPPhone

from crm_bridge.signing import WebhookSecret
from examples.crm_receiver import CrmReceiver, serve
from telephony.rtp.g711 import Law
from tests.integration.peers import free_port
from tests.integration.rtp_pcap import SAMPLE_RATE_HZ, RtpStream, write_pcap
from tests.integration.softphones import pyvoip_phone

CALLER_HZ = 500.0
BARESIP_HZ = 1000.0
PYVOIP_HZ = 750.0
#: Peak amplitude of the generated tones (16-bit samples): loud, far from clipping.
TONE_AMPLITUDE = 8000
#: A frame (20 ms) is sound, not silence, above this RMS (16-bit samples).
SOUND_RMS = 500.0
WEBHOOK_SECRET = "whsec_Y3hvcy1lbmQtdG8tZW5kLXRlc3Qtd2ViaG9vay1zZWNyZXQ="


def tone(frequency: float, seconds: float, rate: int = SAMPLE_RATE_HZ) -> npt.NDArray[np.int16]:
    times = np.arange(round(seconds * rate)) / rate
    return (TONE_AMPLITUDE * np.sin(2 * np.pi * frequency * times)).astype(np.int16)


def write_wav(path: Path, samples: npt.NDArray[np.int16], rate: int = SAMPLE_RATE_HZ) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return path


def write_caller_voice(path: Path, seconds: float) -> Path:
    """The caller's voice as SIPp plays it: the caller's tone, A-law (the codec of the caller's
    offer), as one RTP stream."""
    write_pcap(path, RtpStream(Law.ALAW).audio(tone(CALLER_HZ, seconds)))
    return path


# --- judging what a phone heard -----------------------------------------------------------------


def from_pyvoip(audio: bytes) -> npt.NDArray[np.float64]:
    """PyVoIP's 8-bit unsigned linear samples on the 16-bit scale."""
    return (np.frombuffer(audio, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0


def _frames(samples: npt.NDArray[np.float64], rate: int) -> npt.NDArray[np.float64]:
    """20 ms frames of ``samples`` that are sound rather than silence."""
    size = rate // 50
    frames = samples[: len(samples) // size * size].reshape(-1, size)
    sound: npt.NDArray[np.float64] = frames[np.sqrt(np.mean(frames**2, axis=1)) > SOUND_RMS]
    return sound


def sound_seconds(samples: npt.NDArray[np.float64], rate: int) -> float:
    """How long the recording is sound rather than silence."""
    return len(_frames(samples, rate)) / 50


def tone_seconds(samples: npt.NDArray[np.float64], rate: int, frequency: float) -> float:
    """How long the recording is sound whose strongest frequency is ``frequency`` (within the
    50 Hz resolution of a 20 ms frame)."""
    frames = _frames(samples, rate)
    if not len(frames):
        return 0.0
    spectra = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), axis=1))
    peaks = np.fft.rfftfreq(frames.shape[1], 1 / rate)[np.argmax(spectra, axis=1)]
    return float(np.count_nonzero(np.abs(peaks - frequency) <= 50)) / 50


def wav_channels(path: Path) -> tuple[list[npt.NDArray[np.float64]], int]:
    """Each channel of a 16-bit WAV file, and its sample rate. A file still being written is
    read as far as it goes: its header may not count the samples yet, or not be complete (then
    there are no samples)."""
    raw = path.read_bytes()
    fmt, data = raw.find(b"fmt "), raw.find(b"data")
    if fmt < 0 or data < 0 or len(raw) < fmt + 24:
        return [], SAMPLE_RATE_HZ
    # The fmt chunk (RIFF WAVE): format, channels, rate, byte rate, block align, bits.
    _, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", raw, fmt + 8)
    if bits != 16:
        raise ValueError(f"{path.name}: {bits}-bit samples, not 16")
    samples = raw[data + 8 :]
    usable = len(samples) // (2 * channels) * 2 * channels
    values = np.frombuffer(samples[:usable], dtype="<i2").astype(np.float64)
    return [values[c::channels] for c in range(channels)], rate


# --- PyVoIP as an agent -------------------------------------------------------------------------


@dataclass
class PyvoipAgent:
    """A PyVoIP phone that answers its first call, sends its tone and keeps what it hears."""

    phone: VoIPPhone | None = None
    call: VoIPCall | None = None
    answered: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    heard: bytearray = field(default_factory=bytearray)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_call(self, call: VoIPCall) -> None:
        """PyVoIP's call callback (its own thread): answer, talk, listen until the call ends."""
        if self.call is not None:
            call.deny()
            return
        self.call = call
        call.answer()
        self.answered.set()
        samples = tone(PYVOIP_HZ, 40.0)
        call.write_audio((samples // 256 + 128).astype(np.uint8).tobytes())
        silence = b"\x80" * 160
        while call.state is CallState.ANSWERED:
            chunk = call.read_audio(160, blocking=False)
            if chunk != silence:
                with self._lock:
                    self.heard += chunk
            else:
                time.sleep(0.01)
        self.ended.set()

    def heard_audio(self) -> npt.NDArray[np.float64]:
        with self._lock:
            return from_pyvoip(bytes(self.heard))

    def heard_seconds_of(self, frequency: float) -> float:
        """Seconds of ``frequency`` heard so far."""
        return tone_seconds(self.heard_audio(), SAMPLE_RATE_HZ, frequency)

    def hang_up(self) -> None:
        assert self.call is not None
        self.call.hangup()


@contextmanager
def pyvoip_agent(server_port: int, user: str, password: str) -> Iterator[PyvoipAgent]:
    """A registered PyVoIP agent phone (stopped, unregistering, on exit)."""
    agent = PyvoipAgent()
    with pyvoip_phone(server_port, user, password, on_call=agent.on_call) as phone:
        agent.phone = phone
        phone.start()
        yield agent


# --- the CRM ------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def crm_receiver() -> AsyncIterator[tuple[CrmReceiver, str]]:
    """examples/crm_receiver.py's receiver on a free port; yields it and its URL."""
    receiver = CrmReceiver([WebhookSecret.parse(WEBHOOK_SECRET)])
    async with serve(receiver, port=free_port(socket.SOCK_STREAM)) as url:
        yield receiver, url


def crm_yaml(url: str) -> str:
    """crm.yaml sending every event to ``url``, retried quickly."""
    return (
        "webhooks:\n"
        "  - name: e2e\n"
        f"    url: {url}\n"
        f"    secret: {WEBHOOK_SECRET}\n"
        '    events: ["*"]\n'
        "    retry: {initial_delay: 1}\n"
    )


async def wait_until_true(check: object, within: float, what: str) -> None:
    """Poll ``check()`` (a callable returning truthy) every 50 ms for ``within`` seconds."""
    assert callable(check)
    for _ in range(int(within / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {within} s")
