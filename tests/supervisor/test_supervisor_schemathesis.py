"""The OpenAPI document is true: every route is in it, and schemathesis finds no 5xx or mismatch.

schemathesis (a test dependency) generates valid and invalid requests for every operation from
the document and checks each answer: no server error, a documented status, content type and
body schema, invalid input refused with 4xx, requests without the token refused.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from cxos.storage.database import Pool
from cxos.storage.events_store import row_from_published, store_events
from supervisor_api.openapi import openapi_document
from tests.supervisor.supervisor_app import ADMIN, AnyId, Harness, bearer, build
from tests.supervisor.supervisor_timeline import Timeline, sales_morning


def test_every_route_is_documented_and_every_documented_route_exists(harness: Harness) -> None:
    served = set()
    for route in harness.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD" and path is not None and not path.startswith("/wallboard"):
            served.add((route.method.lower(), path))
    documented = {
        (method, path) for path, item in openapi_document()["paths"].items() for method in item
    }
    assert served == documented


def test_document_is_valid_openapi() -> None:
    import schemathesis

    schema = schemathesis.openapi.from_dict(openapi_document())
    assert len(list(schema.get_all_operations())) == 30


async def test_document_is_served_to_token_holders(client: object) -> None:
    response = await client.get("/api/openapi.json", headers=bearer(ADMIN))  # type: ignore[attr-defined]
    assert await response.json() == json.loads(json.dumps(openapi_document()))


@pytest.fixture
async def base_url(timeline: Timeline, history_pool: Pool) -> AsyncIterator[str]:
    sales_morning(timeline)
    rows = [row_from_published(p, "node-a") for p in timeline.published]
    async with history_pool.acquire() as connection:
        await store_events(connection, rows, replay=False)
    # The history endpoints read a real database, so the fuzzer reaches their checks.
    harness = build(timeline.bus, lambda: timeline.now, history=history_pool)
    harness.actions.calls = harness.actions.agents = AnyId()
    runner = web.AppRunner(harness.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.mark.timeout(300)
async def test_schemathesis_finds_no_server_error_or_schema_mismatch(
    base_url: str, tmp_path: Path
) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli is not None, "schemathesis is a test dependency (pip install schemathesis)"
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(openapi_document()))
    process = await asyncio.create_subprocess_exec(
        cli, "run", str(document),
        "--url", base_url,
        "--header", f"Authorization: Bearer {ADMIN}",
        "--checks", "all",
        "--exclude-checks", "positive_data_acceptance",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", "25",
        "--seed", "1",
        "--workers", "1",
        "--generation-database", "none",
        "--no-color",
        "--exclude-path", "/api/events",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )  # fmt: skip
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
    assert "Tested: 29" in text and "No issues found" in text, text[-3000:]
