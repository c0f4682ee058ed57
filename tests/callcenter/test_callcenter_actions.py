"""Supervisor actions on the call center: agents through the ACD, refusals that say why."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from acd.config_adapter import build_engine
from acd.service import AcdService
from acd.store import InProcessAcdStore
from config.loader import default_config_dir, load_configuration
from config.source import ConfigProblem
from cxos.actions import ApplicationAdministration, CallCenterActions
from cxos.recordings import CallRecordings
from supervisor_api.actions import ActionRefusedError, MonitorMode, RefusalKind
from telephony.calls import MonitorError
from telephony.calls import MonitorMode as CallMonitorMode


class SilentPort:
    """A telephony port that rings nobody (no caller here reaches an agent)."""

    async def ring_agent(self, *args: Any) -> None: ...

    async def cancel_ring(self, *args: Any) -> None: ...

    async def bridge(self, *args: Any) -> None: ...

    async def announce(self, *args: Any) -> None: ...

    async def route_call(self, *args: Any) -> None: ...

    async def offer_callback(self, *args: Any) -> None: ...

    async def dial_callback(self, *args: Any) -> None: ...


@dataclass
class FakeCall:
    call_id: str
    ended: bool = False
    hung_up: bool = False
    #: What `monitor` refuses with (telephony's reason), None to accept.
    monitor_refusal: str | None = None
    monitored: list[tuple[str, CallMonitorMode]] = field(default_factory=list)
    monitor_leg: Any = None

    def hangup(self) -> None:
        self.hung_up = True

    def monitor(self, sip_user: str, mode: CallMonitorMode) -> None:
        if self.monitor_refusal is not None:
            raise MonitorError(self.monitor_refusal, f"refused: {self.monitor_refusal}")
        self.monitored.append((sip_user, mode))

    @property
    def monitoring(self) -> bool:
        return bool(self.monitored)

    def end_monitor(self) -> None:
        self.monitored.clear()


@dataclass
class Center:
    acd: AcdService
    calls: Mapping[str, FakeCall] = field(default_factory=dict)

    def call(self, call_id: str) -> Any:
        return self.calls.get(call_id)


@pytest.fixture
async def center() -> AsyncIterator[Center]:
    configuration = load_configuration(default_config_dir())
    events: list[object] = []
    acd = AcdService(
        build_engine(configuration.queue_file, configuration.agents),
        InProcessAcdStore(),
        SilentPort(),
        events.append,
    )
    await acd.start()
    yield Center(acd, {"c1": FakeCall("c1")})
    await acd.stop()


def actions(center: Center, tmp_path: Path) -> CallCenterActions:
    return CallCenterActions(center, recordings=CallRecordings(tmp_path))


async def refusal(action: Any) -> ActionRefusedError:
    with pytest.raises(ActionRefusedError) as caught:
        await action
    return caught.value


async def test_agents_log_in_pause_and_log_out_through_the_acd(
    center: Center, tmp_path: Path
) -> None:
    api = actions(center, tmp_path)
    engine = center.acd.engine
    assert engine.agent_state("alice").value == "logged_out"  # nobody works before logging in
    await api.agent_login("alice", by="supervisor")
    assert engine.agent_state("alice").value == "available"
    await api.agent_pause("alice", "lunch", by="supervisor")
    assert engine.agent_state("alice").value == "paused"
    await api.agent_unpause("alice", by="supervisor")
    await api.agent_logout("alice", by="supervisor")
    assert engine.agent_state("alice").value == "logged_out"


async def test_agent_actions_are_refused_with_their_reason(center: Center, tmp_path: Path) -> None:
    api = actions(center, tmp_path)
    unknown = await refusal(api.agent_login("mallory", by="supervisor"))
    assert unknown.kind is RefusalKind.UNKNOWN_AGENT
    wrong = await refusal(api.agent_unpause("alice", by="supervisor"))
    assert wrong.kind is RefusalKind.WRONG_STATE
    assert "logged_out" in wrong.message


async def test_priority_and_moves_of_callers_not_waiting_are_refused(
    center: Center, tmp_path: Path
) -> None:
    api = actions(center, tmp_path)
    not_waiting = await refusal(api.set_priority("c1", 5, by="supervisor"))
    assert not_waiting.kind is RefusalKind.WRONG_STATE  # on this node, but in no queue
    unknown = await refusal(api.set_priority("nobody", 5, by="supervisor"))
    assert unknown.kind is RefusalKind.UNKNOWN_CALL
    no_queue = await refusal(api.move_call("c1", "nowhere", by="supervisor"))
    assert (no_queue.kind, no_queue.field) == (RefusalKind.UNKNOWN_QUEUE, "body.queue_id")


async def test_waiting_callers_get_a_new_priority_and_move_queues(
    center: Center, tmp_path: Path
) -> None:
    api = actions(center, tmp_path)
    await center.acd.enqueue("c1", "sales")
    await api.set_priority("c1", 7, by="supervisor")
    assert center.acd.engine.calls["c1"].priority == 7
    await api.move_call("c1", "support", by="supervisor")
    assert center.acd.engine.waiting("support") == ("c1",)
    same = await refusal(api.move_call("c1", "support", by="supervisor"))
    assert same.kind is RefusalKind.WRONG_STATE


async def test_hangup_ends_the_call_and_unknown_calls_are_404(
    center: Center, tmp_path: Path
) -> None:
    api = actions(center, tmp_path)
    await api.hangup("c1", by="supervisor")
    assert center.calls["c1"].hung_up
    gone = await refusal(api.hangup("c2", by="supervisor"))
    assert gone.kind is RefusalKind.UNKNOWN_CALL


@pytest.mark.parametrize("mode", list(MonitorMode))
async def test_monitoring_rings_the_supervisors_own_phone(
    center: Center, tmp_path: Path, mode: MonitorMode
) -> None:
    await actions(center, tmp_path).monitor("c1", mode, "bob", by="supervisor")
    assert center.calls["c1"].monitored == [("1002", CallMonitorMode(mode.value))]


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("unregistered", RefusalKind.UNAVAILABLE),
        ("not_bridged", RefusalKind.WRONG_STATE),
        ("monitored", RefusalKind.WRONG_STATE),
    ],
)
async def test_monitoring_refusals_say_why(
    center: Center, tmp_path: Path, reason: str, kind: RefusalKind
) -> None:
    center.calls["c1"].monitor_refusal = reason
    api = actions(center, tmp_path)
    refused = await refusal(api.monitor("c1", MonitorMode.LISTEN, "bob", by="supervisor"))
    assert refused.kind is kind
    if reason == "unregistered":
        assert (refused.field, "1002" in refused.message) == ("body.agent_id", True)
    unknown_call = await refusal(api.monitor("c9", MonitorMode.LISTEN, "bob", by="supervisor"))
    assert unknown_call.kind is RefusalKind.UNKNOWN_CALL
    unknown_agent = await refusal(api.monitor("c1", MonitorMode.LISTEN, "eve", by="supervisor"))
    assert (unknown_agent.kind, unknown_agent.field) == (RefusalKind.UNKNOWN_AGENT, "body.agent_id")


async def test_ending_monitoring_takes_the_supervisor_off_and_is_refused_when_none_is_on(
    center: Center, tmp_path: Path
) -> None:
    api = actions(center, tmp_path)
    await api.monitor("c1", MonitorMode.BARGE, "bob", by="supervisor")
    await api.end_monitor("c1", by="supervisor")
    assert center.calls["c1"].monitored == []
    again = await refusal(api.end_monitor("c1", by="supervisor"))
    assert again.kind is RefusalKind.WRONG_STATE and "no supervisor" in again.message
    unknown = await refusal(api.end_monitor("c9", by="supervisor"))
    assert unknown.kind is RefusalKind.UNKNOWN_CALL


class Application:
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems

    def reload_configuration(self) -> list[ConfigProblem]:
        return self.problems


async def test_reload_problems_name_the_file_in_the_configuration_directory(
    tmp_path: Path,
) -> None:
    problem = ConfigProblem(path=tmp_path / "queues.yaml", line=4, message="unknown strategy")
    admin = ApplicationAdministration(Application([problem]), tmp_path)
    [reported] = await admin.reload_configuration()
    assert (reported.file, reported.line, reported.message) == (
        "queues.yaml",
        4,
        "unknown strategy",
    )
    assert await ApplicationAdministration(Application([]), tmp_path).reload_configuration() == []
