"""Fixtures of the supervisor API tests: a bus on a settable clock, the app and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.supervisor.supervisor_app import Harness, build, client_for
from tests.supervisor.supervisor_timeline import Timeline


@pytest.fixture
def timeline() -> Timeline:
    return Timeline()


@pytest.fixture
def harness(timeline: Timeline) -> Harness:
    return build(timeline.bus, lambda: timeline.now)


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async for c in client_for(harness):
        yield c
