"""What a waiting caller hears: comfort silence or music, and the queue's announcements."""

from __future__ import annotations

import asyncio
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from config.queues import AnnouncementPrompts
from cxos.waiting_audio import AnnouncementPart, WaitingAudio, announcement_parts, music_on_hold
from telephony.rtp.audio import PromptCache
from telephony.rtp.g711 import Law

PROMPTS = AnnouncementPrompts()


def spoken(parts: list[AnnouncementPart]) -> list[str]:
    return [part.text if part.text is not None else f"<{part.file}>" for part in parts]


def test_the_first_caller_hears_they_are_next_and_the_wait(tmp_path: Path) -> None:
    parts = announcement_parts(PROMPTS, 1, 40.0, tmp_path)
    assert spoken(parts) == [
        "You are now first in line. The estimated hold time is 40 seconds. "
        "Thank you for your patience."
    ]


def test_a_later_caller_hears_their_position_and_minutes(tmp_path: Path) -> None:
    parts = announcement_parts(PROMPTS, 3, 200.0, tmp_path)
    assert spoken(parts) == [
        "You are caller number 3 waiting. The estimated hold time is 3 minutes. "
        "Thank you for your patience."
    ]


def test_nothing_to_announce_but_the_periodic_prompt(tmp_path: Path) -> None:
    assert announcement_parts(PROMPTS, None, None, tmp_path) == []
    periodic = AnnouncementPrompts.model_validate({"periodic-announce": "promo.wav"})
    assert spoken(announcement_parts(periodic, None, None, tmp_path)) == [
        f"<{tmp_path / 'promo.wav'}>"
    ]


def test_numbers_come_from_the_digit_prompts_when_they_are_all_there(tmp_path: Path) -> None:
    digits = tmp_path / "digits"
    digits.mkdir()
    for digit in "0123456789":
        (digits / f"{digit}.wav").write_bytes(b"")
    parts = announcement_parts(PROMPTS, 12, None, tmp_path)
    assert spoken(parts) == [
        "You are caller number",
        f"<{digits / '1.wav'}>",
        f"<{digits / '2.wav'}>",
        "waiting. Thank you for your patience.",
    ]


def test_music_on_hold_is_the_prompts_folders_file(tmp_path: Path) -> None:
    assert music_on_hold(tmp_path) is None
    (tmp_path / "music-on-hold.wav").write_bytes(b"")
    assert music_on_hold(tmp_path) == tmp_path / "music-on-hold.wav"


class FakeMedia:
    """Plays until the test ends a playback or someone stops it."""

    call_id = "c1"
    law = Law.ULAW
    prompts = PromptCache()

    def __init__(self) -> None:
        self.ended = False
        self.played: list[Any] = []
        self._current: asyncio.Future[str] | None = None

    async def play(self, prompts: list[Any], *, barge_in: bool = False) -> str:
        self.played.append(prompts)
        self._current = asyncio.get_running_loop().create_future()
        return await self._current

    def stop_playback(self) -> None:
        if self._current is not None and not self._current.done():
            self._current.set_result("stopped")


class Renderer:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def render(self, text: str, *, language: str) -> Path:
        self.texts.append(f"{language}:{text}")
        return Path(f"/tts/{len(self.texts)}.wav")


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_an_announcement_interrupts_comfort_silence_which_then_resumes() -> None:
    media, renderer = FakeMedia(), Renderer()
    audio = WaitingAudio(media, renderer=renderer, language="en", music=None)  # type: ignore[arg-type]
    audio.start()
    await settle()
    [silence] = media.played[0]
    assert isinstance(silence, tuple) and set(silence[0]) == {0xFF}  # µ-law silence frames

    audio.announce([AnnouncementPart(text="You are caller number 2")])
    await settle()
    assert renderer.texts == ["en:You are caller number 2"]
    assert media.played[1] == ["/tts/1.wav"]
    media.stop_playback()  # the announcement ends
    await settle()
    assert media.played[2] == [silence]

    audio.stop()
    await settle()
    assert not audio.running and len(media.played) == 3


def write_music(path: Path) -> Path:
    """One second of a 440 Hz tone, 8 kHz 16-bit mono."""
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(tone.tobytes())
    return path


async def test_music_converted_before_plays_while_every_worker_thread_is_busy(
    tmp_path: Path,
) -> None:
    music = write_music(tmp_path / "music-on-hold.wav")
    media = FakeMedia()
    media.prompts = PromptCache()
    frames = media.prompts.get(music, Law.ULAW)  # an earlier caller's music
    busy = threading.Event()
    workers = ThreadPoolExecutor(max_workers=1)
    workers.submit(busy.wait)  # the only worker thread is converting something else
    asyncio.get_running_loop().set_default_executor(workers)
    try:
        audio = WaitingAudio(media, renderer=Renderer(), language="en", music=music)  # type: ignore[arg-type]
        audio.start()
        await settle()
        assert media.played == [[frames]]  # the music, not silence, and without waiting
        assert (media.prompts.hits, media.prompts.misses) == (1, 1)  # not converted again
        audio.stop()
    finally:
        busy.set()
