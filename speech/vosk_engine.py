"""The Vosk (Kaldi) speech engine: one model per server, one warm recogniser per call.

The model directory is named in config and loaded once at start-up (seconds, hundreds of MB);
every call gets its own ``KaldiRecognizer`` over that shared model and keeps it for the whole
call. Each prompt restarts it with the prompt's grammar: Vosk compiles a small language model from
the phrase list and composes it with the model's lookahead graph, which costs well under a
millisecond, and a repeated prompt (a retry) keeps the graph already built.

Vosk releases the GIL while decoding, so sessions run on :class:`speech.pool.WorkerThreads`.

Confidence: the recogniser returns its N-best list with a log-likelihood per candidate; the
candidates are turned into posteriors (a softmax over the list, which approximates the lattice's
posterior mass) so that 1 means no competitor and a close runner-up lowers the best one's score.
When the model has a garbage word (``[unk]`` in most Vosk models, ``<UNK>`` in some, such as the
small Korean one), it joins every grammar so that speech outside the grammar can land on it
instead of being forced onto a phrase; the garbage word itself is never reported.

Whole phrases only: Vosk compiles a grammar into a loop over its phrases' words, so the decoder
may put phrases together ("영업 한국어") or say part of one ("지원" of "기술 지원"). With a
grammar, a candidate that is not exactly one phrase is counted as out of grammar (as if it were
the garbage word): its posterior mass stays in the N-best list and lowers every phrase's score
instead of being read as the phrase it contains. On the Korean benchmark corpus this rejects
more out-of-grammar speech at equal menu accuracy, whereas mapping such candidates to the one
phrase they contain or are part of routed more callers wrongly than it routed rightly.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import vosk

from speech.recognizer import Hypothesis, RecognitionResult, RecognizerError
from speech.vad import SAMPLE_RATE_HZ

__all__ = ["VoskEngine", "VoskSession", "check_model_directory"]

logger = logging.getLogger(__name__)

ENGINE_NAME: Final = "vosk"
# Garbage-word spellings, in the order tried: Vosk's own models say "[unk]", models built with
# Kaldi's usual recipes "<UNK>" (pronounced as spoken noise).
_UNKNOWN_WORDS: Final = ("[unk]", "<UNK>")
# Vosk's own switch back from a grammar to the model's full language model.
_FULL_LANGUAGE_MODEL: Final = "[]"

# What a usable model directory holds, and what each part is, for the start-up error.
_REQUIRED_FILES: Final[Mapping[str, str]] = {
    "am/final.mdl": "the acoustic model",
    "conf/mfcc.conf": "the feature configuration",
}
_GRAPHS: Final = (("graph/HCLG.fst",), ("graph/HCLr.fst", "graph/Gr.fst"))


def check_model_directory(model_path: Path) -> None:
    """Raise ``ValueError`` naming ``model_path`` and what is missing if it is no Vosk model."""
    if not model_path.exists():
        raise ValueError(f"Vosk model directory {model_path} does not exist")
    if not model_path.is_dir():
        raise ValueError(
            f"Vosk model path {model_path} is a file, not the unpacked model directory"
        )
    for relative, meaning in _REQUIRED_FILES.items():
        if not (model_path / relative).is_file():
            raise ValueError(
                f"Vosk model directory {model_path} has no {relative} ({meaning}): "
                "point the setting at the directory that contains am/, conf/ and graph/"
            )
    if not any(all((model_path / f).is_file() for f in graph) for graph in _GRAPHS):
        raise ValueError(
            f"Vosk model directory {model_path} has no decoding graph "
            "(graph/HCLG.fst, or graph/HCLr.fst with graph/Gr.fst)"
        )


class VoskEngine:
    """A loaded Vosk model, shared by every call's recogniser (thread-safe for that use)."""

    __slots__ = ("_max_alternatives", "_model", "_model_path", "_unknown_word")

    def __init__(self, model: vosk.Model, *, model_path: Path, max_alternatives: int = 5) -> None:
        if max_alternatives < 1:
            raise ValueError(f"max_alternatives must be >= 1, got {max_alternatives}")
        self._model = model
        self._model_path = model_path
        self._max_alternatives = max_alternatives
        self._unknown_word = next(
            (word for word in _UNKNOWN_WORDS if model.vosk_model_find_word(word) >= 0), None
        )

    @classmethod
    def load(
        cls, model_path: Path | str, *, max_alternatives: int = 5, kaldi_log_level: int = -1
    ) -> VoskEngine:
        """Load the model at ``model_path`` (blocking, seconds): once, at start-up.

        Raises ``ValueError`` naming the path and what is missing or unreadable.
        ``kaldi_log_level`` -1 keeps Kaldi's own messages off stderr (a process-wide setting
        of the library); 0 lets them through for diagnosis.
        """
        path = Path(model_path)
        check_model_directory(path)
        vosk.SetLogLevel(kaldi_log_level)
        try:
            model = vosk.Model(str(path))
        except Exception as exc:  # vosk raises a bare Exception when Kaldi rejects a file
            raise ValueError(
                f"Vosk model directory {path} could not be loaded ({exc}): a file is corrupt, "
                "truncated or from an incompatible Kaldi version"
            ) from exc
        logger.info("Vosk model loaded from %s", path)
        return cls(model, model_path=path, max_alternatives=max_alternatives)

    @property
    def name(self) -> str:
        return ENGINE_NAME

    @property
    def model_path(self) -> Path:
        """Directory the model was loaded from."""
        return self._model_path

    def knows_word(self, word: str) -> bool:
        """Whether ``word`` is in the model's vocabulary (grammar words must be)."""
        return bool(self._model.vosk_model_find_word(word) >= 0)

    def unknown_words(self, phrases: Iterable[str]) -> tuple[str, ...]:
        """Words of ``phrases`` missing from the vocabulary, in order, without repeats."""
        missing: dict[str, None] = {}
        for phrase in phrases:
            for word in phrase.split():
                if not self.knows_word(word):
                    missing[word] = None
        return tuple(missing)

    def open_session(self, *, call_id: str) -> VoskSession:
        recognizer = vosk.KaldiRecognizer(self._model, float(SAMPLE_RATE_HZ))
        recognizer.SetMaxAlternatives(self._max_alternatives)
        return VoskSession(self, recognizer, call_id=call_id)

    def grammar_json(self, grammar: Sequence[str]) -> str:
        """The recogniser's grammar for ``grammar``: phrases the model can say, plus the
        model's garbage word if it has one.

        Raises :class:`RecognizerError` if no phrase is made only of known words.
        """
        usable = [phrase for phrase in grammar if not self.unknown_words((phrase,))]
        if len(usable) < len(grammar):
            logger.warning(
                "grammar words not in the Vosk model's vocabulary are left out: %s",
                ", ".join(self.unknown_words(grammar)),
            )
        if not usable:
            raise RecognizerError(
                ENGINE_NAME,
                "no grammar phrase is in the model's vocabulary: "
                + ", ".join(self.unknown_words(grammar)),
            )
        if self._unknown_word is not None:
            usable.append(self._unknown_word)
        return json.dumps(usable, ensure_ascii=False)


class VoskSession:
    """One call's recogniser. Blocking: run it on a worker thread, one call at a time."""

    __slots__ = ("_call_id", "_engine", "_grammar", "_recognizer")

    def __init__(self, engine: VoskEngine, recognizer: vosk.KaldiRecognizer, *, call_id: str):
        self._engine = engine
        self._recognizer: vosk.KaldiRecognizer | None = recognizer
        self._call_id = call_id
        # The grammar the recogniser's graph was built for; None is the full language model.
        self._grammar: tuple[str, ...] | None = None

    def start(self, grammar: tuple[str, ...] | None) -> None:
        recognizer = self._live()
        # Ends any unfinished utterance without decoding the rest: the next audio starts afresh.
        recognizer.Reset()
        if grammar == self._grammar:
            return
        try:
            if grammar is None:
                recognizer.SetGrammar(_FULL_LANGUAGE_MODEL)
            else:
                recognizer.SetGrammar(self._engine.grammar_json(grammar))
        except RecognizerError:
            raise
        except Exception as exc:
            raise RecognizerError(ENGINE_NAME, f"grammar rejected: {exc}") from exc
        self._grammar = grammar

    def accept(self, pcm_frame: bytes) -> None:
        try:
            # Vosk's own end-point flag is ignored: the call's end-pointer decides.
            self._live().AcceptWaveform(bytes(pcm_frame))
        except RecognizerError:
            raise
        except Exception as exc:
            raise RecognizerError(ENGINE_NAME, f"audio rejected: {exc}") from exc

    def partial(self) -> str:
        document = _load(self._live().PartialResult())
        return _strip_unknown(str(document.get("partial", "")))

    def finish(self) -> RecognitionResult:
        phrases = None if self._grammar is None else _phrase_set(self._grammar)
        text = self._live().FinalResult()
        # What the decoder said before whole-phrase filtering and garbage stripping: to tell a
        # model that heard something else from an engine that discarded what it heard.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Vosk result for call %s: %s", self._call_id, " ".join(text.split()))
        return result_from_json(text, phrases)

    def close(self) -> None:
        # The recogniser's memory (about 36 MB) goes back when the last reference does.
        self._recognizer = None

    def _live(self) -> vosk.KaldiRecognizer:
        if self._recognizer is None:
            raise RecognizerError(ENGINE_NAME, f"session of call {self._call_id} is closed")
        return self._recognizer


def result_from_json(text: str, phrases: frozenset[str] | None = None) -> RecognitionResult:
    """Turn a Vosk final result (N-best form, or single-best form) into a RecognitionResult.

    With ``phrases`` (the grammar's phrases), a candidate that is not exactly one of them reads
    as nothing (see the module's notes on whole phrases).
    """
    document = _load(text)
    alternatives = document.get("alternatives")
    if alternatives is None:
        # Single-best form (max alternatives 0): word confidences from the lattice's MBR decoding.
        words = document.get("result") or []
        best = _whole_phrase(_strip_unknown(str(document.get("text", ""))), phrases)
        if not best:
            return RecognitionResult.empty(ENGINE_NAME)
        confidences = [float(word.get("conf", 1.0)) for word in words] or [1.0]
        return RecognitionResult(text=best, confidence=_clamp(min(confidences)), engine=ENGINE_NAME)
    scored: list[tuple[str, float]] = []
    for entry in alternatives:
        candidate = _whole_phrase(_strip_unknown(str(entry.get("text", ""))), phrases)
        scored.append((candidate, float(entry["confidence"])))
    posteriors = _posteriors(scored)
    if all(not candidate for candidate, _ in posteriors):
        return RecognitionResult.empty(ENGINE_NAME)
    # The best candidate may still be silence or garbage (empty text) with a word as runner-up: the
    # phrase matcher weighs the runner-up by its own, lower, posterior.
    best_text, best_confidence = posteriors[0]
    return RecognitionResult(
        text=best_text,
        confidence=best_confidence,
        alternatives=tuple(
            Hypothesis(text=candidate, confidence=confidence)
            for candidate, confidence in posteriors[1:]
        ),
        engine=ENGINE_NAME,
    )


def _posteriors(scored: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Softmax of the log-likelihoods; candidates that read the same once garbage is gone are
    one candidate with their mass summed. Best first."""
    if not scored:
        return []
    top = max(score for _, score in scored)
    weights: dict[str, float] = {}
    for candidate, score in scored:
        weights[candidate] = weights.get(candidate, 0.0) + math.exp(score - top)
    total = sum(weights.values())
    ranked = sorted(weights.items(), key=lambda item: item[1], reverse=True)
    return [(candidate, _clamp(weight / total)) for candidate, weight in ranked]


def _phrase_set(grammar: Iterable[str]) -> frozenset[str]:
    return frozenset(" ".join(phrase.split()) for phrase in grammar)


def _whole_phrase(candidate: str, phrases: frozenset[str] | None) -> str:
    return candidate if phrases is None or candidate in phrases else ""


def _strip_unknown(text: str) -> str:
    return " ".join(word for word in text.split() if word not in _UNKNOWN_WORDS)


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0


def _load(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecognizerError(ENGINE_NAME, f"unreadable result from Vosk: {exc}") from exc
    if not isinstance(document, dict):
        raise RecognizerError(ENGINE_NAME, f"unexpected result from Vosk: {text[:80]!r}")
    return document
