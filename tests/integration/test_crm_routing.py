"""CRM data routes callers: a real ``cxos run`` process asks a CRM (a small HTTP server in the
test, speaking the look-up protocol of docs/crm.md) who is calling when a caller joins a queue.

Carol is the only agent logged in, and paused. A caller the CRM does not know waits in sales;
then a caller the CRM marks VIP, with Carol as account owner, joins. When Carol comes back, the
VIP is offered to her first although the other caller waited longer, the VIP's ``queue.joined``
carries the VIP priority, and ``agent.offered`` carries the customer record for Carol's screen.
The VIP either dials the queue directly (the look-up happens on arrival) or goes through an IVR
whose ``crm_lookup`` node found the record (its ``crm.*`` variables feed the same routing, and
the CRM is not asked twice).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.contact_center import (
    ContactCenter,
    CrmStub,
    phone_done,
    running_center,
    serving_crm,
    settle,
    sipp_ok,
)
from tests.integration.peers import SCENARIOS, free_port, run_sipp

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

VIP_NUMBER = "5552222"
OTHER_NUMBER = "5551111"

QUEUES = """\
queues:
  sales:
    skills: {sales: 2}
    strategy: linear
    linear_order: [alice, carol]
    timeout: 15
    wrapuptime: 60
    sticky_wait: 30
  support:
    skills: {support: 3}
  billing:
    skills: {billing: 3}
"""

#: The VIP's way in through the IVR: look the caller up, then queue.
CRM_TREE = """\
trees:
  crm_line:
    start: who
    nodes:
      who:
        type: crm_lookup
        key: "{caller_id}"
        next: sales_queue
      sales_queue:
        type: queue
        queue: sales
"""

DIALPLAN = """\
numbers:
  "200": {queue: sales}
  "300": {ivr: crm_line}
  "*": {ivr: main}
"""


def crm_yaml(port: int) -> str:
    return f"""\
lookup:
  url: http://127.0.0.1:{port}/customers/{{key}}
  timeout: 2
  fields:
    name: customer.full_name
    tier: customer.segment
    vip: customer.vip
    preferred_agent: owner.agent_id
  tier_priorities: {{gold: 5}}
  vip_priority: 10
"""


#: The CRM's look-up endpoint: one VIP customer, everyone else unknown (404).
CRM_RECORDS: dict[str, dict[str, Any]] = {
    VIP_NUMBER: {
        "customer": {"full_name": "Ada Lovelace", "segment": "gold", "vip": True},
        "owner": {"agent_id": "carol"},
    }
}


@pytest.fixture
async def crm() -> AsyncIterator[tuple[CrmStub, int]]:
    stub = CrmStub(CRM_RECORDS)
    async with serving_crm(stub) as port:
        yield stub, port


@pytest.fixture
def center(config_dir: Path, tmp_path: Path, crm: tuple[CrmStub, int]) -> Iterator[ContactCenter]:
    (config_dir / "ivr" / "crm_line.yaml").write_text(CRM_TREE)
    (config_dir / "crm.yaml").write_text(crm_yaml(crm[1]))
    with running_center(config_dir, tmp_path, QUEUES, dialplan_yaml=DIALPLAN) as running:
        yield running


async def caller(center: ContactCenter, number: str, dialled: str, wait_ms: int) -> None:
    """A trunk caller with caller id ``number`` who hangs up after ``wait_ms``."""
    folder = center.workdir / f"caller-{number}"
    args = ["-sf", str(SCENARIOS / "uac_caller_hangs_up.xml"), "-s", dialled, "-m", "1"]
    args += ["-key", "caller", number, "-d", str(wait_ms), "-mp", str(free_port())]
    result = await asyncio.to_thread(run_sipp, center.server.address, args, folder, 60.0)
    sipp_ok(result)


def call_of(events: list[dict[str, Any]], number: str) -> str:
    (started,) = [
        e for e in events if e["type"] == "call.started" and e["data"]["caller_id"] == number
    ]
    return str(started["call_id"])


@pytest.mark.parametrize("vip_dials", ["200", "300"], ids=["queue", "ivr_crm_lookup"])
async def test_a_vip_reaches_their_account_owner_ahead_of_a_caller_waiting_longer(
    center: ContactCenter, crm: tuple[CrmStub, int], vip_dials: str
) -> None:
    stub, _ = crm
    port = await center.register("1003", "change-me-1003")
    assert (await center.post("/api/agents/carol/login"))[0] == 202
    assert (await center.post("/api/agents/carol/pause", {"reason": "briefing"}))[0] == 202
    async with center.event_stream() as events:
        phone = center.phone("agent_answer.xml", port, "carol-phone")
        other = asyncio.create_task(caller(center, OTHER_NUMBER, "200", 14_000))
        await settle(events, "queue.joined", queue_id="sales")
        vip = asyncio.create_task(caller(center, VIP_NUMBER, vip_dials, 8_000))
        await settle(events, "queue.joined", count=2, queue_id="sales")
        other_call, vip_call = call_of(events, OTHER_NUMBER), call_of(events, VIP_NUMBER)

        assert (await center.post("/api/agents/carol/unpause"))[0] == 202
        (offered, *_) = await settle(events, "agent.offered", agent_id="carol")
        await asyncio.gather(vip, other)
        await phone_done(phone)

    assert offered["call_id"] == vip_call
    screen = offered["data"]["screen_pop"]
    assert screen["crm.name"] == "Ada Lovelace"
    assert screen["crm.vip"] == "true"
    assert screen["crm.preferred_agent"] == "carol"
    joined = {e["call_id"]: e["data"] for e in events if e["type"] == "queue.joined"}
    assert joined[vip_call]["priority"] == 10
    assert joined[other_call]["priority"] == 0
    assert joined[other_call]["position"] == 1  # the other caller was there first
    answered = [e["call_id"] for e in events if e["type"] == "agent.answered"]
    assert answered == [vip_call]
    # One look-up per caller: through the IVR, the node's answer is reused at the queue.
    assert sorted(stub.asked) == sorted([OTHER_NUMBER, VIP_NUMBER])
