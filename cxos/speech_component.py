"""Speech recognition as a server component: the engine loaded once at start-up, shared by calls.

The built-in English engine (pocketsphinx) runs in worker processes; a Vosk model, when one is
configured, in worker threads. Each language with a model of its own (``language_models``) gets
its Vosk engine; an IVR call's current language picks the engine for each question. A model
that cannot be loaded stops the start-up with a clear error rather than leaving every voice
menu deaf.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from config.loader import Configuration
from config.settings import SpeechSettings as SpeechConfig
from speech.listener import SpeechInput
from speech.service import (
    SpeechService,
    SpeechSettings,
    build_engine,
    build_language_engines,
)

logger = logging.getLogger(__name__)


class SpeechComponent:
    name = "speech"

    def __init__(self, settings: SpeechConfig, *, publish: Callable[[object], None]) -> None:
        self._settings = settings
        self._publish = publish
        self._service: SpeechService | None = None
        self.input: SpeechInput | None = None

    async def start(self) -> None:
        if not self._settings.enabled:
            logger.info("speech recognition is disabled: menus take keys only")
            return
        model = self._settings.vosk_model_path
        settings = SpeechSettings(
            vosk_model_path=Path(model) if model else None,
            language_models={
                code: Path(path) for code, path in self._settings.language_models.items()
            },
            workers=self._settings.workers,
            max_streams=self._settings.max_streams,
        )
        # Loading a model takes seconds of CPU: off the event loop.
        languages = await asyncio.to_thread(build_language_engines, settings)
        engine = await asyncio.to_thread(build_engine, settings)
        self._service = SpeechService.from_settings(settings, engine, languages)
        self.input = SpeechInput(self._service, publish=self._publish)
        logger.info(
            "speech recognition started (%s by default%s)",
            "Vosk" if model else "built-in English",
            "; Vosk for " + ", ".join(sorted(languages)) if languages else "",
        )

    async def stop(self, grace: float) -> None:
        if self._service is not None:
            await self._service.aclose()
            self._service = None
            self.input = None

    def reconfigure(self, configuration: Configuration) -> None:
        if configuration.server.speech != self._settings:
            logger.warning("speech settings changed: they take effect after a restart")
