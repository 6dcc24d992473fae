"""The whole issue-12 path with real parts: `rotator rotate --key-from clipboard` (a real
process) armed against the Adjutor stand-in; the operator clicks "Reset app key" in the
dashboard stand-in in real headful Chromium under Xvfb (the page copies the new key
with navigator.clipboard.writeText onto the X server's clipboard); rotator takes it
from there.  The reset rotator reports is within watch_interval of the click, and the
outage it reports is its operator's share plus its window."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from rotator.secret import fingerprint
from rotator.testing.adjutor import AdjutorStandIn
from rotator.testing.dashboard import DashboardStandIn
from tests.leakcheck import find, rotator_env, scan_journal, scan_tree, start, wait_for
from tests.test_dashboard_clipboard import _async_playwright
from tests.test_outage import assert_outage, setup_plan
from tests.test_service_page import ARGS, CHROMIUM
from tests.timing import scaled
from tests.xserver import XServer, xserver_fixture

xserver = pytest.fixture(scope="module")(xserver_fixture)
WATCH = 0.2  # [probe] watch_interval in setup_plan


def test_click_reset_and_rotator_takes_the_key_from_the_clipboard(
    xserver: XServer, standin: AdjutorStandIn, tmp_path: Path
) -> None:
    async_playwright = _async_playwright()
    plan = setup_plan(tmp_path, standin)
    env = rotator_env(DISPLAY=xserver.display)
    env.pop("WAYLAND_DISPLAY", None)
    run = start("rotate", str(plan), "--key-from", "clipboard", "--json", logs=tmp_path / "logs", env=env)
    problems: list[str] = []

    async def operator() -> float:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=False, env=xserver.env)
            try:
                with DashboardStandIn({"Production": standin}) as dash:
                    context = await browser.new_context()
                    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=dash.url)
                    page = await context.new_page()
                    page.on("pageerror", lambda e: problems.append(str(e)))
                    await page.goto(dash.url)
                    await page.get_by_role("navigation").get_by_role("link", name="Apps").click()
                    await page.get_by_role("link", name="View details").click()
                    button = page.get_by_role("button", name="Reset app key")
                    await button.wait_for()
                    await asyncio.to_thread(
                        wait_for, "rotator armed", lambda: "watching the clipboard" in run.err, 60, run
                    )
                    await asyncio.sleep(3 * WATCH)  # the watch sees the old key pass
                    clicked = time.time()
                    await button.click()
                    await page.get_by_text("copied to your clipboard").wait_for()
                    await context.close()
                    return clicked
            finally:
                await browser.close()

    try:
        clicked = asyncio.run(operator())
        assert run.wait(60) == 0, run.err
    finally:
        if run.proc.poll() is None:
            run.kill()
    assert problems == []
    report = json.loads(run.out)
    new = standin.current_key
    assert report["state"] == "done" and report["new_fingerprint"] == fingerprint(new)
    reset = report["reset"]
    assert reset is not None, run.err
    # Seen by the watch (within one interval and a round trip) or at the latest when the key came.
    # The round trip's allowance is scaled: on a busy machine the watch's probe answers later.
    assert clicked - 0.05 <= reset["at"] <= clicked + WATCH + scaled(0.25), (reset, clicked)
    assert_outage(report, run.err)
    assert report["refused_keys"] == []
    assert "outage:" in run.err and "K key received" in run.err
    canaries = [new]
    assert find(run.out + run.err, canaries, "output") == []
    assert scan_journal(canaries) == []
    assert scan_tree(tmp_path, canaries, allowed=[tmp_path / "store.env", tmp_path / "app/.env"]) == []
