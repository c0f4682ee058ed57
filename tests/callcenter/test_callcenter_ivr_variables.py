"""What the caller gave the IVR travels with the call: into the queue, onto the agent's screen
(``agent.offered``) and in the events the CRM receives (``ivr.exited``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from acd.events import AgentOffered
from config.ivr import load_ivr_trees
from config.loader import default_config_dir
from cxos.bus import EventBus
from cxos.call_flow import handoff_step
from cxos.envelope import to_json
from ivr.actions import EnqueueCall
from ivr.events import IvrExited
from ivr.walk import Walker
from tests.acd.acd_fixtures import Harness, agent, need, of_type, queue

#: A Tuesday, 10:00 in New York: the shipped tree is open.
TUESDAY_MORNING = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def test_an_account_number_reaches_the_agents_screen_and_the_crms_events() -> None:
    trees = load_ivr_trees(
        default_config_dir() / "ivr",
        queues=frozenset({"sales", "support", "billing"}),
        skills=None,
    )
    walker = Walker(
        trees["main"],
        started_at=TUESDAY_MORNING,
        caller_id="+15550001111",
        crm_record={"name": "Ada Lovelace", "tier": "vip"},
        call_id="c1",
    )
    walker.start()
    walker.answer_all(["3", "123456#", "1"])  # billing, the account number, confirmed
    assert walker.finished
    (handoff,) = [o for o in walker.outputs if isinstance(o, EnqueueCall)]
    (exited,) = [o for o in walker.outputs if isinstance(o, IvrExited)]

    step = handoff_step(handoff, "en")
    assert step.queue_id == "billing" and step.priority == 10  # the CRM marked a VIP
    assert {k: step.attributes[k] for k in ("account_number", "caller_id", "crm.name")} == {
        "account_number": "123456",
        "caller_id": "+15550001111",
        "crm.name": "Ada Lovelace",
    }

    h = Harness([queue("billing", need("billing"))], [agent("carol", billing=5)])
    h.enqueue("c1", step.queue_id, priority=step.priority, attributes=step.attributes)
    (offered,) = of_type(h.login("carol"), AgentOffered)
    assert offered.screen_pop["account_number"] == "123456"
    assert offered.screen_pop["crm.name"] == "Ada Lovelace"

    envelope = json.loads(to_json(EventBus(clock=lambda: 0.0).publish(exited), node="n1"))
    assert envelope["type"] == "ivr.exited"
    assert envelope["data"]["variables"]["account_number"] == "123456"
    assert envelope["data"]["variables"]["department"] == "billing"
