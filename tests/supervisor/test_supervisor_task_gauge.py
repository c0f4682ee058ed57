"""The event loop's task count on /metrics: what a soak test watches for leaked tasks."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.supervisor.supervisor_app import SUPERVISOR, bearer


async def test_metrics_count_the_tasks_on_the_event_loop(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/metrics", headers=bearer(SUPERVISOR))
    assert response.status == 200
    found = re.search(r"^cxos_asyncio_tasks (\d+)\.0$", await response.text(), re.MULTILINE)
    assert found is not None
    # At least the task serving this very request is running.
    assert int(found.group(1)) >= 1
