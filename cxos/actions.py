"""The supervisor API's actions carried out on the call center, and its admin operations.

Agent actions go to the ACD service (its state machine decides what is allowed: pausing a
logged-out agent is refused as ``wrong_state``); call actions go to telephony's call API for the
calls of this node. Each refusal names what was wrong, so the API answers 404/409/503 with it.

Supervisor listen, whisper and barge ring the supervisor's own phone (the SIP account of the
agent entry named in the request) through telephony's call API and return once it rings; the
phone joins the call when answered, reported as ``call.monitor_started`` (or
``call.monitor_failed``). Asking again for the same supervisor changes the mode at once;
``end_monitor`` takes the supervisor off the call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

from acd.agent_state import IllegalTransitionError
from acd.core import UnknownCallError
from acd.service import AcdService
from config.source import ConfigProblem
from cxos.recordings import CallRecordings
from supervisor_api.actions import (
    ActionRefusedError,
    RefusalKind,
    ReloadProblem,
)
from supervisor_api.actions import MonitorMode as ApiMonitorMode
from telephony.calls import Call, MonitorError, MonitorMode
from telephony.rtp.audio import RecordingLayout

__all__ = ["ActionTarget", "ApplicationAdministration", "CallCenterActions", "Reloadable"]

logger = logging.getLogger(__name__)


class ActionTarget(Protocol):
    """What the actions act on: :class:`cxos.callcenter.CallCenter` has this shape."""

    @property
    def acd(self) -> AcdService: ...

    def call(self, call_id: str) -> Call | None: ...


class CallCenterActions:
    """:class:`supervisor_api.actions.SupervisorActions` on one node's call center."""

    def __init__(self, center: ActionTarget, *, recordings: CallRecordings) -> None:
        self._center = center
        self._recordings = recordings

    # ------------------------------------------------------------------ agents

    async def agent_login(self, agent_id: str, *, by: str) -> None:
        await self._agent(agent_id, "log in", lambda: self._center.acd.login(agent_id), by)

    async def agent_logout(self, agent_id: str, *, by: str) -> None:
        await self._agent(agent_id, "log out", lambda: self._center.acd.logout(agent_id), by)

    async def agent_pause(self, agent_id: str, reason: str, *, by: str) -> None:
        await self._agent(agent_id, "pause", lambda: self._center.acd.pause(agent_id, reason), by)

    async def agent_unpause(self, agent_id: str, *, by: str) -> None:
        await self._agent(agent_id, "unpause", lambda: self._center.acd.unpause(agent_id), by)

    async def _agent(
        self, agent_id: str, what: str, action: Callable[[], Awaitable[None]], by: str
    ) -> None:
        if agent_id not in self._center.acd.engine.agents:
            raise ActionRefusedError(RefusalKind.UNKNOWN_AGENT, f"no agent {agent_id!r}")
        try:
            await action()
        except IllegalTransitionError as exc:
            raise ActionRefusedError(RefusalKind.WRONG_STATE, str(exc)) from None
        except ValueError as exc:
            raise ActionRefusedError(RefusalKind.WRONG_STATE, str(exc)) from None
        except RuntimeError as exc:
            raise _unavailable(exc) from None
        logger.info("agent %s: %s by %s", agent_id, what, by)

    # ------------------------------------------------------------------ waiting callers

    async def set_priority(self, call_id: str, priority: int, *, by: str) -> None:
        await self._waiting(
            call_id, lambda: self._center.acd.set_priority(call_id, priority), by, "priority"
        )

    async def move_call(self, call_id: str, queue_id: str, *, by: str) -> None:
        if queue_id not in self._center.acd.engine.queues:
            raise ActionRefusedError(
                RefusalKind.UNKNOWN_QUEUE, f"no queue {queue_id!r}", field="body.queue_id"
            )
        await self._waiting(
            call_id, lambda: self._center.acd.move_call(call_id, queue_id), by, "move"
        )

    async def _waiting(
        self, call_id: str, action: Callable[[], Awaitable[None]], by: str, what: str
    ) -> None:
        try:
            await action()
        except UnknownCallError:
            if self._center.call(call_id) is not None:
                raise ActionRefusedError(
                    RefusalKind.WRONG_STATE, f"call {call_id!r} is not waiting in a queue"
                ) from None
            raise ActionRefusedError(RefusalKind.UNKNOWN_CALL, f"no call {call_id!r}") from None
        except ValueError as exc:  # e.g. moving a caller to the queue they are in
            raise ActionRefusedError(RefusalKind.WRONG_STATE, str(exc)) from None
        except RuntimeError as exc:
            raise _unavailable(exc) from None
        logger.info("call %s: %s by %s", call_id, what, by)

    # ------------------------------------------------------------------ calls

    async def hangup(self, call_id: str, *, by: str) -> None:
        call = self._call(call_id)
        logger.info("call %s: hung up by %s", call_id, by)
        call.hangup()

    async def start_recording(self, call_id: str, *, by: str, layout: str = "stereo") -> None:
        call = self._call(call_id)
        try:
            recording_id, path = await self._recordings.start(call, layout=RecordingLayout(layout))
        except OSError as exc:
            raise _unavailable(exc) from None
        except RuntimeError as exc:  # already recorded, or the call ended meanwhile
            if call.ended:
                raise ActionRefusedError(
                    RefusalKind.UNKNOWN_CALL, f"call {call_id!r} has ended"
                ) from None
            raise ActionRefusedError(RefusalKind.WRONG_STATE, str(exc)) from None
        logger.info("call %s: recording %s to %s by %s", call_id, recording_id, path.name, by)

    async def stop_recording(self, call_id: str, *, by: str) -> None:
        call = self._call(call_id)
        if call.media.stop_recording() is None:
            raise ActionRefusedError(
                RefusalKind.WRONG_STATE, f"call {call_id!r} is not being recorded"
            )
        logger.info("call %s: recording stopped by %s", call_id, by)

    async def monitor(self, call_id: str, mode: ApiMonitorMode, agent_id: str, *, by: str) -> None:
        call = self._call(call_id)
        agent = self._center.acd.engine.agents.get(agent_id)
        if agent is None:
            raise ActionRefusedError(
                RefusalKind.UNKNOWN_AGENT, f"no agent {agent_id!r}", field="body.agent_id"
            )
        sip_user = agent.profile.sip_user
        if sip_user is None:
            raise ActionRefusedError(
                RefusalKind.UNAVAILABLE,
                f"agent {agent_id!r} has no SIP account whose phone could be rung",
                field="body.agent_id",
            )
        wanted = MonitorMode(mode.value)
        try:
            current = call.monitor_leg
            if current is not None and current.sip_user == sip_user:
                call.set_monitor_mode(wanted)
                logger.info("call %s: %s now in %s mode, by %s", call_id, agent_id, wanted, by)
                return
            call.monitor(sip_user, wanted)
        except MonitorError as exc:
            if exc.reason == "unregistered":
                raise ActionRefusedError(
                    RefusalKind.UNAVAILABLE,
                    f"agent {agent_id!r}'s phone ({sip_user}) is not registered",
                    field="body.agent_id",
                ) from None
            raise ActionRefusedError(RefusalKind.WRONG_STATE, str(exc)) from None
        logger.info(
            "call %s: ringing %s (%s) to %s, by %s", call_id, agent_id, sip_user, wanted, by
        )

    async def end_monitor(self, call_id: str, *, by: str) -> None:
        call = self._call(call_id)
        if not call.monitoring:
            raise ActionRefusedError(
                RefusalKind.WRONG_STATE, f"no supervisor is on call {call_id!r} or being rung"
            )
        call.end_monitor()
        logger.info("call %s: monitoring ended by %s", call_id, by)

    def _call(self, call_id: str) -> Call:
        call = self._center.call(call_id)
        if call is None or call.ended:
            raise ActionRefusedError(RefusalKind.UNKNOWN_CALL, f"no call {call_id!r} in progress")
        return call


def _unavailable(exc: Exception) -> ActionRefusedError:
    logger.warning("action not carried out: %s", exc)
    return ActionRefusedError(RefusalKind.UNAVAILABLE, f"the call center cannot do it now: {exc}")


class Reloadable(Protocol):
    """The application: validates its configuration directory again and swaps it in."""

    def reload_configuration(self) -> Sequence[ConfigProblem]: ...


class ApplicationAdministration:
    """:class:`supervisor_api.actions.Administration` on the running application."""

    def __init__(self, application: Reloadable, config_dir: Path) -> None:
        self._application = application
        self._config_dir = config_dir

    async def reload_configuration(self) -> Sequence[ReloadProblem]:
        return [
            ReloadProblem(file=self._name(p.path), line=p.line, message=p.message)
            for p in self._application.reload_configuration()
        ]

    def _name(self, path: Path) -> str:
        """The file relative to the configuration directory (what an admin edits)."""
        try:
            return str(path.relative_to(self._config_dir))
        except ValueError:
            return str(path)
