"""A caller's own skill routes them: a real ``cxos run`` process, two SIPp agent phones.

Alice and Carol both staff sales; only Carol speaks French. Alice logs in first, so she has been
idle longer and a plain caller would be hers. A caller who needs French — because their IVR path
chose it (a ``set_variable`` node, then a queue node with ``skills: {"{language}": 2}``), or
because the CRM (a small HTTP server in the test) says the customer speaks French and
``language_skills`` maps that to the ``french`` skill — is offered to Carol, and the
``queue.joined`` event lists the skill the call needs.
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

CALLER_NUMBER = "5553333"

QUEUES = """\
queues:
  sales:
    skills: {sales: 2}
    strategy: longest_idle
    timeout: 15
  support:
    skills: {support: 3}
  billing:
    skills: {billing: 3}
"""

FRENCH_TREE = """\
trees:
  french_line:
    start: choose
    nodes:
      choose:
        type: set_variable
        set: {language: french, level: "2"}
        next: sales_queue
      sales_queue:
        type: queue
        queue: sales
        skills: {"{language}": "{level}"}
"""

DIALPLAN = """\
numbers:
  "200": {queue: sales}
  "400": {ivr: french_line}
  "*": {ivr: main}
"""


def crm_yaml(port: int) -> str:
    return f"""\
lookup:
  url: http://127.0.0.1:{port}/customers/{{key}}
  timeout: 2
  fields:
    name: customer.full_name
    language: customer.language
  language_skills: {{fr: french}}
"""


#: The CRM's look-up endpoint: the caller is a French-speaking customer.
CRM_RECORDS: dict[str, dict[str, Any]] = {
    CALLER_NUMBER: {"customer": {"full_name": "Émile Zola", "language": "fr"}}
}


@pytest.fixture
async def crm() -> AsyncIterator[tuple[CrmStub, int]]:
    stub = CrmStub(CRM_RECORDS)
    async with serving_crm(stub) as port:
        yield stub, port


@pytest.fixture
def center(config_dir: Path, tmp_path: Path, crm: tuple[CrmStub, int]) -> Iterator[ContactCenter]:
    agents = config_dir / "agents.yaml"
    shipped = "skills: {billing: 5, sales: 2}"  # carol's
    text = agents.read_text()
    assert shipped in text
    agents.write_text(text.replace(shipped, "skills: {billing: 5, sales: 2, french: 3}"))
    (config_dir / "ivr" / "french_line.yaml").write_text(FRENCH_TREE)
    (config_dir / "crm.yaml").write_text(crm_yaml(crm[1]))
    with running_center(config_dir, tmp_path, QUEUES, dialplan_yaml=DIALPLAN) as running:
        yield running


async def caller(center: ContactCenter, dialled: str, wait_ms: int) -> None:
    """A trunk caller with caller id CALLER_NUMBER who hangs up after ``wait_ms``."""
    folder = center.workdir / f"caller-{dialled}"
    args = ["-sf", str(SCENARIOS / "uac_caller_hangs_up.xml"), "-s", dialled, "-m", "1"]
    args += ["-key", "caller", CALLER_NUMBER, "-d", str(wait_ms), "-mp", str(free_port())]
    result = await asyncio.to_thread(run_sipp, center.server.address, args, folder, 60.0)
    sipp_ok(result)


@pytest.mark.parametrize(
    ("dialled", "needs"),
    [("400", {"french": 2}), ("200", {"french": 1})],
    ids=["ivr_skills", "crm_language"],
)
async def test_a_caller_needing_french_reaches_the_french_speaker_not_the_longest_idle(
    center: ContactCenter, crm: tuple[CrmStub, int], dialled: str, needs: dict[str, int]
) -> None:
    await center.register("1001", "change-me-1001")  # alice: no phone answers for her here
    carol_port = await center.register("1003", "change-me-1003")
    assert (await center.post("/api/agents/alice/login"))[0] == 202
    await asyncio.sleep(0.5)  # alice has been idle longer (longest_idle would pick her)
    assert (await center.post("/api/agents/carol/login"))[0] == 202
    async with center.event_stream() as events:
        phone = center.phone("agent_answer.xml", carol_port, "carol-phone")
        await caller(center, dialled, 3_000)
        await phone_done(phone)
        (offered,) = await settle(events, "agent.offered")
        (answered,) = await settle(events, "agent.answered")

    (joined,) = [e for e in events if e["type"] == "queue.joined"]
    assert joined["data"]["queue_id"] == "sales"
    assert joined["data"]["required_skills"] == needs
    assert (offered["data"]["agent_id"], answered["data"]["agent_id"]) == ("carol", "carol")
    assert offered["call_id"] == answered["call_id"] == joined["call_id"]
    assert (await center.get("/api/agents/alice"))["state"] == "available"
    assert crm[0].asked == [CALLER_NUMBER]
