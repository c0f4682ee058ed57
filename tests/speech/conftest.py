"""Fixtures for the speech tests: telephone-band audio generated once per test session."""

from __future__ import annotations

import pytest

from tests.speech.speech_audio import SpeechAudio


@pytest.fixture(scope="session")
def speech_audio(tmp_path_factory: pytest.TempPathFactory) -> SpeechAudio:
    """Generates speech, silence and noise clips with espeak-ng and sox, each at most once."""
    return SpeechAudio(tmp_path_factory.mktemp("speech_audio"))
