"""The dashboard stand-in in real Chromium (Debian's, headful under Xvfb so the
system clipboard is the X server's), with rotator's clipboard source watching:

the operator opens Business -> Apps -> View details; copies a URL, a sentence
and the current key (all ignored); clicks "Reset app key" (the page copies the
new key with navigator.clipboard.writeText) and rotator takes exactly that key;
the operator's own later copy is left alone, a clipboard that still holds the
key is cleared; the key reaches no file, log, output, process argument or DOM.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rotator.clipboard import ClipboardSource, Ignored, Mode
from rotator.secret import Secret
from rotator.testing.adjutor import AdjutorStandIn
from rotator.testing.dashboard import DashboardStandIn
from tests.leakcheck import find, scan_tree
from tests.test_service_page import ARGS, CHROMIUM
from tests.xserver import XServer, xserver_fixture

xserver = pytest.fixture(scope="module")(xserver_fixture)


def _async_playwright() -> Any:
    import os

    try:
        from playwright.async_api import async_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("playwright is not installed (it is in the test extra)")
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return async_playwright


async def until(what: str, cond: Callable[[], object], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_reset_in_the_dashboard_puts_the_key_where_rotator_takes_it(
    xserver: XServer,
    standin: AdjutorStandIn,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    async_playwright = _async_playwright()
    caplog.set_level(logging.DEBUG)
    old = standin.current_key
    seen: list[str] = []
    problems: list[str] = []

    async def operator() -> tuple[Secret, Secret]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=False, env=xserver.env)
            try:
                with DashboardStandIn({"Production": standin}) as dash:
                    context = await browser.new_context()
                    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=dash.url)
                    page = await context.new_page()
                    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                    page.on("pageerror", lambda e: problems.append(str(e)))
                    await page.goto(dash.url)
                    await page.get_by_role("navigation").get_by_role("link", name="Apps").click()
                    await page.get_by_role("link", name="View details").click()
                    await page.get_by_role("heading", name="Production").wait_for()

                    async def browser_copy(value: str) -> None:
                        await page.evaluate("v => navigator.clipboard.writeText(v)", value)

                    async with ClipboardSource(current=Secret(old), env=xserver.env) as clip:
                        assert clip.mode is Mode.NOTIFY  # XFIXES: Chromium takes the selection on each write
                        taking = asyncio.create_task(clip.next_key())
                        for value, reason in (
                            ("https://app.adjutor.io/business/apps/1", Ignored.URL),
                            ("Reset the key after the standup, please", Ignored.NOT_A_KEY),
                            (old, Ignored.CURRENT),
                        ):
                            await browser_copy(value)
                            await until(reason, lambda r=reason: clip.ignored.get(r))  # type: ignore[misc]
                            assert not taking.done()

                        await page.get_by_role("button", name="Reset app key").click()
                        first = await asyncio.wait_for(taking, 20)
                        assert first.reveal() == standin.current_key != old
                        await page.get_by_text("copied to your clipboard").wait_for()
                        seen.append(await page.content())

                        # The operator copies something of their own: not ours to clear.
                        await browser_copy("meeting notes")
                        assert await clip.clear_if_unchanged(first) is False
                        assert xserver.paste() == "meeting notes"

                        # Another reset; this time the clipboard still holds the key: cleared.
                        taking = asyncio.create_task(clip.next_key())
                        await page.get_by_role("button", name="Reset app key").click()
                        second = await asyncio.wait_for(taking, 20)
                        assert second.reveal() == standin.current_key != first.reveal()
                        assert await clip.clear_if_unchanged(second) is True
                        assert xserver.paste() in ("", None)
                        assert await page.evaluate("navigator.clipboard.readText()") == ""
                        assert [name for name, _, _ in dash.resets] == ["Production", "Production"]
                        # Five changes each had a waiter (three ignored copies, two resets); the
                        # copy of "meeting notes" may reach us in one read with the next reset.
                        assert clip.notifications >= 5
                        seen.append(await page.content())
                        seen.extend([repr(clip), repr(dash)])
                        seen.append(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout)
                    await context.close()
            finally:
                await browser.close()
        return first, second

    first, second = asyncio.run(operator())
    assert problems == []
    out, err = capfd.readouterr()
    canaries = [old, first.reveal(), second.reveal()]
    hits = find("\n".join([*seen, out, err, caplog.text]), canaries, "DOM, output, logs, reprs, process args")
    assert hits == [], hits
    assert scan_tree(tmp_path, canaries) == []
