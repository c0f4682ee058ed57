"""Building the API for tests: tokens of each role, a recording fake of the actions, a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.registry import Collector

from config.api import ApiAccessSettings, ApiToken, QueueTargets, Role
from cxos.bus import EventBus
from cxos.storage.database import Pool
from supervisor_api.actions import ActionRefusedError, MonitorMode, RefusalKind, ReloadProblem
from supervisor_api.app import create_app
from supervisor_api.state import ApiDependencies

ADMIN = "admin-token-0123456789"
SUPERVISOR = "supervisor-token-0123456789"
AGENT_A1 = "agent-a1-token-0123456789"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def settings(**overrides: Any) -> ApiAccessSettings:
    values: dict[str, Any] = {
        "tokens": (
            ApiToken(name="ops", role=Role.ADMIN, token=ADMIN),
            ApiToken(name="sup", role=Role.SUPERVISOR, token=SUPERVISOR),
            ApiToken(name="a1-phone", role=Role.AGENT, token=AGENT_A1, agent_id="a1"),
        ),
        "queues": {"sales": QueueTargets(service_level_seconds=20, service_level2_seconds=60)},
    }
    values.update(overrides)
    return ApiAccessSettings(**values)


class AnyId:
    """Every id exists (to let a fuzzer past the look-up to the input checks)."""

    def __contains__(self, item: object) -> bool:
        return True


@dataclass
class FakeActions:
    """Records every action; refuses unknown agents and calls as the real one would."""

    agents: Container[str] = field(default_factory=lambda: {"a1", "a2", "a3"})
    calls: Container[str] = field(default_factory=lambda: {"c1"})
    queues: Container[str] = field(default_factory=lambda: {"sales", "support"})
    done: list[tuple[Any, ...]] = field(default_factory=list)

    def _agent(self, agent_id: str) -> None:
        if agent_id not in self.agents:
            raise ActionRefusedError(RefusalKind.UNKNOWN_AGENT, f"no agent {agent_id!r}")

    def _call(self, call_id: str) -> None:
        if call_id not in self.calls:
            raise ActionRefusedError(RefusalKind.UNKNOWN_CALL, f"no call {call_id!r}")

    async def agent_login(self, agent_id: str, *, by: str) -> None:
        self._agent(agent_id)
        self.done.append(("login", agent_id, by))

    async def agent_logout(self, agent_id: str, *, by: str) -> None:
        self._agent(agent_id)
        self.done.append(("logout", agent_id, by))

    async def agent_pause(self, agent_id: str, reason: str, *, by: str) -> None:
        self._agent(agent_id)
        self.done.append(("pause", agent_id, reason, by))

    async def agent_unpause(self, agent_id: str, *, by: str) -> None:
        self._agent(agent_id)
        self.done.append(("unpause", agent_id, by))

    async def set_priority(self, call_id: str, priority: int, *, by: str) -> None:
        self._call(call_id)
        self.done.append(("priority", call_id, priority, by))

    async def move_call(self, call_id: str, queue_id: str, *, by: str) -> None:
        self._call(call_id)
        if queue_id not in self.queues:
            raise ActionRefusedError(
                RefusalKind.UNKNOWN_QUEUE, f"no queue {queue_id!r}", field="body.queue_id"
            )
        self.done.append(("move", call_id, queue_id, by))

    async def hangup(self, call_id: str, *, by: str) -> None:
        self._call(call_id)
        self.done.append(("hangup", call_id, by))

    async def start_recording(self, call_id: str, *, by: str, layout: str = "stereo") -> None:
        self._call(call_id)
        self.done.append(("record", call_id, by, layout))

    async def stop_recording(self, call_id: str, *, by: str) -> None:
        self._call(call_id)
        self.done.append(("stop_record", call_id, by))

    async def monitor(self, call_id: str, mode: MonitorMode, agent_id: str, *, by: str) -> None:
        self._call(call_id)
        self._agent(agent_id)
        self.done.append(("monitor", call_id, mode, agent_id, by))

    async def end_monitor(self, call_id: str, *, by: str) -> None:
        self._call(call_id)
        if not any(d[:2] == ("monitor", call_id) for d in self.done):
            raise ActionRefusedError(RefusalKind.WRONG_STATE, f"nobody monitors {call_id!r}")
        self.done.append(("end_monitor", call_id, by))


@dataclass
class FakeAdministration:
    problems: Sequence[ReloadProblem] = ()
    reloads: int = 0

    async def reload_configuration(self) -> Sequence[ReloadProblem]:
        self.reloads += 1
        return self.problems


@dataclass
class Harness:
    bus: EventBus
    actions: FakeActions
    administration: FakeAdministration
    app: web.Application


def build(
    bus: EventBus,
    clock: Callable[[], float],
    *,
    history: Pool | None = None,
    collectors: Sequence[Collector] = (),
    **setting_overrides: Any,
) -> Harness:
    actions = FakeActions()
    administration = FakeAdministration()
    app = create_app(
        ApiDependencies(
            bus=bus,
            node="node-a",
            settings=settings(**setting_overrides),
            actions=actions,
            administration=administration,
            queues=["sales", "support"],
            agents=["a1", "a2", "a3"],
            phones={"1001": "a1", "1002": "a2", "1003": "a3"},
            clock=clock,
            history=history,
            extra_collectors=collectors,
        )
    )
    return Harness(bus=bus, actions=actions, administration=administration, app=app)


async def client_for(harness: Harness) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(harness.app, host="127.0.0.1")) as client:
        yield client
