"""Text prompts rendered once by espeak-ng into 8 kHz WAV files, cached by content.

A prompt written as text in config ("Say sales, billing or agent") becomes a WAV file the media
layer plays like any recorded prompt. The file name is a hash of everything that shapes the
audio (text, voice, speed, pitch, renderer version), so a changed prompt gets a new file and an
unchanged one is never rendered twice. Calls that ask for the same prompt while it is being
rendered wait for that one render (a burst of calls after a start or a reload would otherwise
start one espeak-ng and one sox per call). Renders of one prompt by several renderers or
processes are harmless too: each writes a private temporary file and renames it into place
atomically.

espeak-ng writes 22.05 kHz WAV; sox converts it to 8 kHz mono 16-bit, the telephone rate. Both
are Debian packages the project's set-up installs. :meth:`PromptRenderer.render` runs the tools
as asyncio subprocesses, so the event loop waits without blocking.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

__all__ = ["PromptRenderer", "TtsError", "TtsVoice"]

logger = logging.getLogger(__name__)

# Bumped whenever the rendering pipeline changes, so old cache entries are not reused.
_RENDERER_VERSION: Final = 1
_MAX_TEXT_CHARS: Final = 2000
_OUTPUT_RATE_HZ: Final = 8000


class TtsError(RuntimeError):
    """A prompt could not be rendered; names the tool and what it said."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TtsVoice:
    """How a text prompt is spoken."""

    voice: str = "en-us"
    """espeak-ng voice name (``espeak-ng --voices`` lists them), e.g. ``en-us``, ``en-gb``."""
    words_per_minute: int = 160
    """Speaking rate."""
    pitch: int = 50
    """espeak-ng pitch, 0..99."""

    def __post_init__(self) -> None:
        if not self.voice or not all(c.isalnum() or c in "-+_" for c in self.voice):
            raise ValueError(f"not an espeak-ng voice name: {self.voice!r}")
        if not 80 <= self.words_per_minute <= 450:
            raise ValueError(f"words_per_minute must be 80..450, got {self.words_per_minute}")
        if not 0 <= self.pitch <= 99:
            raise ValueError(f"pitch must be 0..99, got {self.pitch}")


class PromptRenderer:
    """Renders text prompts into ``cache_dir`` and returns the WAV path."""

    __slots__ = ("_cache_dir", "_espeak", "_renders", "_sox", "_timeout")

    def __init__(
        self,
        cache_dir: Path,
        *,
        espeak: str = "espeak-ng",
        sox: str = "sox",
        timeout_seconds: float = 30.0,
    ) -> None:
        self._cache_dir = cache_dir
        self._timeout = timeout_seconds
        found = {tool: shutil.which(tool) for tool in (espeak, sox)}
        missing = [tool for tool, path in found.items() if path is None]
        if missing:
            raise TtsError(
                f"text-to-speech needs {' and '.join(missing)} on the PATH "
                "(Debian packages espeak-ng and sox)"
            )
        self._espeak = found[espeak] or espeak
        self._sox = found[sox] or sox
        # The renders in progress, by target file: later requests for the same prompt await
        # the first one's task. Bounded by the number of distinct prompts being rendered.
        self._renders: dict[Path, asyncio.Task[Path]] = {}

    @property
    def cache_dir(self) -> Path:
        return self._cache_dir

    def cached_path(self, text: str, voice: TtsVoice | None = None) -> Path:
        """Where the rendering of ``text`` in ``voice`` is (or will be) stored."""
        voice = voice if voice is not None else TtsVoice()
        key = "\x1f".join(
            (
                str(_RENDERER_VERSION),
                voice.voice,
                str(voice.words_per_minute),
                str(voice.pitch),
                _check_text(text),
            )
        )
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self._cache_dir / f"tts-{digest[:32]}.wav"

    def is_cached(self, text: str, voice: TtsVoice | None = None) -> bool:
        return self.cached_path(text, voice).is_file()

    async def render(self, text: str, voice: TtsVoice | None = None) -> Path:
        """The 8 kHz mono 16-bit WAV of ``text``, rendered now if not cached yet.

        Raises ``ValueError`` for empty or overlong text, :class:`TtsError` if a tool fails.
        """
        voice = voice if voice is not None else TtsVoice()
        target = self.cached_path(text, voice)
        if target.is_file():
            return target
        task = self._renders.get(target)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._render(text, voice, target))
            self._renders[target] = task
            task.add_done_callback(partial(self._render_done, target))
        # Shielded: a caller who gives up (hangs up) does not cancel the others' render.
        return await asyncio.shield(task)

    def _render_done(self, target: Path, task: asyncio.Task[Path]) -> None:
        if self._renders.get(target) is task:
            del self._renders[target]
        if not task.cancelled():
            # Read here so that a failure every waiter gave up on is not reported as never
            # retrieved; the waiters still there get it raised.
            task.exception()

    async def _render(self, text: str, voice: TtsVoice, target: Path) -> Path:
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._cache_dir, prefix=".render-") as scratch:
            raw = Path(scratch) / "espeak.wav"
            converted = Path(scratch) / "prompt.wav"
            # Text goes through stdin: a prompt starting with "-" is not an option.
            await self._run(
                [
                    self._espeak,
                    *("-v", voice.voice, "-s", str(voice.words_per_minute)),
                    *("-p", str(voice.pitch), "-w", str(raw), "--stdin"),
                ],
                stdin=text.encode("utf-8"),
            )
            await self._run(
                [
                    *(self._sox, "-R", str(raw)),
                    *("-r", str(_OUTPUT_RATE_HZ), "-c", "1", "-b", "16", "-e", "signed-integer"),
                    str(converted),
                ]
            )
            os.replace(converted, target)
        logger.info("rendered text prompt to %s", target.name)
        return target

    async def _run(self, command: list[str], *, stdin: bytes | None = None) -> None:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, stderr = await asyncio.wait_for(process.communicate(stdin), self._timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise TtsError(f"{Path(command[0]).name} took longer than {self._timeout} s") from None
        if process.returncode != 0:
            message = stderr.decode("utf-8", "replace").strip()[:300]
            raise TtsError(
                f"{Path(command[0]).name} failed with exit code {process.returncode}: {message}"
            )


def _check_text(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        raise ValueError("a text prompt must not be empty")
    if len(stripped) > _MAX_TEXT_CHARS:
        raise ValueError(f"a text prompt is limited to {_MAX_TEXT_CHARS} characters")
    return stripped
