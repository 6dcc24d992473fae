"""The page in a real headless Chromium (Debian's package, driven by Playwright),
used with the keyboard alone: sign in, pick the plan, arm, read the preflight and
the instruction, paste a wrong key (refused), paste the right one, watch every
target go green and the window appear; then the key is nowhere in the DOM.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.testing.adjutor import AdjutorStandIn
from tests.test_service import PLAN_NAME, TOKEN, HookReceiver, ServiceProc, env_key, webhook_available, write_plan

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _need_browser() -> Any:
    """Playwright's sync API, or skip (fail on CI, where .ci/run installs both)."""
    on_ci = os.environ.get("CI") == "true"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if on_ci:
            pytest.fail("playwright is not installed (it is in the test extra)")
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    if not CHROMIUM.exists():
        if on_ci:
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return sync_playwright


@pytest.fixture
def page_service(tmp_path: Path, standin: AdjutorStandIn) -> Iterator[tuple[ServiceProc, Path, bool]]:
    hook = HookReceiver() if webhook_available() else None
    plan = write_plan(tmp_path, standin, hook_url=hook.url if hook else None)
    svc = ServiceProc(["--plans", str(plan), "--db", f"sqlite:///{tmp_path / 'journal.db'}"])
    svc.wait_ready()
    yield svc, tmp_path, hook is not None
    svc.stop()
    if hook:
        hook.stop()


def focused(page: Any) -> str:
    return str(page.evaluate("document.activeElement && document.activeElement.id"))


def test_rotate_from_the_page_with_the_keyboard(
    page_service: tuple[ServiceProc, Path, bool], standin: AdjutorStandIn, tmp_path: Path
) -> None:
    sync_playwright = _need_browser()
    svc, root, with_hook = page_service
    old_key = standin.current_key
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            # Any script error or CSP violation is a problem; the refused key's 422 is expected.
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type == "error" and "status of 422" not in m.text else None,
            )
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(svc.url + "/")

            # Sign in: the token field has the focus; Enter submits.
            page.wait_for_selector("#token:focus")
            page.keyboard.type(TOKEN)
            page.keyboard.press("Enter")
            page.wait_for_selector("#plans-section:not([hidden])")
            assert page.is_hidden("#login-section")
            assert focused(page) == "plan"
            assert page.input_value("#plan") == PLAN_NAME
            info = page.inner_text("#plan-info")
            assert "store" in info and "Key age" in info

            # Tab to "Arm rotation", Enter.
            page.keyboard.press("Tab")
            assert focused(page) == "arm-btn"
            page.keyboard.press("Enter")
            page.wait_for_selector("#armed-section:not([hidden])")
            checks = page.locator("#preflight li")
            expected = {"store", "api-env", "worker-env"} | ({"api"} if with_hook else set())
            assert checks.count() == len(expected)
            for i in range(checks.count()):
                assert checks.nth(i).locator(".status").get_attribute("data-status") == "ok"
            assert "Reset app key" in page.inner_text("#instruction")
            assert focused(page) == "key"  # ready for the paste

            # The operator resets the key in the dashboard, and pastes it with a typo first.
            new_key = standin.reset()
            wrong = new_key[:-1] + ("x" if new_key[-1] != "x" else "y")
            page.keyboard.type(wrong)
            page.keyboard.press("Enter")
            page.wait_for_selector("#key-status:has-text('Refused')")
            assert page.input_value("#key") == ""
            assert focused(page) == "key"  # still armed: paste again
            assert env_key(root / "worker/.env") == old_key  # nothing written

            page.keyboard.type(new_key)
            page.keyboard.press("Enter")
            page.wait_for_selector("#window", timeout=30_000)
            page.wait_for_selector("#result-h:focus")
            assert "Done" in page.inner_text("#result-h")
            window = page.inner_text("#window")
            assert window.endswith("ms") or window.endswith("s")
            # The typo is a refused paste, not part of the window; the timeline is drawn (inline SVG).
            assert "Refused pastes before the accepted key: 1" in page.inner_text("#result")
            assert page.locator("#timeline svg").count() == 1
            assert "key received" in page.inner_text("#timeline")

            # Each target went green, with its time.
            for name in expected:
                row = page.locator(f'#progress tr[data-key="{name}"]')
                assert row.get_attribute("data-status") == "ok", name
                assert row.locator("td").nth(2).inner_text().startswith("done at")
            assert env_key(root / "worker/.env") == new_key

            # The key is nowhere in the page: not in the DOM, not in a field, not in storage.
            html = page.content()
            values = page.evaluate("[...document.querySelectorAll('input')].map(i => i.value).join('|')")
            storage = page.evaluate("JSON.stringify({...sessionStorage}) + JSON.stringify({...localStorage})")
            for key in (new_key, wrong, old_key):
                assert key not in html
                assert key not in values
                assert key not in storage
            # The history table reloads after the report (a request of its own): wait for it.
            page.locator("#history tbody td", has_text=PLAN_NAME).first.wait_for(timeout=10_000)
            assert PLAN_NAME in page.inner_text("#history")
            page.screenshot(path=str(tmp_path / "page-after-rotation.png"), full_page=True)
        finally:
            browser.close()
    assert problems == [], problems  # no CSP violation, no script error
