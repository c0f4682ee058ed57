"""A caller waiting in a queue hears their place in line, end to end on 127.0.0.1.

No agent is logged in (``joinempty`` lets callers wait anyway), so the callers stay queued and
the queue announces every few seconds. A SIPp trunk caller waits first and hangs up after a
while; a baresip caller joins behind it and keeps what it hears. Without music on hold in the
configuration a waiting caller hears comfort silence, so every second of sound on the baresip
line is an announcement. The event stream must tell the same story: the baresip caller was
told position 2, then position 1 once the caller ahead had left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.contact_center import (
    ContactCenter,
    of_type,
    running_center,
    settle,
    sipp_ok,
)
from tests.integration.e2e_peers import sound_seconds, wait_until_true, wav_channels
from tests.integration.peers import SCENARIOS, free_port, run_sipp
from tests.integration.softphones import Baresip, account_line, baresip_phone

pytestmark = [pytest.mark.peer, pytest.mark.timeout(90)]

#: Announcements every 3 s: position and estimated wait (none is known without agents).
QUEUES = """\
queues:
  sales:
    skills: {sales: 3}
    announce-frequency: 3
    announce-position: yes
    announce-holdtime: yes
  support:
    skills: {support: 3}
  billing:
    skills: {billing: 3}
"""
DIALPLAN = 'numbers:\n  "100": {queue: sales}\n  "*": {ivr: main}\n'
#: Seconds the first caller stays queued before hanging up.
FIRST_CALLER_WAITS = 8.0


@pytest.fixture
def center(config_dir: Path, tmp_path: Path) -> Iterator[ContactCenter]:
    with running_center(config_dir, tmp_path, QUEUES, dialplan_yaml=DIALPLAN) as running:
        yield running


@pytest.fixture
def caller(tmp_path: Path) -> Iterator[Baresip]:
    """The second caller's baresip, keeping what it hears in ``caller/dumps``."""
    dumps = tmp_path / "caller" / "dumps"
    dumps.mkdir(parents=True)
    with baresip_phone(tmp_path / "caller", dump_dir=dumps) as phone:
        yield phone


def first_caller(center: ContactCenter) -> None:
    """A SIPp trunk caller who waits ``FIRST_CALLER_WAITS`` seconds, then hangs up."""
    args = ["-sf", str(SCENARIOS / "uac_caller_hangs_up.xml"), "-s", "100", "-m", "1"]
    args += ["-key", "caller", "5550123", "-d", str(int(FIRST_CALLER_WAITS * 1000))]
    args += ["-mp", str(free_port())]
    sipp_ok(run_sipp(center.server.address, args, center.workdir / "first-caller", 40.0))


def heard_seconds(phone: Baresip) -> float:
    """Seconds of sound (not silence) the phone received on its call so far."""
    found = sorted((phone.log_path.parent / "dumps").glob("dump-*-dec.wav"))
    channels, rate = wav_channels(found[-1]) if found else ([], 8000)
    return sound_seconds(channels[0], rate) if channels else 0.0


def positions(events: list[dict[str, Any]], call_id: str) -> list[int]:
    return [e["data"]["position"] for e in of_type(events, "queue.position", call_id=call_id)]


async def test_a_waiting_caller_hears_their_position_as_the_line_moves(
    center: ContactCenter, caller: Baresip
) -> None:
    async with center.event_stream() as events:
        first = asyncio.get_running_loop().create_task(asyncio.to_thread(first_caller, center))
        (joined,) = await settle(events, "queue.joined")
        first_id = joined["call_id"]

        # baresip calls as a trunk caller would: no registration, from a trunk's source.
        line = account_line("5550199", "unused", center.server.port, regint=0)
        assert caller.command("uanew", line)["ok"]
        assert caller.command("dial", f"sip:100@127.0.0.1:{center.server.port}")["ok"]
        event = await asyncio.to_thread(caller.wait_event, ("CALL_ESTABLISHED",), 20.0)
        assert event is not None, caller.log()[-2000:]
        joins = await settle(events, "queue.joined", 2)
        second_id = joins[1]["call_id"]

        await settle(events, "queue.position", call_id=second_id, position=2, within=20)
        await first
        await settle(events, "queue.left", call_id=first_id, within=20)
        await settle(events, "queue.position", call_id=second_id, position=1, within=20)
        # The announcements reach the caller's ear: seconds of speech over the comfort silence.
        await wait_until_true(lambda: heard_seconds(caller) >= 2.0, 20, "announcement audio")
        assert caller.command("hangup")["ok"]
        await settle(events, "queue.left", call_id=second_id, within=20)

    heard = positions(events, second_id)
    assert heard[0] == 2 and heard[-1] == 1, heard
    assert heard == sorted(heard, reverse=True), heard  # the line only moves forward
    assert positions(events, first_id)[0] == 1
    (left,) = of_type(events, "queue.left", call_id=first_id)
    assert left["data"]["reason"] != "answered"
    # Each announcement is a few seconds of speech; comfort silence between them adds nothing.
    assert heard_seconds(caller) <= 4.0 * len(of_type(events, "queue.position", call_id=second_id))
