"""The wallboard in headless Chromium: live tiles and agents, updated over the event stream."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from tests.supervisor.supervisor_app import SUPERVISOR, Harness
from tests.supervisor.supervisor_png import decode_png
from tests.supervisor.supervisor_timeline import (
    Timeline,
    answered,
    joined,
    monitor_ended,
    monitoring,
    started,
    state,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright_api = pytest.importorskip("playwright.async_api")
if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:  # pragma: no cover
    pytest.fail("Debian's chromium is required for the wallboard test (apt-get install chromium)")


@pytest.fixture
async def base_url(harness: Harness) -> AsyncIterator[str]:
    runner = web.AppRunner(harness.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_wallboard_shows_live_queue_and_agent_data(
    base_url: str, timeline: Timeline, tmp_path: Path
) -> None:
    timeline.at(
        0, state("a1", "logged_out", "available", 0), state("a2", "logged_out", "paused", 0)
    )
    timeline.at(1, started("w1"), joined("w1"), started("w2"), joined("w2", position=2))
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1000, "height": 700})
            await page.goto(f"{base_url}/wallboard#token={SUPERVISOR}")
            waiting = page.locator('[data-queue="sales"] [data-figure="waiting"]')
            await playwright_api.expect(waiting).to_have_text("2", timeout=5000)
            await playwright_api.expect(page.locator("#link")).to_have_text("live")
            counts = page.locator('[data-queue="sales"] [data-count="available"]')
            await playwright_api.expect(counts).to_have_text("available 1")
            row = page.locator('tr[data-agent="a2"]')
            await playwright_api.expect(row).to_contain_text("paused")

            # A new caller: the tile must follow within a second, over the WebSocket.
            timeline.at(2, started("w3"), joined("w3", position=3))
            await playwright_api.expect(waiting).to_have_text("3", timeout=1000)
            timeline.at(3, state("a1", "available", "on_call", 2, "w1"))
            busy = page.locator('[data-queue="sales"] [data-count="busy"]')
            await playwright_api.expect(busy).to_have_text("busy 1", timeout=1000)

            # A supervisor (a3's phone) listens to a1's call, then whispers to a1.
            timeline.at(4, answered("w1", "a1", 3), monitoring("w1", "listen"))
            supervisor = row.locator("[data-supervisor]")
            watched = page.locator('tr[data-agent="a1"] [data-supervisor]')
            await playwright_api.expect(watched).to_have_text("a3 listens", timeout=1000)
            listed = page.locator('#monitoring tr[data-call="w1"]')
            await playwright_api.expect(listed).to_contain_text("a3listena1w1")
            timeline.at(5, monitoring("w1", "whisper", "listen"))
            await playwright_api.expect(watched).to_have_text("a3 whispers", timeout=1000)
            await playwright_api.expect(supervisor).to_have_text("")  # nobody on a2's calls

            shot = await page.screenshot(path=str(tmp_path / "wallboard.png"))
            timeline.at(6, monitor_ended("w1", "whisper", 2))
            await playwright_api.expect(watched).to_have_text("", timeout=1000)
            await playwright_api.expect(page.locator("#monitoring-section")).to_be_hidden()
        finally:
            await browser.close()
    pixels = decode_png(shot)
    assert pixels.shape[:2] == (700, 1000)
    # Not an empty shell: the page has many colours (text, tiles, the green/amber borders).
    colours = np.unique(pixels[..., :3].reshape(-1, 3), axis=0)
    assert len(colours) > 20
    # The tile area (top left, below the header) differs from the page background.
    tile_area = pixels[60:260, 20:300, :3].reshape(-1, 3)
    background = pixels[-5, -5, :3]
    assert np.mean(np.any(tile_area != background, axis=1)) > 0.5


async def test_wallboard_without_token_says_how_to_open_it(base_url: str) -> None:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{base_url}/wallboard")
            await playwright_api.expect(page.locator("#notice")).to_contain_text("#token=")
        finally:
            await browser.close()
