"""CRM look-up against a small CRM served on 127.0.0.1: mapping, timeout, cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from config.crm import LookupSettings
from crm_bridge.lookup import CrmLookupClient, TtlCache, map_answer, resolve_path
from ivr.ports import CustomerLookup

ANSWER = {
    "customer": {"full_name": "Ada Lovelace", "segment": "gold", "vip": "yes", "lang": "fr"},
    "owner": {"agent": "agent-7"},
    "cases": [{"id": "CASE-42", "status": "open"}],
    "balance": 12.5,
}

MAPPING = {
    "name": "customer.full_name",
    "tier": "customer.segment",
    "vip": "customer.vip",
    "language": "customer.lang",
    "preferred_agent": "owner.agent",
    "open_case": "cases.0.id",
    "balance": "balance",
}


@dataclass
class FakeCrm:
    """Customers by phone number; records every request it receives."""

    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[web.Request] = field(default_factory=list)
    delay: float = 0.0
    status: int | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status is not None:
            return web.Response(status=self.status)
        key = request.match_info.get("key") or request.query.get("phone", "")
        customer = self.customers.get(key)
        if customer is None:
            return web.Response(status=404)
        return web.json_response(customer)


@pytest.fixture
async def crm() -> AsyncIterator[tuple[FakeCrm, str]]:
    fake = FakeCrm(customers={"+33123456789": ANSWER})
    app = web.Application()
    app.router.add_get("/customers", fake.handle)
    app.router.add_get("/customers/{key}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(base: str, **overrides: Any) -> LookupSettings:
    values: dict[str, Any] = {
        "url": f"{base}/customers",
        "timeout": 0.3,
        "fields": MAPPING,
        "tier_priorities": {"gold": 5, "platinum": 8},
        "vip_priority": 10,
        "language_skills": {"fr": "french"},
        "headers": {"Authorization": "Bearer s3cret"},
    }
    values.update(overrides)
    return LookupSettings.model_validate(values)


async def test_answer_is_mapped_to_routing_attributes(crm: tuple[FakeCrm, str]) -> None:
    fake, base = crm
    client = CrmLookupClient(settings(base))
    port: CustomerLookup = client  # what the IVR runner calls
    try:
        everything = await port.lookup("+33123456789", ())
        assert everything == {
            "name": "Ada Lovelace",
            "tier": "gold",
            "vip": "true",
            "language": "fr",
            "preferred_agent": "agent-7",
            "open_case": "CASE-42",
            "balance": "12.5",
        }
        assert await port.lookup("+33123456789", ("name", "open_case", "nope")) == {
            "name": "Ada Lovelace",
            "open_case": "CASE-42",
        }
        routing = await client.routing("+33123456789")
        assert routing is not None
        assert (routing.priority, dict(routing.skills), routing.preferred_agent) == (
            10,
            {"french": 1},
            "agent-7",
        )
        assert routing.screen_pop["name"] == "Ada Lovelace"
        assert await port.lookup("+33999", ()) is None
    finally:
        await client.close()
    request = fake.requests[0]
    assert request.query["phone"] == "+33123456789"
    assert request.headers["Authorization"] == "Bearer s3cret"


async def test_queue_arrival_uses_the_ivr_answer_or_asks_by_caller_id(
    crm: tuple[FakeCrm, str],
) -> None:
    fake, base = crm
    client = CrmLookupClient(settings(base))
    try:
        direct = await client.routing_for("+33123456789", {"caller_id": "+33123456789"})
        assert len(fake.requests) == 1
        # What an IVR crm_lookup node left in the call's variables: the same attributes, and
        # the CRM is not asked again.
        found = await client.lookup("+33123456789", ())
        assert found is not None
        variables = {f"crm.{name}": value for name, value in found.items()}
        variables["crm.found"] = "true"
        via_ivr = await client.routing_for("+33999", variables)
        assert via_ivr == direct
        assert direct is not None and direct.priority == 10
        # The IVR looked and found nobody: unknown, without another request.
        assert await client.routing_for("+33123456789", {"crm.found": "false"}) is None
        assert len(fake.requests) == 1  # the lookup above was answered from the cache
        assert await client.routing_for("+33999", {}) is None
        assert len(fake.requests) == 2
    finally:
        await client.close()


async def test_key_in_the_url_path_and_account_number(crm: tuple[FakeCrm, str]) -> None:
    fake, base = crm
    client = CrmLookupClient(settings(base, url=f"{base}/customers/{{key}}"))
    try:
        record = await client.find("+33123456789", account="AC-1")
    finally:
        await client.close()
    assert record is not None and record.name == "Ada Lovelace"
    assert fake.requests[0].path == "/customers/+33123456789"
    assert fake.requests[0].query["account"] == "AC-1"


async def test_a_crm_that_does_not_answer_in_time_means_unknown_quickly(
    crm: tuple[FakeCrm, str],
) -> None:
    fake, base = crm
    fake.delay = 1.0
    client = CrmLookupClient(settings(base, timeout=0.2))
    try:
        started = time.monotonic()
        assert await client.lookup("+33123456789", ()) is None
        assert time.monotonic() - started < 1.0
        # Failures are not cached: the next call asks again.
        assert await client.lookup("+33123456789", ()) is None
        assert len(fake.requests) == 2
        fake.delay, fake.status = 0.0, 503
        assert await client.lookup("+33123456789", ()) is None
        stats = client.stats()
        assert (stats.timeouts, stats.errors, stats.cached) == (2, 1, 0)
    finally:
        await client.close()


async def test_answers_are_cached_for_their_ttl(crm: tuple[FakeCrm, str]) -> None:
    fake, base = crm
    clock = FakeClock()
    client = CrmLookupClient(settings(base, cache_ttl=60, not_found_ttl=10), clock=clock)
    try:
        first = await client.lookup("+33123456789", ())
        assert await client.lookup("+33123456789", ("name",)) == {"name": "Ada Lovelace"}
        assert len(fake.requests) == 1
        assert await client.lookup("+33000", ()) is None
        assert await client.lookup("+33000", ()) is None
        assert len(fake.requests) == 2  # "no such customer" is cached too
        clock.now += 11  # the negative answer expired, the record has not
        assert await client.lookup("+33000", ()) is None
        assert await client.lookup("+33123456789", ()) == first
        assert len(fake.requests) == 3
        clock.now += 60
        await client.lookup("+33123456789", ())
        assert len(fake.requests) == 4
        assert client.stats().cache_hits == 3
    finally:
        await client.close()


async def test_concurrent_look_ups_of_one_caller_share_one_request(
    crm: tuple[FakeCrm, str],
) -> None:
    fake, base = crm
    fake.delay = 0.05
    client = CrmLookupClient(settings(base))
    try:
        answers = await asyncio.gather(*(client.lookup("+33123456789", ()) for _ in range(5)))
    finally:
        await client.close()
    assert len(fake.requests) == 1
    assert all(answer == answers[0] and answer is not None for answer in answers)


def test_cache_is_bounded_least_recently_used_first_out() -> None:
    cache: TtlCache[str, int] = TtlCache(max_entries=2)
    cache.put("a", 1, ttl=10, now=0)
    cache.put("b", 2, ttl=10, now=0)
    assert cache.get("a", now=1) == (True, 1)  # "a" is now the most recently used
    cache.put("c", 3, ttl=10, now=1)
    assert cache.get("b", now=1) == (False, None)
    assert cache.get("a", now=1) == (True, 1)
    assert cache.get("c", now=11) == (False, None)  # expired
    assert len(cache) == 1


def test_mapping_tolerates_missing_and_odd_values() -> None:
    record = map_answer(
        {"name": "  ", "vip": 0, "tier": {"nested": True}, "cases": []},
        {"open_case": "cases.0.id", "region": "address.region"},
    )
    assert record.as_fields() == {"vip": "false"}
    assert resolve_path({"a": [{"b": 1}]}, "a.0.b") == 1
    assert resolve_path({"a": [{"b": 1}]}, "a.1.b") is None
    assert resolve_path({"a": "text"}, "a.b") is None
