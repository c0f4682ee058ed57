"""A scripted caller for an IVR session: plays the runner's part with a fake clock.

Prompts finish at once, CRM lookups answer from a given record, voicemails are "recorded", and
the caller's answers come one at a time: keys (``123#``), words (``billing``, or
``billing@0.4`` to give the recognizer's confidence), ``?`` for speech the recognizer could not
match, or an empty answer for silence. Used by ``cxos ivr simulate`` and by the tests.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Literal

from config.ivr.schema import DTMF_KEYS
from config.ivr.tree import IvrTree
from ivr.actions import (
    CollectDigits,
    CrmLookup,
    EnqueueCall,
    Hangup,
    ListenSpeech,
    OfferCallback,
    Play,
    RecordVoicemail,
    StopPlayback,
    Transfer,
)
from ivr.events import IvrExited, IvrInput, IvrVoicemailRecorded
from ivr.inputs import (
    CallStarted,
    CrmLookupResult,
    DigitsReceived,
    NoInput,
    NoMatch,
    PromptFinished,
    RecordingFinished,
    SpeechRecognized,
)
from ivr.inputs import (
    IvrInput as SessionInput,
)
from ivr.interpreter import IvrSession
from ivr.state import IvrOutput, Phase

__all__ = ["Step", "StepKind", "Walker", "parse_answer"]

StepKind = Literal["hear", "listen", "answer", "crm", "record", "exit", "note"]

#: Seconds the fake clock advances per played prompt part and per recorded voicemail.
PROMPT_SECONDS = 2.0
RECORDING_SECONDS = 10.0
#: Upper bound on inputs handled for one caller answer; a walk needing more is a bug.
MAX_REACTIONS = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One thing that happened, at a node, for the transcript."""

    node_id: str
    kind: StepKind
    text: str


def parse_answer(answer: str) -> SessionInput | None:
    """``123#`` → keys, ``sales`` / ``sales@0.6`` → speech, ``?`` → no match, empty → silence."""
    text = answer.strip()
    if not text:
        return None
    if text == "?":
        return NoMatch()
    if all(key in DTMF_KEYS for key in text):
        return DigitsReceived(digits=text)
    words, _, confidence = text.rpartition("@")
    if words and confidence:
        try:
            value = float(confidence)
        except ValueError:
            pass
        else:
            if 0.0 <= value <= 1.0:
                return SpeechRecognized(text=words.strip(), confidence=value)
    return SpeechRecognized(text=text, confidence=1.0)


class Walker:
    """Drives one :class:`IvrSession` through a tree as a scripted caller would."""

    def __init__(
        self,
        tree: IvrTree,
        *,
        started_at: datetime,
        caller_id: str = "+15555550100",
        dialed_number: str = "100",
        variables: Mapping[str, str] | None = None,
        crm_record: Mapping[str, str] | None = None,
        call_id: str = "simulated-call",
    ) -> None:
        self.session = IvrSession(tree, call_id=call_id)
        self.now = 0.0
        self.steps: list[Step] = []
        self.outputs: list[IvrOutput] = []
        self._crm_record = crm_record
        self._recordings = 0
        self._start = CallStarted(
            caller_id=caller_id,
            dialed_number=dialed_number,
            started_at=started_at,
            variables=MappingProxyType(dict(variables or {})),
        )

    @property
    def finished(self) -> bool:
        return self.session.finished

    @property
    def waiting_for(self) -> str | None:
        """What the caller may answer now: ``dtmf``, ``speech``, ``dtmf+speech``, or ``None``."""
        return self.session.listening_for

    def start(self) -> None:
        self._run(self.session.handle(self._start, self.now))

    def answer(self, answer: str) -> None:
        """Give the session one answer from the caller (see :func:`parse_answer`)."""
        listening = self.waiting_for or ""
        given = parse_answer(answer)
        node = self.session.node_id
        if isinstance(given, SpeechRecognized | NoMatch) and "speech" not in listening:
            self._note(node, f"caller says {answer.strip()!r}, but this step only takes keys")
            given = None
        if given is None:
            self.silence()
            return
        self._note_answer(node, given)
        self._run(self.session.handle(given, self.now))
        if self.session.phase is Phase.ENTERING_DIGITS:
            self._wait_for_timer()  # the caller stopped typing: the inter-digit timeout ends it

    def answer_all(self, answers: Iterable[str]) -> None:
        for answer in answers:
            if self.finished:
                break
            self.answer(answer)

    def silence(self) -> None:
        """The caller says and presses nothing until the step gives up waiting."""
        node = self.session.node_id
        self.steps.append(Step(node_id=node, kind="answer", text="(silence)"))
        if "speech" in (self.waiting_for or ""):
            self._run(self.session.handle(NoInput(), self.now))  # the speech layer's verdict
        else:
            self._wait_for_timer()

    def finish_silently(self, limit: int = 1000) -> None:
        """Stay silent until the walk ends (a tree must never keep a silent caller forever)."""
        for _ in range(limit):
            if self.finished:
                return
            self.silence()
        raise RuntimeError(f"still in the tree after {limit} silences at {self.session.node_id!r}")

    # Playing the runner ------------------------------------------------------------------------

    def _wait_for_timer(self) -> None:
        deadline = self.session.next_timer()
        if deadline is None:
            raise RuntimeError(f"nothing to wait for at {self.session.node_id!r}")
        self.now = max(self.now, deadline)
        self._run(self.session.handle_timer(self.now))

    def _run(self, outputs: list[IvrOutput]) -> None:
        pending = deque(outputs)
        reactions = 0
        while pending:
            output = pending.popleft()
            self.outputs.append(output)
            reply = self._react(output)
            if reply is not None:
                reactions += 1
                if reactions > MAX_REACTIONS:
                    raise RuntimeError("the session keeps asking without waiting for the caller")
                pending.extend(self.session.handle(reply, self.now))

    def _react(self, output: IvrOutput) -> SessionInput | None:
        node = self.session.node_id
        if isinstance(output, Play):
            for part in output.prompts:
                said = f'"{part.text}"' if part.text is not None else f"[{part.file}]"
                self.steps.append(Step(node_id=node, kind="hear", text=said))
            self.now += PROMPT_SECONDS * len(output.prompts)
            return PromptFinished(play_id=output.play_id)
        if isinstance(output, CollectDigits | ListenSpeech):
            return None
        if isinstance(output, CrmLookup):
            found = self._crm_record is not None
            record = self._crm_record or {}
            shown = ", ".join(f"{k}={v}" for k, v in record.items()) if found else "no record"
            self.steps.append(Step(node_id=node, kind="crm", text=f"lookup {output.key}: {shown}"))
            return CrmLookupResult(
                lookup_id=output.lookup_id, found=found, fields=MappingProxyType(dict(record))
            )
        if isinstance(output, RecordVoicemail):
            self._recordings += 1
            beep = " after a beep" if output.beep else ""
            self.steps.append(
                Step(node_id=node, kind="record", text=f"voicemail for {output.mailbox}{beep}")
            )
            seconds = min(RECORDING_SECONDS, float(output.max_seconds))
            self.now += seconds
            return RecordingFinished(
                record_id=output.record_id,
                recording_id=f"recording-{self._recordings}",
                duration_seconds=seconds,
            )
        self._describe(node, output)
        return None

    def _describe(self, node: str, output: IvrOutput) -> None:
        text: str | None = None
        if isinstance(output, EnqueueCall):
            text = f"enqueue in {output.queue!r}{_routing(output)}"
        elif isinstance(output, Transfer):
            via = f" through trunk {output.trunk}" if output.trunk else ""
            text = f"transfer to {output.kind} {output.target}{via}"
        elif isinstance(output, OfferCallback):
            text = f"callback to {output.number} from queue {output.queue!r}{_routing(output)}"
        elif isinstance(output, Hangup):
            text = f"hang up ({output.reason})"
        elif isinstance(output, IvrInput):
            self.steps.append(
                Step(node_id=output.node_id, kind="note", text=f"answer {output.outcome}")
            )
        elif isinstance(output, IvrVoicemailRecorded):
            self._note(node, f"voicemail saved as {output.recording_id}")
        elif isinstance(output, IvrExited):
            text = None
        elif isinstance(output, StopPlayback):
            self._note(node, "prompt interrupted")
        if text is not None:
            self.steps.append(Step(node_id=node, kind="exit", text=text))

    def _note(self, node: str, text: str) -> None:
        self.steps.append(Step(node_id=node, kind="note", text=text))

    def _note_answer(self, node: str, given: SessionInput) -> None:
        if isinstance(given, DigitsReceived):
            text = f"presses {given.digits}"
        elif isinstance(given, SpeechRecognized):
            text = f'says "{given.text}" (confidence {given.confidence:.2f})'
        else:
            text = "says something the recognizer cannot match"
        self.steps.append(Step(node_id=node, kind="answer", text=text))


def _routing(handoff: EnqueueCall | OfferCallback) -> str:
    """How the ACD will route the call: priority, the caller's skills, attributes."""
    text = f" with priority {handoff.priority}"
    if handoff.skills:
        text += ", skills " + ", ".join(f"{k} {v}" for k, v in handoff.skills.items())
    if handoff.attributes:
        text += ", attributes " + ", ".join(f"{k}={v}" for k, v in handoff.attributes.items())
    return text
