"""The asyncio side of the IVR: runs one :class:`~ivr.interpreter.IvrSession` on a live call.

Everything that happens to the call becomes one item in the runner's inbox: a key the caller
pressed (type-ahead included: keys are read all the time, and the session keeps the ones pressed
before a question), a prompt that ended, a speech result, a CRM answer, a voicemail that was
recorded, the session's own deadline (one ``call_at``, aioquic's shape) or the caller hanging up.
A single loop takes the items in order, feeds the session and performs the actions it returns.

Every wait is bounded: a prompt by ``max_prompt_seconds``, a CRM look-up and a silence by the
session's own timer, a recording by the node's ``max_seconds``, and the loop itself by
``max_idle_seconds`` in case one of those bounds is broken. A caller who hangs up mid-prompt ends
the session cleanly (``ivr.exited`` with destination ``abandoned``); a voicemail caller who hangs
up after the beep has left a message (the recording is finished first).

Hand-offs (a queue, a transfer, a callback) are not performed here: the ACD and telephony meet
the IVR in the composition root, which receives them in the :class:`IvrOutcome`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from config.ivr.schema import DTMF_KEYS
from config.ivr.tree import IvrTree
from ivr import actions
from ivr.events import Destination, IvrEntered, IvrExited, IvrInput, IvrVoicemailRecorded
from ivr.inbox import (
    CallEnded,
    Inbox,
    InboxItem,
    RecordingDue,
    RecordingStarted,
    SpeechHeard,
    SpeechStarted,
    TimerDue,
)
from ivr.inputs import CallerHungUp, CallStarted, CrmLookupResult, DigitsReceived, PromptFinished
from ivr.inputs import IvrInput as SessionInput
from ivr.interpreter import IvrSession
from ivr.listening import PromptState, SpeechListener
from ivr.ports import (
    CustomerLookup,
    DigitsCollected,
    IvrCall,
    PcmFrame,
    PlaybackEnded,
    PromptRenderer,
    SpeechRecognizer,
    SpeechSession,
)
from ivr.prompts import prompt_files
from ivr.state import IvrOutput
from ivr.voicemail import VoicemailRecorder

__all__ = [
    "CustomerLookup",
    "DigitsCollected",
    "EventSink",
    "Handoff",
    "IvrCall",
    "IvrOutcome",
    "IvrRunner",
    "PcmFrame",
    "PlaybackEnded",
    "PromptRenderer",
    "RunnerSettings",
    "SpeechRecognizer",
    "SpeechSession",
]

logger = logging.getLogger(__name__)

#: What the runner publishes: the session's domain events.
EventSink = Callable[[object], None]
#: Where the call goes after the tree, for the composition root to carry out.
Handoff = actions.EnqueueCall | actions.Transfer | actions.OfferCallback

#: How long one wait for a key lasts before it is simply renewed (keys are read all the time).
_KEY_WAIT_SECONDS = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerSettings:
    """How the runner treats a call; every field has a default."""

    #: Folder of voicemail recordings, one subfolder per mailbox.
    voicemail_dir: Path = Path("voicemail")
    #: WAV played before a voicemail recording; None: a 1 kHz tone of 0.5 s, written once as
    #: ``beep.wav`` in ``voicemail_dir``.
    beep_file: Path | None = None
    #: Key that ends a voicemail recording early (the caller may also just hang up).
    end_recording_key: str | None = "#"
    #: Longest a prompt may take to render and play, in seconds; then it counts as finished.
    max_prompt_seconds: float = 300.0
    #: Longest the runner waits with nothing happening, in seconds; then it hangs up. A safety
    #: net: every wait has its own, shorter bound.
    max_idle_seconds: float = 900.0
    #: Keys waiting in the inbox beyond this are dropped (a flood of keys, not a caller).
    max_pending_digits: int = 32
    #: Seconds given to cancelled work (recognizer, look-up) to wind down when the call leaves.
    cleanup_seconds: float = 2.0

    def __post_init__(self) -> None:
        for name in ("max_prompt_seconds", "max_idle_seconds", "cleanup_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")
        if self.max_pending_digits < 1:
            raise ValueError(
                f"max_pending_digits must be at least 1, got {self.max_pending_digits}"
            )
        key = self.end_recording_key
        if key is not None and (len(key) != 1 or key not in DTMF_KEYS):
            raise ValueError(f"end_recording_key {key!r} is not a key 0-9, * or #")


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrOutcome:
    """How a call left the tree."""

    exited: IvrExited
    #: The queue, transfer or callback the call goes to next (None when it ended here).
    handoff: Handoff | None = None
    #: The message the caller left, if any.
    voicemail: IvrVoicemailRecorded | None = None

    @property
    def destination(self) -> Destination:
        return self.exited.destination

    @property
    def target(self) -> str:
        return self.exited.target

    @property
    def variables(self) -> Mapping[str, str]:
        return self.exited.variables


class CallTasks:
    """The tasks one call's IVR runs beside its main loop (keys, hang-up, prompts, look-ups,
    recognitions, recordings); a task that fails is logged with the call's id."""

    __slots__ = ("_call_id", "_tasks")

    def __init__(self, call_id: str) -> None:
        self._call_id = call_id
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def running(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("call %s: IVR task failed", self._call_id, exc_info=task.exception())


class IvrRunner:
    """Runs one call through one tree. The tree object is kept for the whole call: a
    configuration reload builds new trees and does not change this one."""

    def __init__(
        self,
        tree: IvrTree,
        call: IvrCall,
        *,
        renderer: PromptRenderer,
        publish: EventSink,
        speech: SpeechRecognizer | None = None,
        crm: CustomerLookup | None = None,
        settings: RunnerSettings | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``wall_clock`` gives the (timezone-aware) time the call starts at, which business
        hours are judged by; the session's timers run on the event loop's clock."""
        self.tree = tree
        self.call = call
        self.session = IvrSession(tree, call_id=call.call_id)
        self._renderer = renderer
        self._publish = publish
        self._crm = crm
        self._settings = settings = settings or RunnerSettings()
        self._wall_clock = wall_clock or (lambda: datetime.now(UTC))
        self._inbox = Inbox(call.call_id, max_digits=settings.max_pending_digits)
        # The helpers below start their tasks through `_tasks` and read the prompt's state
        # from `_prompt`, never through a method of the runner or a closure over it: they hold
        # no reference back to the runner, so a call's objects form no reference cycle and are
        # freed as soon as the call ends, without waiting for the garbage collector.
        self._tasks = CallTasks(call.call_id)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # The prompt the session waits for, if any.
        self._play_task: asyncio.Task[None] | None = None
        self._play_id: int | None = None
        self._play_barge_in = False
        self._play_silenced = False
        self._prompt = PromptState()
        self._listener = SpeechListener(call, speech, self._inbox, self._tasks.spawn, self._prompt)
        self._voicemail_recorder = VoicemailRecorder(
            call,
            self._inbox,
            self._tasks.spawn,
            folder=settings.voicemail_dir,
            beep_file=settings.beep_file,
            max_beep_seconds=settings.max_prompt_seconds,
        )
        self._handoff: Handoff | None = None
        self._voicemail: IvrVoicemailRecorded | None = None
        self._exited: IvrExited | None = None

    @property
    def call_id(self) -> str:
        return self.session.call_id

    # Running -----------------------------------------------------------------------------------

    async def run(
        self,
        *,
        caller_id: str,
        dialed_number: str,
        variables: Mapping[str, str] | None = None,
    ) -> IvrOutcome:
        """Walk the tree with the caller until the call leaves it; returns where it went."""
        loop = asyncio.get_running_loop()
        self._tasks.spawn(self._read_keys())
        self._tasks.spawn(self._watch_hangup())
        start = CallStarted(
            caller_id=caller_id,
            dialed_number=dialed_number,
            started_at=self._wall_clock(),
            variables=MappingProxyType(dict(variables or {})),
        )
        try:
            self._apply(self.session.handle(start, loop.time()))
            while not self.session.finished:
                self._arm_timer()
                item = await self._inbox.get(within=self._settings.max_idle_seconds)
                if item is None:
                    self._give_up()
                else:
                    self._take(item)
        finally:
            await self._wind_down()
        assert self._exited is not None
        return IvrOutcome(exited=self._exited, handoff=self._handoff, voicemail=self._voicemail)

    def _take(self, item: InboxItem) -> None:
        if isinstance(item, TimerDue):
            if item.deadline != self._timer_at:
                return  # re-armed since
            self._timer = self._timer_at = None
            # call_at may run a little early (the loop's clock resolution): it is due now.
            now = max(asyncio.get_running_loop().time(), item.deadline)
            self._apply(self.session.handle_timer(now))
        elif isinstance(item, DigitsReceived):
            key = self._settings.end_recording_key
            if self._voicemail_recorder.recording and key is not None and key in item.digits:
                self._feed(self._voicemail_recorder.finish())
            else:
                self._feed(item)
        elif isinstance(item, PromptFinished):
            if item.play_id == self._play_id:
                self._prompt.playing = False
                self._play_id = None
                self._listener.prompt_ended()
            self._feed(item)
        elif isinstance(item, SpeechStarted):
            if self._listener.is_current(item.generation):
                self._barge_in_by_voice()
        elif isinstance(item, SpeechHeard):
            if self._listener.is_current(item.generation) and self._listens_for_speech():
                self._feed(item.answer)
        elif isinstance(item, RecordingStarted):
            self._voicemail_recorder.started(item)
        elif isinstance(item, RecordingDue):
            if self._voicemail_recorder.is_due(item):
                self._feed(self._voicemail_recorder.finish())
        elif isinstance(item, CallEnded):
            self._caller_left()
        else:
            self._feed(item)

    def _feed(self, event: SessionInput) -> None:
        self._apply(self.session.handle(event, asyncio.get_running_loop().time()))

    def _apply(self, outputs: list[IvrOutput]) -> None:
        for output in outputs:
            if isinstance(output, IvrEntered | IvrInput | IvrVoicemailRecorded | IvrExited):
                if isinstance(output, IvrVoicemailRecorded):
                    self._voicemail = output
                elif isinstance(output, IvrExited):
                    self._exited = output
                self._publish(output)
            else:
                self._perform(output)
        if not self._listens_for_speech():
            self._listener.stop()

    def _perform(self, action: actions.IvrAction) -> None:
        if isinstance(action, actions.Play):
            self._start_play(action)
        elif isinstance(action, actions.StopPlayback):
            self._stop_play()
        elif isinstance(action, actions.CollectDigits):
            pass  # keys are read all the time; the session keeps its own digit timers
        elif isinstance(action, actions.ListenSpeech):
            self._listener.start(action)
        elif isinstance(action, actions.CrmLookup):
            self._tasks.spawn(self._look_up(action))
        elif isinstance(action, actions.RecordVoicemail):
            self._voicemail_recorder.start(action)
        elif isinstance(action, actions.Hangup):
            if not self.call.ended:
                logger.info("call %s: IVR hangs up (%s)", self.call_id, action.reason)
                self.call.hangup()
        else:
            self._handoff = action

    def _listens_for_speech(self) -> bool:
        return "speech" in (self.session.listening_for or "")

    def _arm_timer(self) -> None:
        deadline = self.session.next_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(deadline, self._inbox.post, TimerDue(deadline))
            self._timer_at = deadline

    def _give_up(self) -> None:
        logger.error(
            "call %s: nothing happened for %.0f s at node %r; hanging up",
            self.call_id,
            self._settings.max_idle_seconds,
            self.session.node_id,
        )
        self.call.hangup()
        self._caller_left()

    async def _wind_down(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._voicemail_recorder.abandon()
        if self._prompt.playing:
            self._stop_play()
        self._listener.stop()
        tasks = self._tasks.running()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self._settings.cleanup_seconds)
        await self._listener.close(self._settings.cleanup_seconds)

    # The caller --------------------------------------------------------------------------------

    async def _read_keys(self) -> None:
        while not self.call.ended:
            try:
                got = await self.call.collect_digits(
                    1,
                    terminator=None,
                    first_timeout=_KEY_WAIT_SECONDS,
                    inter_digit_timeout=_KEY_WAIT_SECONDS,
                )
            except RuntimeError:
                if self.call.ended:
                    return  # the caller hung up; _watch_hangup reports it
                raise
            if got.digits:
                self._inbox.post(DigitsReceived(digits=got.digits))

    async def _watch_hangup(self) -> None:
        await self.call.wait_ended()
        self._inbox.post(CallEnded())

    def _caller_left(self) -> None:
        if self.session.finished:
            return
        logger.info("call %s: caller hung up at node %r", self.call_id, self.session.node_id)
        if self._voicemail_recorder.recording:
            # Hanging up is how a voicemail usually ends: the message is kept.
            self._feed(self._voicemail_recorder.finish())
        self._voicemail_recorder.abandon()
        if not self.session.finished:
            self._feed(CallerHungUp())

    # Prompts -----------------------------------------------------------------------------------

    def _start_play(self, action: actions.Play) -> None:
        if self._prompt.playing:
            self._stop_play()
        self._play_barge_in = action.barge_in
        self._play_silenced = False
        self._prompt.playing = True
        self._play_id = action.play_id
        self._play_task = self._tasks.spawn(self._play(action))

    def _stop_play(self) -> None:
        """The session no longer waits for this prompt: stop it without reporting it."""
        self._prompt.playing = False
        self._play_id = None
        if self._play_task is not None:
            self._play_task.cancel()
            self._play_task = None
        if not self.call.ended:
            self.call.stop_playback()

    async def _play(self, action: actions.Play) -> None:
        try:
            async with asyncio.timeout(self._settings.max_prompt_seconds):
                files = await prompt_files(
                    action.prompts, language=action.language, renderer=self._renderer
                )
                if files and not self._play_silenced:
                    ended = await self.call.play(files, barge_in=action.barge_in)
                    logger.debug("call %s: prompt %s", self.call_id, ended.reason)
        except TimeoutError:
            logger.warning(
                "call %s: prompt not over after %.0f s; stopped",
                self.call_id,
                self._settings.max_prompt_seconds,
            )
            if not self.call.ended:
                self.call.stop_playback()
        except Exception:
            if self.call.ended:
                return  # the hang-up is reported by _watch_hangup
            # A prompt that cannot be rendered or read must not cost the caller the call.
            logger.warning("call %s: prompt could not be played", self.call_id, exc_info=True)
        self._inbox.post(PromptFinished(play_id=action.play_id))

    def _barge_in_by_voice(self) -> None:
        if self._prompt.playing and self._play_barge_in and not self._play_silenced:
            logger.debug("call %s: caller spoke over the prompt", self.call_id)
            # The play task ends with the playback and reports it: the session then waits for
            # the answer with its silence timer running.
            self._play_silenced = True
            if not self.call.ended:
                self.call.stop_playback()

    # CRM ---------------------------------------------------------------------------------------

    async def _look_up(self, action: actions.CrmLookup) -> None:
        record: Mapping[str, str] | None = None
        if self._crm is not None:
            try:
                async with asyncio.timeout(action.timeout):
                    record = await self._crm.lookup(action.key, action.fields)
            except TimeoutError:
                return  # the session's own timer, due now, takes the not-found route
            except Exception:
                # A failing CRM must not keep the caller: the call goes on as not found.
                logger.warning("call %s: CRM look-up failed", self.call_id, exc_info=True)
        self._inbox.post(
            CrmLookupResult(
                lookup_id=action.lookup_id,
                found=record is not None,
                fields=MappingProxyType(dict(record or {})),
            )
        )
