"""Text prompts rendered by espeak-ng into cached 8 kHz WAV files."""

from __future__ import annotations

import asyncio
import shutil
import wave
from pathlib import Path

import pytest

from speech.recognizer import PhraseMatcher
from speech.sphinx_engine import SphinxEngine
from speech.tts import PromptRenderer, TtsError, TtsVoice


async def test_a_prompt_is_rendered_once_to_telephone_rate_wav(tmp_path: Path) -> None:
    renderer = PromptRenderer(tmp_path / "cache")
    assert not renderer.is_cached("Say billing.")
    path = await renderer.render("Say billing.")
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert 0.3 < wav.getnframes() / 8000 < 3.0
    stamp = path.stat().st_mtime_ns
    again = await renderer.render("Say billing.")
    assert again == path and again.stat().st_mtime_ns == stamp
    assert renderer.is_cached("Say billing.")
    # Only the finished file is left in the cache, no scratch files.
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [path.name]


async def test_text_and_voice_each_change_the_cached_file(tmp_path: Path) -> None:
    renderer = PromptRenderer(tmp_path)
    first = await renderer.render("Welcome.")
    other_text = await renderer.render("Goodbye.")
    other_voice = await renderer.render("Welcome.", TtsVoice(voice="en-gb", words_per_minute=140))
    assert len({first, other_text, other_voice}) == 3


async def test_the_rendered_prompt_is_intelligible(tmp_path: Path) -> None:
    path = await PromptRenderer(tmp_path).render("billing", TtsVoice(voice="en-us+klatt"))
    with wave.open(str(path), "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
    matcher = PhraseMatcher.from_phrases(["sales", "billing", "agent"])
    session = SphinxEngine.load().open_session(call_id="tts")
    session.start(matcher.grammar)
    for offset in range(0, len(pcm) - 319, 320):
        session.accept(pcm[offset : offset + 320])
    assert matcher.match(session.finish()).choice == "billing"
    session.close()


@pytest.mark.parametrize("text", ["", "   ", "x" * 2001])
async def test_empty_or_overlong_text_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError, match="text prompt"):
        await PromptRenderer(tmp_path).render(text)


def test_a_voice_name_cannot_smuggle_options() -> None:
    with pytest.raises(ValueError, match="not an espeak-ng voice name"):
        TtsVoice(voice="en-us --stdout")


async def test_text_starting_with_a_dash_is_spoken_not_parsed(tmp_path: Path) -> None:
    path = await PromptRenderer(tmp_path).render("-w /tmp/elsewhere.wav")
    assert path.parent == tmp_path and path.stat().st_size > 1000


def counting_tool(folder: Path, tool: str) -> Path:
    """A stand-in on the PATH for ``tool`` that notes each run in ``runs.log``, then runs the
    real one with the same arguments."""
    real = shutil.which(tool)
    assert real is not None
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / tool
    script.write_text(f'#!/bin/sh\necho run >> "{folder / "runs.log"}"\nexec {real} "$@"\n')
    script.chmod(0o755)
    return script


async def test_calls_asking_for_one_prompt_at_once_share_one_render(tmp_path: Path) -> None:
    espeak = counting_tool(tmp_path / "bin", "espeak-ng")
    renderer = PromptRenderer(tmp_path / "cache", espeak=str(espeak))
    # Thirty calls arrive together and each wants the greeting, which is not rendered yet.
    paths = await asyncio.gather(*(renderer.render("Thank you for calling.") for _ in range(30)))
    assert len(set(paths)) == 1 and paths[0].is_file()
    assert (tmp_path / "bin" / "runs.log").read_text().split() == ["run"]


async def test_a_caller_leaving_does_not_stop_the_render_others_wait_for(tmp_path: Path) -> None:
    renderer = PromptRenderer(tmp_path / "cache")
    first = asyncio.create_task(renderer.render("Please hold."))
    second = asyncio.create_task(renderer.render("Please hold."))
    await asyncio.sleep(0)
    first.cancel()  # that caller hung up
    path = await second
    assert path.is_file()
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_failed_render_reaches_every_waiter_and_the_next_request_tries_again(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "espeak-ng"
    broken.write_text(
        f'#!/bin/sh\necho run >> "{bin_dir / "runs.log"}"\necho no voice >&2\nexit 1\n'
    )
    broken.chmod(0o755)
    renderer = PromptRenderer(tmp_path / "cache", espeak=str(broken))
    results = await asyncio.gather(
        *(renderer.render("Goodbye.") for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, TtsError) and "no voice" in str(r) for r in results)
    with pytest.raises(TtsError):
        await renderer.render("Goodbye.")
    assert (bin_dir / "runs.log").read_text().split() == ["run", "run"]
