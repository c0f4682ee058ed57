"""English menu recognition out of the box, on the pocketsphinx wheel's bundled US-English model.

Used when no Vosk model is configured. The bundled model is 16 kHz and weak on free telephone
speech, so this engine recognises per-prompt grammars only (menus: "sales", "billing",
"technical support", "agent", "yes", "no"). Each call gets its own small decoder whose dictionary
holds just the words of the current grammar, taken from the bundled CMU dictionary, which each
worker parses once; this keeps a decoder to a few MB and milliseconds to create.

Audio arrives as 8 kHz telephone PCM and is upsampled to 16 kHz (:class:`Upsampler`).

Confidence is the lattice posterior of the recognised words. A grammar decoder maps any speech
onto some phrase, and this model's posteriors separate in-grammar from out-of-grammar speech only
roughly, so a menu should keep a confidence threshold and a DTMF alternative. (A phone-loop
garbage model in the grammar would reject better, but pocketsphinx's grammar search becomes
hundreds of times slower with one.)

pocketsphinx holds the GIL while it decodes: run this engine in worker processes
(:class:`speech.pool.ProcessEngine` with :func:`load_sphinx_engine`).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pocketsphinx

from speech.recognizer import Hypothesis, RecognitionResult, RecognizerError

__all__ = [
    "SphinxEngine",
    "SphinxSession",
    "SphinxSettings",
    "Upsampler",
    "load_sphinx_engine",
    "read_dictionary",
]

logger = logging.getLogger(__name__)

ENGINE_NAME: Final = "pocketsphinx"
MODEL_RATE_HZ: Final = 16000
"""Sample rate of the bundled acoustic model, in hertz."""

_SEARCH: Final = "prompt"
# Starting cepstral mean for a new call's decoder (RFC-free; pocketsphinx's live CMN). The model's
# default is a wideband microphone's mean, far from a telephone line's, and live CMN needs a few
# utterances to walk there, so a call's first words were lost. This is the mean reached on
# 8 kHz, 300-3400 Hz, G.711 speech (measured after a dozen utterances, several voices); the
# engine then carries the latest call's mean forward to the next call.
_TELEPHONE_CMN_INIT: Final = (
    "29.06,-6.92,1.34,-17.24,11.98,-20.86,-7.43,4.15,-23.27,9.90,-12.84,-2.51,2.06"
)
# N-best paths inspected to sum the posterior of the recognised words.
_POSTERIOR_PATHS: Final = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class SphinxSettings:
    """Where the model is and how grammars are decoded. Defaults: the wheel's bundled model."""

    acoustic_model: Path | None = None
    """Acoustic model directory; ``None`` is the bundled ``en-us``."""
    dictionary: Path | None = None
    """Pronunciation dictionary (CMU format); ``None`` is the bundled ``cmudict-en-us.dict``."""
    max_alternatives: int = 5
    """Candidates to keep in the N-best list."""

    def __post_init__(self) -> None:
        if self.max_alternatives < 1:
            raise ValueError(f"max_alternatives must be >= 1, got {self.max_alternatives}")

    def resolved_acoustic_model(self) -> Path:
        """The acoustic model directory to load."""
        if self.acoustic_model is not None:
            return self.acoustic_model
        return Path(pocketsphinx.get_model_path()) / "en-us" / "en-us"

    def resolved_dictionary(self) -> Path:
        """The dictionary file to read."""
        if self.dictionary is not None:
            return self.dictionary
        return Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"


def read_dictionary(path: Path) -> dict[str, tuple[str, ...]]:
    """Read a CMU-format dictionary: ``word PH PH ...`` per line, variants as ``word(2)``.

    Returns each word's pronunciations, first one first. Raises ``ValueError`` naming the file.
    """
    entries: dict[str, list[str]] = {}
    try:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                fields = line.split()
                if len(fields) < 2 or line.startswith(";;;"):
                    continue
                word = fields[0].split("(", 1)[0].casefold()
                entries.setdefault(word, []).append(" ".join(fields[1:]))
    except OSError as exc:
        raise ValueError(f"pronunciation dictionary {path} cannot be read: {exc}") from exc
    if not entries:
        raise ValueError(f"pronunciation dictionary {path} has no entries")
    return {word: tuple(prons) for word, prons in entries.items()}


class Upsampler:
    """Streaming 2x interpolation from 8 kHz to 16 kHz: zero-stuffing and a windowed-sinc
    low-pass at 3.8 kHz (Kaiser window), in numpy. Output lags the input by 16 samples."""

    _HALF_TAPS: Final = 16

    __slots__ = ("_even", "_history", "_odd")

    def __init__(self) -> None:
        taps = 4 * self._HALF_TAPS + 1
        n = np.arange(taps) - (taps - 1) / 2
        cutoff = 3800 / MODEL_RATE_HZ
        kernel = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(taps, 8.0)
        kernel *= 2 / kernel.sum()  # gain 2 makes up for the inserted zeros
        # Polyphase: even outputs use the even taps, odd outputs the odd ones.
        self._even = kernel[0::2][::-1].copy()
        self._odd = kernel[1::2][::-1].copy()
        self._history = np.zeros(len(self._even) - 1, dtype=np.float64)

    def reset(self) -> None:
        """Forget the previous utterance's tail."""
        self._history[:] = 0.0

    def process(self, pcm: bytes) -> bytes:
        """Upsample 8 kHz int16 PCM to 16 kHz int16 PCM (twice as many samples)."""
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        buffered = np.concatenate((self._history, samples))
        self._history = buffered[len(samples) :].copy()
        even = np.convolve(buffered, self._even[::-1], mode="valid")
        odd = np.convolve(buffered, self._odd[::-1], mode="valid")[: len(even)]
        out = np.empty(2 * len(even), dtype=np.float64)
        out[0::2] = even
        out[1::2] = odd
        result: npt.NDArray[np.int16] = np.clip(np.rint(out), -32768, 32767).astype("<i2")
        return result.tobytes()


class SphinxEngine:
    """The bundled English model and dictionary, loaded once per worker process."""

    __slots__ = ("_cmn", "_dictionary", "_settings")

    def __init__(self, settings: SphinxSettings, dictionary: Mapping[str, tuple[str, ...]]):
        self._settings = settings
        self._dictionary = dictionary
        self._cmn = _TELEPHONE_CMN_INIT

    @classmethod
    def load(cls, settings: SphinxSettings | None = None) -> SphinxEngine:
        """Read the dictionary and check the acoustic model (blocking, about a second).

        Raises ``ValueError`` naming a missing or unreadable model file.
        """
        settings = settings if settings is not None else SphinxSettings()
        model = settings.resolved_acoustic_model()
        for required in ("mdef", "means", "variances", "feat.params"):
            if not (model / required).is_file():
                raise ValueError(f"pocketsphinx acoustic model {model} has no {required} file")
        return cls(settings, read_dictionary(settings.resolved_dictionary()))

    @property
    def name(self) -> str:
        return ENGINE_NAME

    @property
    def settings(self) -> SphinxSettings:
        """How this engine decodes."""
        return self._settings

    def unknown_words(self, phrases: Iterable[str]) -> tuple[str, ...]:
        """Words of ``phrases`` the dictionary cannot pronounce, in order, without repeats."""
        missing: dict[str, None] = {}
        for phrase in phrases:
            for word in phrase.split():
                if word.casefold() not in self._dictionary:
                    missing[word] = None
        return tuple(missing)

    def pronunciations(self, word: str) -> tuple[str, ...]:
        """The dictionary's pronunciations of ``word`` (empty if unknown)."""
        return self._dictionary.get(word.casefold(), ())

    def open_session(self, *, call_id: str) -> SphinxSession:
        try:
            decoder = pocketsphinx.Decoder(
                hmm=str(self._settings.resolved_acoustic_model()),
                dict=None,
                lm=None,
                samprate=MODEL_RATE_HZ,
                # The best-path rescoring pass favours the shortest prefix of a long phrase in a
                # large menu grammar ("it" for "billing" beside "it is not working"); the first
                # pass's hypothesis follows the grammar as written.
                bestpath=False,
                loglevel="FATAL",
            )
            decoder.set_cmn(self._cmn)
        except (RuntimeError, ValueError) as exc:
            raise RecognizerError(ENGINE_NAME, f"decoder could not be created: {exc}") from exc
        return SphinxSession(self, decoder, call_id=call_id)

    def remember_line_mean(self, cmn: str) -> None:
        """Start later calls from this call's cepstral mean (what its line sounded like)."""
        if cmn and len(cmn.split(",")) == len(_TELEPHONE_CMN_INIT.split(",")):
            self._cmn = cmn


def load_sphinx_engine(settings: SphinxSettings | None = None) -> SphinxEngine:
    """Build the engine inside a worker process (module level, so it can be pickled)."""
    return SphinxEngine.load(settings)


def sphinx_engine_factory(settings: SphinxSettings | None = None) -> functools.partial[Any]:
    """A picklable factory for :class:`speech.pool.ProcessEngine`."""
    return functools.partial(load_sphinx_engine, settings)


class SphinxSession:
    """One call's decoder. Blocking and GIL-bound: run it in a worker process."""

    __slots__ = ("_call_id", "_decoder", "_engine", "_grammar", "_in_utterance", "_upsampler")

    def __init__(self, engine: SphinxEngine, decoder: Any, *, call_id: str) -> None:
        self._engine = engine
        self._decoder: Any = decoder
        self._call_id = call_id
        self._grammar: tuple[str, ...] | None = None
        self._in_utterance = False
        self._upsampler = Upsampler()

    def start(self, grammar: tuple[str, ...] | None) -> None:
        decoder = self._live()
        if self._in_utterance:
            decoder.end_utt()
            self._in_utterance = False
        if grammar is None:
            raise RecognizerError(
                ENGINE_NAME,
                "the built-in English engine recognises menu phrases only; "
                "configure a Vosk model for free speech",
            )
        if grammar != self._grammar:
            self._load_grammar(decoder, grammar)
            self._grammar = grammar
        self._upsampler.reset()
        decoder.start_utt()
        self._in_utterance = True

    def accept(self, pcm_frame: bytes) -> None:
        if not self._in_utterance:
            raise RecognizerError(ENGINE_NAME, "audio before start()")
        try:
            self._live().process_raw(self._upsampler.process(bytes(pcm_frame)), False, False)
        except RuntimeError as exc:
            raise RecognizerError(ENGINE_NAME, f"audio rejected: {exc}") from exc

    def partial(self) -> str:
        if not self._in_utterance:
            return ""
        hypothesis = self._live().hyp()
        return _clean(hypothesis.hypstr) if hypothesis is not None else ""

    def finish(self) -> RecognitionResult:
        decoder = self._live()
        if not self._in_utterance:
            return RecognitionResult.empty(ENGINE_NAME)
        # The filter's last 16 samples (1 ms): flushed with silence so the word's end is heard.
        decoder.process_raw(self._upsampler.process(bytes(64)), False, False)
        decoder.end_utt()
        self._in_utterance = False
        best = decoder.hyp()
        if best is None:
            return RecognitionResult.empty(ENGINE_NAME)
        text = _clean(best.hypstr)
        if not text:
            return RecognitionResult.empty(ENGINE_NAME)
        confidence = _text_posterior(decoder, text, best.prob)
        alternatives: list[Hypothesis] = []
        seen = {text}
        for candidate in decoder.nbest():
            if candidate is None or len(alternatives) >= self._engine.settings.max_alternatives:
                break
            other = _clean(candidate.hypstr)
            if other and other not in seen:
                seen.add(other)
                alternatives.append(Hypothesis(text=other, confidence=0.0))
        return RecognitionResult(
            text=text, confidence=confidence, alternatives=tuple(alternatives), engine=ENGINE_NAME
        )

    def close(self) -> None:
        if self._decoder is not None:
            if self._in_utterance:
                self._decoder.end_utt()
            elif self._grammar is not None:
                self._engine.remember_line_mean(self._decoder.get_cmn(False))
        self._decoder = None
        self._in_utterance = False

    def _load_grammar(self, decoder: Any, grammar: tuple[str, ...]) -> None:
        phrases = [p for p in grammar if p.split() and not self._engine.unknown_words((p,))]
        missing = self._engine.unknown_words(grammar)
        if missing:
            logger.warning("grammar words the dictionary cannot pronounce: %s", ", ".join(missing))
        if not phrases:
            raise RecognizerError(
                ENGINE_NAME, "no grammar phrase can be pronounced: " + ", ".join(missing)
            )
        words = sorted({word.casefold() for phrase in phrases for word in phrase.split()})
        entries = [
            (word if index == 0 else f"{word}({index + 1})", pronunciation)
            for word in words
            for index, pronunciation in enumerate(self._engine.pronunciations(word))
        ]
        new = [(entry, pron) for entry, pron in entries if decoder.lookup_word(entry) is None]
        for position, (entry, pronunciation) in enumerate(new):
            # Only the last addition rebuilds the search structures.
            decoder.add_word(entry, pronunciation, position == len(new) - 1)
        decoder.add_jsgf_string(_SEARCH, _jsgf(phrases))
        decoder.activate_search(_SEARCH)

    def _live(self) -> Any:
        if self._decoder is None:
            raise RecognizerError(ENGINE_NAME, f"session of call {self._call_id} is closed")
        return self._decoder


def _jsgf(phrases: Iterable[str]) -> str:
    """A JSGF grammar (W3C JSGF 1.0) whose public rule is any one of the phrases."""
    alternatives = " | ".join(" ".join(w.casefold() for w in p.split()) for p in phrases)
    return f"#JSGF V1.0;\ngrammar prompt;\npublic <choice> = {alternatives};\n"


def _clean(text: str) -> str:
    """Drop filler words (``<sil>``, ``[NOISE]``, ``+breath+``) from a hypothesis."""
    return " ".join(word for word in text.split() if not word.startswith(("<", "[", "+")))


def _text_posterior(decoder: Any, text: str, best_path_posterior: float) -> float:
    """Posterior of the recognised words rather than of one path.

    The lattice spreads the same words over paths that differ only in silences and fillers, each
    with about the best path's posterior (measured: 0.49 twice, or 0.25 four times, for a
    clearly spoken menu word), so the best path alone understates it. Counts the paths among the
    first N-best that read ``text`` and scales the best path's posterior by that count.
    """
    if not math.isfinite(best_path_posterior) or best_path_posterior <= 0:
        return 0.0
    same = 0
    for index, candidate in enumerate(decoder.nbest()):
        if candidate is None or index >= _POSTERIOR_PATHS:
            break
        if _clean(candidate.hypstr) == text:
            same += 1
    return min(1.0, best_path_posterior * max(same, 1))
