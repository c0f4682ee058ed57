"""English menu recognition out of the box, on the pocketsphinx wheel's bundled US-English model.

Used when no Vosk model is configured. The bundled model is 16 kHz and weak on free telephone
speech, so this engine recognises per-prompt grammars only (menus: "sales", "billing",
"technical support", "agent", "yes", "no"). Each call gets its own small decoder whose dictionary
holds just the words of the current grammar, taken from the bundled CMU dictionary, which each
worker parses once; this keeps a decoder to a few MB and milliseconds to create.

Audio arrives as 8 kHz telephone PCM and is upsampled to 16 kHz (:class:`Upsampler`).

Telephone audio loses what a /s/ or /z/ carries above 3.4 kHz, and this wideband model then
hears nothing (or an /f/) where the dictionary expects the sibilant: "sales" came out as
"billing" or "no". Each grammar word therefore also gets the pronunciations with its leading or
its trailing S/Z left out (:func:`telephone_variants`), unless that would make it sound like
another word of the same grammar.

Confidence rejects speech outside the grammar. A grammar decoder maps any speech onto some
phrase, and its lattice posterior stays near 1 even then; so every session also runs an
unconstrained phone-loop decode (the bundled phone language model, "allphone" search) over the
same audio. The gap between the two paths' acoustic scores, per frame of recognised words, is
small when the caller said a phrase and large when the grammar had to force other words onto one
of its phrases (:func:`acceptance`). The phone loop makes a session about five times as costly;
``SphinxSettings.reject_out_of_grammar`` turns it off. (Garbage words or a phone loop inside the
grammar were measured too: slower still, and this model then prefers them even for menu words.)

Hesitations ("um", "uh", "er", "hmm") are in every grammar as answers of their own, at a very
low weight: heard alone, they are a no-match rather than the closest short menu word ("um" was
"no"); a "hesitation" longer than a hesitation lasts is taken as the best phrase of the N-best.

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
from speech.sphinx_grammar import (
    clean,
    grammar_pronunciations,
    jsgf,
    read_dictionary,
)

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
# Starting cepstral mean for a new call's decoder (pocketsphinx's live CMN). The model's default
# is a wideband microphone's mean, far from a telephone line's, and live CMN needs a few
# utterances to walk there, so a call's first words were lost. This is the mean reached on
# 8 kHz, 300-3400 Hz, G.711 speech: the average over 32 calls (8 espeak-ng voices not in the
# benchmark, 4 noise levels) after a dozen utterances each.
_TELEPHONE_CMN_INIT: Final = (
    "42.21,-6.96,-3.46,-25.23,15.88,-36.16,-2.09,-0.40,-31.35,20.15,-26.12,2.71,1.64"
)
# Share of a finished call's mean in the mean later calls start from: the line's mean is
# learnt across calls, and one caller whose voice is far from the others (measured: a Klatt
# voice before a natural one) does not make the next caller's first words unrecognisable.
_LINE_MEAN_WEIGHT: Final = 0.25
# N-best paths inspected to sum the posterior of the recognised words.
_POSTERIOR_PATHS: Final = 10
_FILLERS: Final = ("<", "[", "+", "(NULL)")
# What the phone loop reports for silence and noise (the model's noisedict fillers).
_NON_SPEECH_PHONES: Final = frozenset({"SIL", "<sil>", "+NSN+", "[NOISE]"})
# Longest hesitation, in 10 ms frames: generated "um", "uh", "er" and "hmm" lasted 0.15-0.4 s
# (a few up to 0.6 s); menu words read as a hesitation lasted 0.42-0.56 s.
_LONGEST_HESITATION_FRAMES: Final = 40
# Language weight of the phone-loop decode: low, so that its path follows the acoustics (the
# reference for "how well could any speech explain this audio") more than phone statistics.
_PHONE_LOOP_LANGUAGE_WEIGHT: Final = 2.0
# Calibration of the acceptance curve (score gap per word frame, in the decoder's log base
# 1.0001): measured on generated speech (espeak-ng voices other than the benchmark's, telephone
# band, G.711, noise up to -40 dBFS): in-grammar utterances had gaps of -30..+50 (98 % below 42),
# out-of-grammar ones mostly 40..200. At the midpoint the acceptance is 0.5, the IVR's default
# confidence threshold. The hesitation words in the grammar widen the gap of some clearly spoken
# menu words (their HMMs compete for the best score of a frame): 52 rather than 42 keeps them.
_GAP_MIDPOINT: Final = 52.0
_GAP_SCALE: Final = 8.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SphinxSettings:
    """Where the model is and how grammars are decoded. Defaults: the wheel's bundled model."""

    acoustic_model: Path | None = None
    """Acoustic model directory; ``None`` is the bundled ``en-us``."""
    dictionary: Path | None = None
    """Pronunciation dictionary (CMU format); ``None`` is the bundled ``cmudict-en-us.dict``."""
    max_alternatives: int = 5
    """Candidates to keep in the N-best list."""
    phone_model: Path | None = None
    """Phone language model for the out-of-grammar check; ``None`` is the bundled
    ``en-us-phone.lm.bin``."""
    hesitations: tuple[str, ...] = ("um", "uh", "er", "hmm")
    """Hesitation sounds added to every grammar as an answer of their own: heard alone they are
    a no-match (out of grammar), not the menu word that sounds closest ("um" was "no")."""
    reject_out_of_grammar: bool = True
    """Run the phone-loop decode beside the grammar and lower the confidence of speech that
    fits the grammar badly (about 3x the CPU of the grammar alone); ``False``: confidence is the
    lattice posterior only, which is near 1 for any speech."""

    def __post_init__(self) -> None:
        if self.max_alternatives < 1:
            raise ValueError(f"max_alternatives must be >= 1, got {self.max_alternatives}")

    def resolved_acoustic_model(self) -> Path:
        """The acoustic model directory to load."""
        if self.acoustic_model is not None:
            return self.acoustic_model
        return Path(pocketsphinx.get_model_path()) / "en-us" / "en-us"

    def resolved_phone_model(self) -> Path:
        """The phone language model file to load."""
        if self.phone_model is not None:
            return self.phone_model
        return Path(pocketsphinx.get_model_path()) / "en-us" / "en-us-phone.lm.bin"

    def resolved_dictionary(self) -> Path:
        """The dictionary file to read."""
        if self.dictionary is not None:
            return self.dictionary
        return Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"


def acceptance(gap_per_frame: float) -> float:
    """How well speech fits the grammar (0..1) from the score gap between the unconstrained
    phone loop and the grammar path, per frame of recognised words: 0.5 at the calibrated
    midpoint, towards 1 for a small gap, towards 0 for a large one."""
    if not math.isfinite(gap_per_frame):
        return 0.0
    exponent = (gap_per_frame - _GAP_MIDPOINT) / _GAP_SCALE
    if exponent > 700:  # exp() would overflow; the acceptance is 0 anyway
        return 0.0
    return 1.0 / (1.0 + math.exp(exponent))


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
        if settings.reject_out_of_grammar and not settings.resolved_phone_model().is_file():
            raise ValueError(
                f"pocketsphinx phone language model {settings.resolved_phone_model()} is missing "
                "(needed for the out-of-grammar check)"
            )
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

    def hesitations(self, grammar_words: Iterable[str]) -> list[str]:
        """The configured hesitation words the dictionary knows, less any the grammar uses."""
        used = {word.casefold() for word in grammar_words}
        return [
            word
            for word in dict.fromkeys(w.casefold() for w in self._settings.hesitations)
            if word not in used and word in self._dictionary
        ]

    def pronunciations(self, word: str) -> tuple[str, ...]:
        """The dictionary's pronunciations of ``word`` (empty if unknown)."""
        return self._dictionary.get(word.casefold(), ())

    def open_session(self, *, call_id: str) -> SphinxSession:
        phones: Any = None
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
            if self._settings.reject_out_of_grammar:
                phones = pocketsphinx.Decoder(
                    hmm=str(self._settings.resolved_acoustic_model()),
                    allphone=str(self._settings.resolved_phone_model()),
                    dict=None,
                    lm=None,
                    samprate=MODEL_RATE_HZ,
                    lw=_PHONE_LOOP_LANGUAGE_WEIGHT,
                    bestpath=False,
                    loglevel="FATAL",
                )
                phones.set_cmn(self._cmn)
        except (RuntimeError, ValueError) as exc:
            raise RecognizerError(ENGINE_NAME, f"decoder could not be created: {exc}") from exc
        return SphinxSession(self, decoder, phones, call_id=call_id)

    def remember_line_mean(self, cmn: str) -> None:
        """Move the mean later calls start from towards this call's (what its line sounded
        like), by ``_LINE_MEAN_WEIGHT``."""
        try:
            new = [float(value) for value in cmn.split(",")]
            old = [float(value) for value in self._cmn.split(",")]
        except ValueError:
            return
        if len(new) != len(old) or not all(math.isfinite(value) for value in new):
            return
        self._cmn = ",".join(
            f"{(1 - _LINE_MEAN_WEIGHT) * a + _LINE_MEAN_WEIGHT * b:.2f}"
            for a, b in zip(old, new, strict=True)
        )


def load_sphinx_engine(settings: SphinxSettings | None = None) -> SphinxEngine:
    """Build the engine inside a worker process (module level, so it can be pickled)."""
    return SphinxEngine.load(settings)


def sphinx_engine_factory(settings: SphinxSettings | None = None) -> functools.partial[Any]:
    """A picklable factory for :class:`speech.pool.ProcessEngine`."""
    return functools.partial(load_sphinx_engine, settings)


class SphinxSession:
    """One call's decoders (the grammar's, and the phone loop's for the out-of-grammar check).
    Blocking and GIL-bound: run it in a worker process."""

    __slots__ = (
        "_call_id",
        "_decoder",
        "_engine",
        "_grammar",
        "_hesitations",
        "_in_utterance",
        "_phones",
        "_upsampler",
    )

    def __init__(
        self, engine: SphinxEngine, decoder: Any, phones: Any = None, *, call_id: str
    ) -> None:
        self._engine = engine
        self._decoder: Any = decoder
        self._phones: Any = phones
        self._call_id = call_id
        self._grammar: tuple[str, ...] | None = None
        self._hesitations: frozenset[str] = frozenset()
        self._in_utterance = False
        self._upsampler = Upsampler()

    def start(self, grammar: tuple[str, ...] | None) -> None:
        decoder = self._live()
        if self._in_utterance:
            self._end_utterance(decoder)
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
        if self._phones is not None:
            self._phones.start_utt()
        self._in_utterance = True

    def accept(self, pcm_frame: bytes) -> None:
        if not self._in_utterance:
            raise RecognizerError(ENGINE_NAME, "audio before start()")
        self._process(self._upsampler.process(bytes(pcm_frame)))

    def partial(self) -> str:
        if not self._in_utterance:
            return ""
        hypothesis = self._live().hyp()
        return clean(hypothesis.hypstr) if hypothesis is not None else ""

    def finish(self) -> RecognitionResult:
        decoder = self._live()
        if not self._in_utterance:
            return RecognitionResult.empty(ENGINE_NAME)
        # The filter's last 16 samples (1 ms): flushed with silence so the word's end is heard.
        self._process(self._upsampler.process(bytes(64)))
        self._end_utterance(decoder)
        best = decoder.hyp()
        if best is None:
            return RecognitionResult.empty(ENGINE_NAME)
        text = clean(best.hypstr)
        if not text:
            return RecognitionResult.empty(ENGINE_NAME)
        hesitated = set(text.split()) <= self._hesitations
        if hesitated:
            phrase = self._phrase_behind_hesitation(decoder)
            hesitated = phrase is None
            text = phrase or text
        if self._phones is not None and not _heard_phones(self._phones):
            # The unconstrained decode heard only silence and noise: the grammar's words were
            # forced onto nothing (e.g. a fraction of a second of line noise).
            return RecognitionResult.empty(ENGINE_NAME)
        confidence = _text_posterior(decoder, text, best.prob, self._hesitations)
        if self._phones is not None:
            confidence *= acceptance(_score_gap(decoder, self._phones))
        if hesitated:
            # The caller hesitated: heard as such, matching no phrase (a no-match).
            return RecognitionResult(text=text, confidence=0.0, engine=ENGINE_NAME)
        alternatives: list[Hypothesis] = []
        seen = {text}
        for candidate in decoder.nbest() or ():
            if candidate is None or len(alternatives) >= self._engine.settings.max_alternatives:
                break
            other = clean(candidate.hypstr)
            if other and other not in seen and not set(other.split()) <= self._hesitations:
                seen.add(other)
                alternatives.append(Hypothesis(text=other, confidence=0.0))
        return RecognitionResult(
            text=text, confidence=confidence, alternatives=tuple(alternatives), engine=ENGINE_NAME
        )

    def _phrase_behind_hesitation(self, decoder: Any) -> str | None:
        """The best phrase of the N-best list when the hesitation the best path reads lasts
        longer than a hesitation does (a word the grammar's low weight did not keep off the
        best path, "agent" read as a long "uh"); ``None`` for a hesitation of hesitation
        length. The confidence is then that of the hesitation's path: their scores are close."""
        frames = sum(
            max(0, segment.end_frame - segment.start_frame + 1)
            for segment in decoder.seg()
            if not segment.word.startswith(_FILLERS)
        )
        if frames <= _LONGEST_HESITATION_FRAMES:
            return None
        for candidate in decoder.nbest() or ():
            heard = clean(candidate.hypstr) if candidate is not None else ""
            if heard and not set(heard.split()) <= self._hesitations:
                return heard
        return None

    def close(self) -> None:
        if self._decoder is not None:
            if self._in_utterance:
                self._end_utterance(self._decoder)
            elif self._grammar is not None:
                self._engine.remember_line_mean(self._decoder.get_cmn(False))
        self._decoder = None
        self._phones = None
        self._in_utterance = False

    def _process(self, pcm16k: bytes) -> None:
        try:
            self._live().process_raw(pcm16k, False, False)
            if self._phones is not None:
                self._phones.process_raw(pcm16k, False, False)
        except RuntimeError as exc:
            raise RecognizerError(ENGINE_NAME, f"audio rejected: {exc}") from exc

    def _end_utterance(self, decoder: Any) -> None:
        decoder.end_utt()
        if self._phones is not None:
            self._phones.end_utt()
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
        hesitations = self._engine.hesitations(words)
        self._hesitations = frozenset(hesitations)
        words += hesitations
        pronunciations = grammar_pronunciations(
            {word: self._engine.pronunciations(word) for word in words}
        )
        entries = [
            (word if index == 0 else f"{word}({index + 1})", pronunciation)
            for word in words
            for index, pronunciation in enumerate(pronunciations[word])
        ]
        new = [(entry, pron) for entry, pron in entries if decoder.lookup_word(entry) is None]
        for position, (entry, pronunciation) in enumerate(new):
            # Only the last addition rebuilds the search structures.
            decoder.add_word(entry, pronunciation, position == len(new) - 1)
        decoder.add_jsgf_string(_SEARCH, jsgf(phrases, hesitations))
        decoder.activate_search(_SEARCH)

    def _live(self) -> Any:
        if self._decoder is None:
            raise RecognizerError(ENGINE_NAME, f"session of call {self._call_id} is closed")
        return self._decoder


def _heard_phones(phones: Any) -> bool:
    """Whether the phone loop's best path has any speech phone (not silence or noise)."""
    hypothesis = phones.hyp()
    if hypothesis is None:
        return False
    return any(phone not in _NON_SPEECH_PHONES for phone in hypothesis.hypstr.split())


def _score_gap(grammar: Any, phones: Any) -> float:
    """Acoustic score of the phone loop's best path minus the grammar's, over the whole
    utterance, per frame the grammar path spends in words (log base 1.0001). Infinite when the
    grammar path has no word frames."""
    logmath = grammar.get_logmath()
    grammar_score = 0.0
    word_frames = 0
    for segment in grammar.seg():
        if segment.ascore > 0:
            grammar_score += logmath.log(segment.ascore)
        if not segment.word.startswith(_FILLERS):
            word_frames += max(0, segment.end_frame - segment.start_frame + 1)
    phone_score = sum(logmath.log(segment.ascore) for segment in phones.seg() if segment.ascore > 0)
    if word_frames == 0:
        return math.inf
    return float(phone_score - grammar_score) / word_frames


def _text_posterior(
    decoder: Any, text: str, best_path_posterior: float, hesitations: frozenset[str] = frozenset()
) -> float:
    """Posterior of the recognised words rather than of one path.

    The lattice spreads the same words over paths that differ only in silences and fillers, each
    with about the best path's posterior (measured: 0.49 twice, or 0.25 four times, for a
    clearly spoken menu word), so the best path alone understates it. Counts the paths among the
    first N-best that read ``text`` and scales the best path's posterior by that count. Paths
    that read only ``hesitations`` are passed over: the grammar's low weight on them keeps them
    off the best path, but the N-best list ranks them by their acoustics alone.
    """
    if not math.isfinite(best_path_posterior) or best_path_posterior <= 0:
        return 0.0
    same = 0
    counted = 0
    for candidate in decoder.nbest() or ():
        if candidate is None or counted >= _POSTERIOR_PATHS:
            break
        heard = clean(candidate.hypstr)
        if heard and set(heard.split()) <= hesitations:
            continue
        counted += 1
        if heard == text:
            same += 1
    return min(1.0, best_path_posterior * max(same, 1))
