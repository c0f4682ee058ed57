"""What a caller hears while waiting for an agent: music on hold, or comfort silence, with the
queue's position and hold-time announcements spoken over it.

The music is a WAV file: the queue's ``musiconhold``, else ``prompts/music-on-hold.wav`` of the
configuration (Asterisk's default music class by another name); without one the caller hears
comfort silence, a stream of silent frames, so that the line never goes dead and a carrier that
hangs up quiet calls keeps the call.
An announcement is rendered first (text-to-speech, or WAV files from the prompts folder) while
the music goes on, then replaces it and the music starts again after it.

Announcement wording follows the queue's prompts (``queue-thereare``, ``queue-youarenext``,
``queue-holdtime``... of ``queues.yaml``): a value ending in ``.wav`` is a file of the prompts
folder, any other value is text. Numbers are spoken from the digit prompts (``<digits>/0.wav``
... ``9.wav``) when the folder has them all, otherwise by text-to-speech with the text around them.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from config.queues import AnnouncementPrompts
from ivr.ports import PromptRenderer
from telephony.media.calls import MediaCall, PromptSource
from telephony.media.playout import Frames, silence

__all__ = ["AnnouncementPart", "WaitingAudio", "announcement_parts", "music_on_hold"]

logger = logging.getLogger(__name__)

#: The file of the configuration's prompts folder played to waiting callers, when present.
MUSIC_FILE = "music-on-hold.wav"
#: Length of one pass of comfort silence; the pass repeats for as long as the caller waits.
_SILENCE_SECONDS = 5.0
#: Announcements waiting to be played beyond this are dropped (the newest is the one that counts).
_MAX_PENDING = 2


@dataclass(frozen=True, slots=True)
class AnnouncementPart:
    """Text for text-to-speech, or a WAV file."""

    text: str | None = None
    file: Path | None = None


def music_on_hold(prompts_dir: Path, musiconhold: str | None = None) -> Path | None:
    """The music on hold: the queue's own ``musiconhold`` file (relative to the prompts folder,
    or absolute; checked when the configuration was loaded), else the configuration's default
    one if it ships one."""
    if musiconhold is not None:
        return prompts_dir / musiconhold
    music = prompts_dir / MUSIC_FILE
    return music if music.is_file() else None


def announcement_parts(
    prompts: AnnouncementPrompts,
    position: int | None,
    ewt_seconds: float | None,
    prompts_dir: Path,
) -> list[AnnouncementPart]:
    """What to say for a caller at ``position`` with an estimated wait of ``ewt_seconds``.

    Asterisk's order: position (``queue-youarenext``, or ``queue-thereare`` N
    ``queue-callswaiting``), hold time (``queue-holdtime`` N ``queue-minutes``/``queue-seconds``),
    then ``queue-thankyou``; with neither, the periodic announcement alone.
    """
    words: list[str | int] = []
    if position is not None:
        if position <= 1:
            words.append(prompts.youarenext)
        else:
            words += [prompts.thereare, position, prompts.callswaiting]
    if ewt_seconds is not None and math.isfinite(ewt_seconds) and ewt_seconds >= 1:
        if ewt_seconds >= 90:
            words += [prompts.holdtime, round(ewt_seconds / 60), prompts.minutes]
        else:
            # Under a minute and a half, seconds rounded to tens read better than "1 minutes".
            words += [prompts.holdtime, max(10, round(ewt_seconds / 10) * 10), prompts.seconds]
    if words:
        words.append(prompts.thankyou)
    elif prompts.periodic:
        words.append(prompts.periodic)
    return _parts(words, prompts_dir, prompts_dir / prompts.digits)


def _parts(words: Sequence[str | int], prompts_dir: Path, digits: Path) -> list[AnnouncementPart]:
    parts: list[AnnouncementPart] = []
    text: list[str] = []

    def flush() -> None:
        if text:
            parts.append(AnnouncementPart(text=" ".join(text)))
            text.clear()

    for word in words:
        if isinstance(word, int):
            files = [digits / f"{digit}.wav" for digit in str(word)]
            if all(path.is_file() for path in files):
                flush()
                parts += [AnnouncementPart(file=path) for path in files]
            else:
                text.append(str(word))
        elif word.lower().endswith(".wav"):
            flush()
            parts.append(AnnouncementPart(file=prompts_dir / word))
        elif word.strip():
            text.append(word.strip())
    flush()
    return parts


class WaitingAudio:
    """Plays to one waiting caller until stopped: music (or silence), announcements over it."""

    def __init__(
        self,
        media: MediaCall,
        *,
        renderer: PromptRenderer,
        language: str,
        music: Path | None,
    ) -> None:
        self._media = media
        self._renderer = renderer
        self._language = language
        self._music = music
        self._pending: deque[list[PromptSource]] = deque(maxlen=_MAX_PENDING)
        self._task: asyncio.Task[None] | None = None
        self._renders: set[asyncio.Task[None]] = set()
        self._playing_background = False

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Stop at once (the caller is being bridged, or leaves the queue)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        for render in self._renders:
            render.cancel()
        self._renders.clear()
        self._pending.clear()
        if not self._media.ended:
            self._media.stop_playback()

    def announce(self, parts: Sequence[AnnouncementPart]) -> None:
        """Render ``parts`` while the music goes on, then play them in its place."""
        if self._task is None or not parts:
            return
        render = asyncio.get_running_loop().create_task(self._render(list(parts)))
        self._renders.add(render)
        render.add_done_callback(self._renders.discard)

    async def _render(self, parts: list[AnnouncementPart]) -> None:
        files: list[PromptSource] = []
        try:
            for part in parts:
                if part.file is not None:
                    files.append(str(part.file))
                elif part.text is not None:
                    files.append(
                        str(await self._renderer.render(part.text, language=self._language))
                    )
        except asyncio.CancelledError:
            raise
        except Exception:
            # A missing voice or a broken prompt costs the caller an announcement, never the call.
            logger.warning("call %s: announcement not rendered", self._media.call_id, exc_info=True)
            return
        if self._task is None:
            return
        self._pending.append(files)
        if self._playing_background and not self._media.ended:
            self._media.stop_playback()  # the background pass ends; the loop plays the news

    async def _run(self) -> None:
        media = self._media
        background = await self._background()
        while not media.ended:
            if self._pending:
                files = self._pending.popleft()
                try:
                    await media.play(files)
                except (RuntimeError, LookupError):
                    return  # the caller hung up (the leg is gone)
                except Exception:
                    # A prompt file that cannot be read or converted: skip this announcement.
                    logger.warning("call %s: announcement not played", media.call_id, exc_info=True)
                continue
            self._playing_background = True
            try:
                await media.play([background])
            except (RuntimeError, LookupError):
                return
            finally:
                self._playing_background = False

    async def _background(self) -> Frames:
        """The music as frames of the caller's law (converted once, off the event loop), so
        that each pass starts at once and an announcement can stop it at any moment."""
        media = self._media
        if self._music is not None:
            try:
                # Music converted for an earlier caller needs no worker thread: those may all
                # be busy converting other prompts while this caller would hear nothing.
                frames = media.prompts.cached(self._music, media.law)
                if frames is not None:
                    return frames
                return await asyncio.to_thread(media.prompts.get, self._music, media.law)
            except Exception:
                logger.warning(
                    "call %s: music on hold %s not readable; comfort silence instead",
                    media.call_id,
                    self._music,
                    exc_info=True,
                )
                self._music = None
        return silence(media.law, _SILENCE_SECONDS)
