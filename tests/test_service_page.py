"""The page in a real headless Chromium (Debian's package, driven by Playwright),
used with the keyboard alone: sign in, pick the plan, arm, read the preflight and
the instruction, paste a wrong key (refused), paste the right one, watch every
target go green and the window appear; then the key is nowhere in the DOM.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.testing.adjutor import AdjutorStandIn
from tests.test_service import PLAN_NAME, TOKEN, HookReceiver, ServiceProc, env_key, webhook_available, write_plan
from tests.timing import wait_until

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


# A time as the page shows it: in the browser's zone, with its abbreviation. The tests run the
# browser in New York's zone (the machine's is UTC), so the zone shown is the browser's, said.
NY = "America/New_York"
NY_TIME = r"\d{2}:\d{2}:\d{2}(\.\d{3})? E[SD]T"
# Where each text of the timeline is drawn, and at what size on screen (its font size times the
# SVG's scale): what the operator reads.
TEXT_BOXES = """(sel) => {
  const svg = document.querySelector(sel);
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  const outer = svg.getBoundingClientRect();
  return [...svg.querySelectorAll("text")].map((t) => {
    const r = t.getBoundingClientRect();
    return { text: t.textContent, x: r.x, y: r.y, w: r.width, h: r.height,
             px: parseFloat(getComputedStyle(t).fontSize) * scale,
             inside: r.x >= outer.x - 0.5 && r.right <= outer.right + 0.5 && r.y >= outer.y - 0.5
               && r.bottom <= outer.bottom + 0.5 };
  });
}"""


def assert_legible_and_apart(page: Any, sel: str = "#timeline svg") -> list[dict[str, Any]]:
    """Every label of the timeline at >= 12 px on screen, inside the picture, and no two touching."""
    boxes: list[dict[str, Any]] = page.evaluate(TEXT_BOXES, sel)
    assert boxes, "no text in the timeline"
    for b in boxes:
        assert b["px"] >= 12, b
        assert b["inside"], b
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart = a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or a["y"] + a["h"] <= b["y"]
            apart = apart or b["y"] + b["h"] <= a["y"]
            assert apart, f"{a['text']!r} overlaps {b['text']!r}: {a} {b}"
    return boxes


def save_shot(page: Any, tmp_path: Path, name: str, **kw: Any) -> None:
    """A screenshot in the test's directory, and in $ROTATOR_PAGE_SHOTS when set (to look at)."""
    page.screenshot(path=str(tmp_path / name), **kw)
    if shots := os.environ.get("ROTATOR_PAGE_SHOTS"):
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / name), **kw)


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
            page = browser.new_page(timezone_id=NY, viewport={"width": 1280, "height": 800})
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
            # The section shows first; the focus lands once whoami has answered (CI once looked between the two).
            page.wait_for_selector("#plan:focus", timeout=5000)
            assert page.input_value("#plan") == PLAN_NAME
            info = page.inner_text("#plan-info")
            assert "store" in info and "Key age" in info

            # Tab to the reason and the operator's name (both journaled), then to "Arm rotation", Enter.
            page.keyboard.press("Tab")
            assert focused(page) == "reason"
            page.keyboard.type("planned rotation")
            page.keyboard.press("Tab")
            assert focused(page) == "operator"
            page.keyboard.type("ada")
            page.keyboard.press("Tab")
            assert focused(page) == "arm-btn"
            page.keyboard.press("Enter")
            page.wait_for_selector("#armed-section:not([hidden])")
            checks = page.locator("#preflight li")
            expected = {"store", "api-env", "worker-env"} | ({"api"} if with_hook else set())
            assert checks.count() == len(expected) + 1  # and the probe: the API answers
            assert checks.first.get_attribute("data-target") == "probe"
            assert page.is_hidden("#probe-warning")
            for i in range(checks.count()):
                assert checks.nth(i).locator(".status").get_attribute("data-status") == "ok"
            assert "Reset app key" in page.inner_text("#instruction")
            assert focused(page) == "key"  # ready for the paste
            # The buttons say what they do (the service's words); before the reset, Cancel writes nothing.
            assert page.inner_text("#rotate-btn") == "Rotate: probe this key, then write it everywhere"
            assert page.inner_text("#cancel-btn") == "Cancel (close this armed rotation; nothing is written)"
            assert re.search(rf"closes itself at {NY_TIME} if no key comes", page.inner_text("#expires"))
            assert page.is_hidden("#reset-status")

            # The operator resets the key in the dashboard, and pastes it with a typo first.
            # The reset watch sees the old key refused (within watch_interval, 0.5 s) and the page counts.
            new_key = standin.reset()
            page.wait_for_selector("#reset-status:has-text('The old key stopped working')")
            # The banner cannot be missed: at the top of the window, large, red, with a running counter.
            banner = page.locator("#reset-status")
            box = banner.bounding_box()
            assert box is not None and box["y"] < 120 and box["width"] >= 600, box
            head_px = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.banner-head')).fontSize)")
            assert head_px >= 28, head_px
            assert page.evaluate("getComputedStyle(document.querySelector('#reset-status')).backgroundColor") == (
                "rgb(179, 38, 30)"
            )
            assert re.search(rf"Reset seen at {NY_TIME}: every consumer", page.inner_text("#reset-detail"))
            first = page.inner_text("#reset-ago")
            page.wait_for_timeout(350)
            assert page.inner_text("#reset-ago") != first and page.title().startswith("OUTAGE ")
            # Once the reset is seen, Cancel says it ends nothing.
            assert "consumers keep failing" in page.inner_text("#cancel-btn")
            wrong = new_key[:-1] + ("x" if new_key[-1] != "x" else "y")
            page.keyboard.type(wrong)
            page.keyboard.press("Enter")
            page.wait_for_selector("#key-status:has-text('Refused')")
            # The counter ticks every 100 ms apart from the refusal: the refusal stays readable, and a
            # refused paste does not end the outage: the banner stays, still counting, still in view.
            page.wait_for_timeout(350)
            assert page.inner_text("#key-status").startswith("Refused"), page.inner_text("#key-status")
            assert page.is_visible("#reset-status") and page.inner_text("#reset-ago").endswith("s ago")
            # Below the banner, the key field and the refusal are in view (the banner pushed the page down).
            box = banner.bounding_box()
            assert box is not None
            top = box["y"] + box["height"]
            for sel in ("#key", "#key-status"):
                b = page.locator(sel).bounding_box()
                assert b is not None and top <= b["y"] and b["y"] + b["height"] <= 800, (sel, b, box)
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            box = banner.bounding_box()
            assert box is not None and 0 <= box["y"] < 40, box  # sticky: still at the top of the window
            save_shot(page, tmp_path, "page-reset-seen.png")
            assert page.input_value("#key") == ""
            assert focused(page) == "key"  # still armed: paste again
            assert env_key(root / "worker/.env") == old_key  # nothing written

            page.keyboard.type(new_key)
            page.keyboard.press("Enter")
            page.wait_for_selector("#window", timeout=30_000)
            page.wait_for_selector("#result-h:focus")
            assert page.is_hidden("#reset-status")  # the key came: the counter stopped
            assert "Done" in page.inner_text("#result-h")
            assert page.title() == "rotator · rotate the Adjutor API key"
            window = page.inner_text("#window")
            assert window.endswith("ms") or window.endswith("s")
            # The outage (what the consumers saw) leads, larger than the window; seen by the watch, it is
            # no bound; its sum says when the reset was seen and the key came, in the browser's zone.
            outage = page.inner_text("#outage")
            assert outage.endswith("ms") and not outage.startswith("≥"), outage
            order = page.evaluate("[...document.querySelectorAll('#result > *')].map((e) => e.id || e.className)")
            assert order[:3] == ["result-h", "outage-lead", "outage-sum"] and "window" in order[3:5], order
            size = "(s) => parseFloat(getComputedStyle(document.querySelector(s)).fontSize)"
            assert page.evaluate(size, "#outage-lead") > page.evaluate(size, "#result .window") * 1.3
            assert re.search(rf"reset seen {NY_TIME} → key received {NY_TIME}", page.inner_text("#result"))
            # Said once (issue 27): the headline and the window, not again as "every target holds the new key".
            assert page.inner_text("#result").count("every target holds the new key") == 1
            assert "null" not in page.inner_text("#result")
            # The typo is a refused paste, not part of the window; the timeline is drawn (inline SVG).
            assert "Refused pastes before the accepted key: 1" in page.inner_text("#result")
            assert page.locator("#timeline svg").count() == 1
            assert "key received" in page.inner_text("#timeline")
            texts = [b["text"] for b in assert_legible_and_apart(page)]
            assert any(t.startswith("R reset seen") for t in texts) and any(t.startswith("x refused") for t in texts)

            # Each target went green, with its time.
            for name in expected:
                row = page.locator(f'#progress tr[data-key="{name}"]')
                assert row.get_attribute("data-status") == "ok", name
                took, done_at = row.locator("td").nth(2).inner_text(), row.locator("td").nth(3).inner_text()
                assert took.endswith("ms") and done_at.endswith("ms"), (took, done_at)  # one figure per column
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
            assert "ada (web, 127.0.0.1)" in page.inner_text("#history")
            assert re.search(rf"\d{{4}}-\d{{2}}-\d{{2}} {NY_TIME}", page.inner_text("#history tbody td"))
            with svc.client() as c:
                row = c.get("/api/history").json()["rotations"][0]
            assert (row["reason"], row["operator"]) == ("planned rotation", "ada (web, 127.0.0.1)")
            save_shot(page, tmp_path, "page-after-rotation.png", full_page=True)
            page.locator("#timeline").screenshot(path=str(tmp_path / "page-timeline.png"))
        finally:
            browser.close()
    assert problems == [], problems  # no CSP violation, no script error


def _browser(p: Any) -> Any:
    return p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)


def _sign_in(page: Any, url: str, problems: list[str], *, ok_status: tuple[str, ...] = ()) -> None:
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not any(f"status of {s}" in m.text for s in ok_status)
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector("#token:focus")
    page.keyboard.type(TOKEN)
    page.keyboard.press("Enter")
    page.wait_for_selector("#plans-section:not([hidden]), #armed-section:not([hidden])")


def test_a_reloaded_page_reattaches_and_cancel_closes_cleanly(
    page_service: tuple[ServiceProc, Path, bool], standin: AdjutorStandIn
) -> None:
    """Issue 13, items 6 and 7: a reload (or a closed tab) no longer strands an armed
    rotation, and Cancel closes it without a script error or an empty table."""
    sync_playwright = _need_browser()
    svc, root, _ = page_service
    problems: list[str] = []
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page()
            _sign_in(page, svc.url, problems, ok_status=("422",))  # the wrong key's refusal
            page.click("#arm-btn")
            page.wait_for_selector("#key:focus")
            rid = page.inner_text("#armed-summary").split()[1]

            # The tab is reloaded: the page finds the rotation armed in this service and re-attaches.
            page.reload()
            page.wait_for_selector("#armed-section:not([hidden])")
            page.wait_for_selector("#key:focus")
            assert rid in page.inner_text("#armed-summary")
            assert page.is_visible("#cancel-btn") and page.is_visible("#key-form")
            assert "Reset app key" in page.inner_text("#instruction")

            # A new tab (the old one closed) gets the same rotation through "Arm" too.
            other = browser.new_page()
            _sign_in(other, svc.url, problems)
            other.wait_for_selector("#key:focus")
            assert rid in other.inner_text("#armed-summary")
            other.close()

            # Live progress still flows to the re-attached page: a wrong key is refused on screen.
            page.keyboard.type("sk_test_" + "w" * 40)
            page.keyboard.press("Enter")
            page.wait_for_selector("#key-status:has-text('Refused')")

            page.click("#cancel-btn")
            page.wait_for_selector("#plans-section:not([hidden])")
            page.wait_for_selector(f"#plan-status:has-text('Closed rotation {rid}')")
            assert page.is_hidden("#armed-section")
            assert page.is_hidden("#progress-section")  # no empty table left behind
            with svc.client() as c:
                assert c.get(f"/api/rotations/{rid}").json()["state"] in ("refused", "closed", "aborted")
                assert c.get("/api/plans").json()["plans"][0]["active"] is None
            assert env_key(root / "worker/.env") == standin.current_key  # nothing written
        finally:
            browser.close()
    assert problems == [], problems  # no "Cannot read properties of null (reading 'id')"


def test_through_an_api_outage_and_a_partial_rotation_from_the_page(
    page_service: tuple[ServiceProc, Path, bool], standin: AdjutorStandIn, tmp_path: Path
) -> None:
    """Issue 13, items 4, 8 and 9: the probe row warns that the API is down before the
    reset; the key is written unprobed only after an explicit confirmation; a partial
    rotation's window is not green and the page resumes it."""
    sync_playwright = _need_browser()
    svc, root, _ = page_service
    problems: list[str] = []
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page()
            _sign_in(page, svc.url, problems, ok_status=("422",))
            standin.unavailable = True  # the API answers 503
            page.click("#arm-btn")
            page.wait_for_selector("#armed-section:not([hidden])")
            probe = page.locator('#preflight li[data-target="probe"]')
            assert probe.locator(".status").get_attribute("data-status") == "warning"
            assert "HTTP 503" in probe.inner_text()
            assert "Do not reset the key" in page.inner_text("#probe-warning")

            new_key = standin.reset()
            page.fill("#key", new_key)
            page.keyboard.press("Enter")
            page.wait_for_selector("#unprobed-box:not([hidden])")
            assert "could not check" in page.inner_text("#unprobed-text")
            assert env_key(root / "worker/.env") != new_key  # nothing written without the confirmation
            # The confirmation: tick the box (the button says what it will do), paste again.
            page.check("#accept-unprobed")
            assert page.inner_text("#rotate-btn") == "Write it WITHOUT a probe"
            # worker-env cannot be written (a directory where the file was): a partial rotation.
            (root / "worker/.env").rename(root / "worker/env.saved")
            (root / "worker/.env").mkdir()
            page.fill("#key", new_key)
            page.keyboard.press("Enter")
            page.wait_for_selector("#result-h", timeout=60_000)
            assert "Not finished" in page.inner_text("#result-h")
            assert "not-done" in (page.get_attribute("#result .window", "class") or "")
            assert "not every target" in page.inner_text("#result .window")
            assert "WITHOUT A SUCCESSFUL PROBE" in page.inner_text("#result")
            assert env_key(root / "api/.env") == new_key

            # Back to the plan: the partial rotation is offered for resume; the API is back.
            standin.unavailable = False
            (root / "worker/.env").rmdir()
            (root / "worker/env.saved").rename(root / "worker/.env")
            page.click("#again-btn")
            page.wait_for_selector("#resume-box:not([hidden])")
            page.fill("#reason", "finish INC-7")
            page.click("#resume-btn")
            page.wait_for_selector("#result-h, #plan-status:has-text('Not resumed')", timeout=60_000)
            assert "Done" in page.inner_text("#result"), (page.inner_text("#plan-status"), page.inner_text("#result"))
            assert env_key(root / "worker/.env") == new_key
            with svc.client() as c:
                rows = c.get("/api/history").json()["rotations"]
            assert rows[0]["state"] == "done"
            page.screenshot(path=str(tmp_path / "page-after-resume.png"), full_page=True)
        finally:
            standin.unavailable = False
            browser.close()
    assert problems == [], problems


def test_a_rotation_armed_elsewhere_is_shown_with_its_holder_and_closed_from_the_page(
    tmp_path: Path, standin: AdjutorStandIn
) -> None:
    """Issue 13, item 6: another replica holds the armed rotation; this replica's page says
    who holds it (and where), and closes it: no more "already armed" with no way out."""
    sync_playwright = _need_browser()
    plan = write_plan(tmp_path, standin)
    db = f"sqlite:///{tmp_path / 'journal.db'}"
    holder = ServiceProc(["--plans", str(plan), "--db", db], own_pid=True)
    here = ServiceProc(["--plans", str(plan), "--db", db, "--no-scheduler"], own_pid=True)
    problems: list[str] = []
    try:
        holder.wait_ready()
        here.wait_ready()
        with holder.client() as c:
            rid = c.post(f"/api/plans/{PLAN_NAME}/arm", json={"operator": "ada"}).json()["id"]
        with sync_playwright() as p:
            browser = _browser(p)
            try:
                page = browser.new_page()
                _sign_in(page, here.url, problems, ok_status=("409",))
                page.wait_for_selector("#active-box:not([hidden])")
                text = page.inner_text("#active-text")
                assert rid in text and "ada (web, 127.0.0.1)" in text and f"pid {holder.proc.pid}" in text, text
                assert page.is_hidden("#reattach-btn")  # its key goes to the replica that holds it
                page.fill("#operator", "bob")
                page.click("#close-active-btn")
                page.wait_for_selector(f"#plan-status:has-text('Closed rotation {rid}')", timeout=45_000)
                page.wait_for_selector("#active-box", state="hidden")
            finally:
                browser.close()
        with here.client() as c:
            row = next(x for x in c.get("/api/history").json()["rotations"] if x["id"] == rid)
            assert row["state"] == "aborted"
    finally:
        holder.stop()
        here.stop()
    assert problems == [], problems


def _crowded_report(names: list[str], *, refused: list[float], reset: float | None, window: float) -> dict[str, Any]:
    """A report dict whose marks crowd each other (times in s after the key)."""
    targets = []
    for i, name in enumerate(names):
        a = 0.002 + i * window / (len(names) + 1)
        targets.append(
            {
                "name": name,
                "kind": "backend" if i < 2 else "consumer",
                "primary": i == 0,
                "status": "ok" if i % 3 else "failed",
                "started": a,
                "finished": a + window / 3,
                "phases": {"write": [a, a + window / 6], "read_back": [a + window / 6, a + window / 3]},
            }
        )
    return {
        "window_seconds": window,
        "key_received_at": 1000.0,
        "reset": {"at": 1000.0 + reset} if reset is not None else None,
        "refused_keys": [{"at": 1000.0 + r} for r in refused],
        "steps": {"probe": 0.001},
        "targets": targets,
    }


def test_timeline_labels_are_legible_and_never_overlap_however_the_marks_crowd(tmp_path: Path) -> None:
    """The timeline's SVG (rotator.timeline, as the page shows it, with the page's stylesheet) in
    Chromium: marks on top of each other (a reset placed at the key's arrival, refused pastes a few ms
    apart, a window of 1 ms), long target names, a broken axis: every label >= 12 px on screen,
    inside the picture, and no two labels touching."""
    sync_playwright = _need_browser()
    from rotator.timeline import build, render_svg

    css = (Path(__file__).parent.parent / "rotator/service/static/style.css").read_text()
    long = "a-consumer-with-a-very-long-name-indeed-" * 3
    cases = {
        "reset-at-the-key": _crowded_report(["store", "api-env", "hook"], refused=[], reset=0.0, window=0.05),
        "pastes-crowd": _crowded_report(
            ["store", "api-env", long], refused=[-0.03, -0.02, -0.01, -0.005, -0.001], reset=-0.04, window=0.001
        ),
        "broken-axis": _crowded_report(
            [f"consumer-{i:02d}" for i in range(12)], refused=[-6.5, -6.49, -0.2], reset=-7.004, window=0.178
        ),
        "no-reset": _crowded_report(["store"], refused=[], reset=None, window=12.5),
    }
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for name, report in cases.items():
                tl = build(report)
                assert tl is not None
                page.set_content(
                    f"<html><head><style>{css}</style></head><body><main><section>"
                    f'<figure id="timeline">{render_svg(tl)}</figure></section></main></body></html>'
                )
                boxes = assert_legible_and_apart(page)
                texts = " | ".join(b["text"] for b in boxes)
                assert "K key received 0 ms" in texts and "E window's end" in texts, texts
                assert ("R reset seen" in texts) is (report["reset"] is not None), texts
                assert texts.count("x refused paste") == len(report["refused_keys"]), texts
                if name == "pastes-crowd":
                    assert "…" in texts  # the long name is cut to its column (its <title> says it whole)
                page.locator("#timeline").screenshot(path=str(tmp_path / f"timeline-{name}.png"))
                if shots := os.environ.get("ROTATOR_PAGE_SHOTS"):
                    page.locator("#timeline").screenshot(path=str(Path(shots) / f"timeline-{name}.png"))
        finally:
            browser.close()


def test_an_outage_known_only_as_a_lower_bound_is_shown_as_one(tmp_path: Path, standin: AdjutorStandIn) -> None:
    """The key is pasted before the reset watch looks again (every 30 s here): the reset is placed
    at the key's arrival, so the consumers' outage was at least what rotator measured. The page
    says "≥ N ms" and why, never a bare figure that reads as the whole outage."""
    sync_playwright = _need_browser()
    plan = write_plan(tmp_path, standin)
    plan.write_text(plan.read_text().replace("[probe]\n", "[probe]\nwatch_interval = 30\n", 1))
    svc = ServiceProc(["--plans", str(plan), "--db", f"sqlite:///{tmp_path / 'journal.db'}", "--no-scheduler"])
    problems: list[str] = []
    try:
        svc.wait_ready()
        with sync_playwright() as p:
            browser = _browser(p)
            try:
                page = browser.new_page(timezone_id=NY)
                _sign_in(page, svc.url, problems)
                before = standin.authorized
                page.click("#arm-btn")
                page.wait_for_selector("#key:focus")
                # The reset watch's first look, with the old key, at arm: a machine under load can run
                # it after the reset below, and the watch would then see the reset.
                wait_until("the reset watch's first look", lambda: standin.authorized > before, timeout=10)
                page.fill("#key", standin.reset())  # reset and paste at once: the watch has not looked since
                page.keyboard.press("Enter")
                page.wait_for_selector("#result-h:focus", timeout=30_000)
                found = re.search(r"· rotation (\S+)", page.inner_text("#result"))
                assert found, page.inner_text("#result")
                rid = found.group(1)
                outage = page.inner_text("#outage")
                assert outage.startswith("≥ ") and outage.endswith(" ms"), outage
                bound = page.inner_text("#outage-bound")
                assert bound.startswith("At least: the reset was not seen before the key arrived"), bound
                assert re.search(rf"by the key's arrival at {NY_TIME}, so the consumers failed for longer", bound)
                assert "null" not in page.inner_text("#result")
                # The timeline says the reset's time is a bound too (not "seen"), its labels apart.
                texts = " | ".join(b["text"] for b in assert_legible_and_apart(page))
                assert "R reset at the latest 0 ms" in texts and "reset seen" not in texts, texts
                save_shot(page, tmp_path, "page-outage-lower-bound.png", full_page=True)
            finally:
                browser.close()
        with svc.client() as c:
            report = c.get(f"/api/rotations/{rid}").json()["report"]
        # What the page read: the report's bound when it has one (`outage_bound`), else the reset placed
        # at the key's arrival (`reset.inferred`).
        assert report["reset"]["inferred"] is True, report
        if report.get("outage_bound") is not None:
            assert report["outage_bound"]["at_least"] == pytest.approx(
                float(outage[2:-3].replace(",", "")) / 1000, abs=2e-4
            )
    finally:
        svc.stop()
    assert problems == [], problems


def test_history_folds_routine_syncs_shows_repairs_and_greys_skipped_ones(
    page_service: tuple[ServiceProc, Path, bool], standin: AdjutorStandIn, tmp_path: Path
) -> None:
    """Three syncs that found nothing are one line; the one that repaired drift names the
    backend with its fingerprints; a sync skipped while a rotation held the plan is grey."""
    from rotator.secret import fingerprint
    from tests.test_service import write_env

    sync_playwright = _need_browser()
    svc, root, _ = page_service
    with svc.client() as c:
        for _ in range(3):
            assert c.post(f"/api/plans/{PLAN_NAME}/sync", json={}).json()["state"] == "done"
        edited = "sk_test_edited0by0hand000000"
        write_env(root / "worker/.env", edited)
        assert c.post(f"/api/plans/{PLAN_NAME}/sync", json={}).json()["state"] == "done"
        armed = c.post(f"/api/plans/{PLAN_NAME}/arm", json={})
        assert armed.status_code == 201, armed.text
        skipped = c.post(f"/api/plans/{PLAN_NAME}/sync", json={})
        assert skipped.status_code == 409 and skipped.json()["skipped"] is True, skipped.text
        c.post(f"/api/rotations/{armed.json()['id']}/close", json={})
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(svc.url + "/")
            page.wait_for_selector("#token:focus")
            page.keyboard.type(TOKEN)
            page.keyboard.press("Enter")
            page.wait_for_selector("#history-section:not([hidden])")
            page.wait_for_selector("#history tbody tr.folded")
            rows = page.locator("#history tbody tr")
            texts = [rows.nth(i).inner_text() for i in range(rows.count())]
            assert any("3 syncs, no drift since" in t for t in texts), texts
            key = standin.current_key
            repaired = f"drift repaired: worker-env ({fingerprint(edited)} → {fingerprint(key)})"
            assert sum(repaired in t for t in texts) == 1, texts
            cell = page.locator('#history [data-status="skipped"]')
            assert cell.count() == 1 and "st-skipped" in (cell.get_attribute("class") or "")
            color = cell.evaluate("e => getComputedStyle(e).color")
            assert color == "rgb(91, 100, 117)", color  # --muted: grey, not the failure red
            assert page.locator('#history [data-status="failed"]').count() == 0
        finally:
            browser.close()
    assert problems == []
