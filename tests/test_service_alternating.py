"""Alternating plans through `rotator serve` (issue 11's service part), with real processes.

The service is a subprocess; the Adjutor stand-in runs in this process with two apps
(resetting one revokes only its key); two consumer processes
(`rotator.demo.consumer_app`) call its API every 5 ms with the key from their own
env file, counting every failed call.  The test plays the operator over the API:
arm a flow, follow its events, reset the app the `ask` event names, send its key.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rotator.secret import fingerprint
from rotator.testing.adjutor import AdjutorStandIn
from tests import leakcheck as lc
from tests.test_alternating import BLUE, ENVFILE_PRIMARY, GREEN, HOOK_ENV, PLAN, _consumer, _http
from tests.test_service import SSE, ServiceProc, assert_no_key

PLAN_NAME = "payments"


@dataclass
class AltService:
    """The service, the two-app stand-in and the consumers calling it."""

    svc: ServiceProc
    standin: AdjutorStandIn
    root: Path
    consumers: dict[str, str]
    keys: list[str] = field(default_factory=list)  # every key the stand-in issued
    bodies: list[str] = field(default_factory=list)  # every API answer, searched for keys

    def reset(self, app: str) -> str:
        key = self.standin.reset(app)
        self.keys.append(key)
        return key

    def failed(self) -> dict[str, int]:
        return {name: _http(f"{url}/stats")["failed"] for name, url in self.consumers.items()}

    def fingerprints(self) -> dict[str, str]:
        return {name: _http(f"{url}/stats")["fingerprint"] for name, url in self.consumers.items()}

    def call(self, method: str, path: str, **kw: Any) -> Any:
        with self.svc.client() as c:
            r = c.request(method, path, **kw)
        self.bodies.append(r.text)
        return r

    def slots(self) -> dict[str, Any]:
        r = self.call("GET", f"/api/plans/{PLAN_NAME}/slots")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def arm(self, flow: str, **body: Any) -> tuple[str, SSE]:
        r = self.call("POST", f"/api/plans/{PLAN_NAME}/arm", json={"flow": flow, **body})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        return rid, SSE(self.svc, rid)

    def key(self, rid: str, key: str) -> Any:
        return self.call("POST", f"/api/rotations/{rid}/key", json={"key": key})

    def seed(self) -> None:
        """The one-time re-key of the standby (green), through the API."""
        rid, sse = self.arm("rekey")
        ask = sse.wait("ask")
        assert ask["app"] == GREEN and ask["slot"] == "standby" and ask["safe"], ask
        r = self.key(rid, self.reset(GREEN))
        assert r.status_code == 200 and r.json()["outcome"] == "finished", r.text
        assert r.json()["report"]["exit_code"] == 0
        assert sse.ended.wait(20)

    def no_leaks(self) -> None:
        """No key (in any encoding) in an API answer, the service's output, the journal or a stray file."""
        assert_no_key([*self.bodies, self.svc.output()], *self.keys)
        hits = lc.find("\n".join(self.bodies), self.keys, "api") + lc.find(self.svc.output(), self.keys, "output")
        stores = [self.root / "store.env", self.root / "api" / ".env", self.root / "worker" / ".env"]
        hits += lc.scan_tree(self.root, self.keys, allowed=stores)  # the journal database is under root
        assert not hits, hits


@pytest.fixture
def alt_service(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[AltService]:
    serve_args: list[str] = getattr(request, "param", [])  # more `rotator serve` arguments
    env = {HOOK_ENV: "alt-hook-signing-key"}
    procs: list[subprocess.Popen[bytes]] = []
    with AdjutorStandIn(app=BLUE) as standin:
        standin.add_app(GREEN)
        blue = standin.key_of(BLUE)
        import os

        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        for name in ("api", "worker"):
            (tmp_path / name).mkdir()
            (tmp_path / name / ".env").write_text(f"ADJUTOR_API_KEY={blue}\n")
        (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={blue}\n")
        consumers = {}
        try:
            for name in ("api", "worker"):
                proc, url = _consumer(tmp_path, name, standin.url, child_env)
                procs.append(proc)
                consumers[name] = url
            plan = tmp_path / "plans" / f"{PLAN_NAME}.toml"
            plan.parent.mkdir()
            plan.write_text(
                PLAN.format(
                    blue=BLUE,
                    green=GREEN,
                    api=standin.url,
                    tmp=tmp_path,
                    primary=ENVFILE_PRIMARY.format(tmp=tmp_path),
                    api_url=consumers["api"],
                    worker_url=consumers["worker"],
                    hook_env=HOOK_ENV,
                    paths="[]",
                    extra="",
                )
            )
            db = f"sqlite:///{tmp_path / 'journal.db'}"
            svc = ServiceProc(["--plans", str(plan.parent), "--db", db, *serve_args], env=env)
            svc.wait_ready()
            world = AltService(svc, standin, tmp_path, consumers, [blue, standin.key_of(GREEN)])
            try:
                yield world
            finally:
                svc.stop()
                world.svc.stop()  # a test may have started another (after killing the first): none is left running
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)


def test_planned_rotation_through_the_api_fails_no_consumer_call(alt_service: AltService) -> None:
    w = alt_service
    plans = w.call("GET", "/api/plans").json()["plans"]
    assert plans[0]["strategy"] == "alternating" and plans[0]["apps"] == [BLUE, GREEN]
    st = w.slots()
    assert st["active"]["app"] == BLUE and st["active"]["works"] is True
    assert st["standby"]["fingerprint"] is None and st["next"].startswith("re-key the standby first")
    before = w.failed()

    # An incident with no valid standby: the operator must choose, nothing is armed.
    r = w.call("POST", f"/api/plans/{PLAN_NAME}/arm", json={"flow": "incident"})
    assert r.status_code == 409 and r.json()["choices"] == ["revoke-now", "standby-first"], r.text
    assert "--revoke-now" in r.json()["error"] or "revoke" in r.json()["error"]
    assert w.call("POST", f"/api/plans/{PLAN_NAME}/arm", json={"flow": "nope"}).status_code == 400

    w.seed()
    st = w.slots()
    assert (st["active"]["app"], st["standby"]["app"]) == (BLUE, GREEN)
    assert st["standby"]["works"] is True and st["next"].startswith("promote the standby")

    # The planned rotation: promote (no key), then the ask names blue; blue's reset fails no call.
    rid, sse = w.arm("rotate", reason="planned", operator="ada")
    armed = sse.wait("armed")
    assert armed["alternating"]["flow"] == "rotate"
    assert armed["alternating"]["plan_line"].startswith("planned rotation: promoting payments-green")
    ask = sse.wait("ask", timeout=30)
    assert ask["app"] == BLUE and ask["slot"] == "standby" and ask["safe"] is True
    assert ask["instruction"] == f"Business → Apps → {BLUE} → View details → Reset app key: no consumer uses this key"
    assert ask["because"].startswith(f"{BLUE} is the standby: every backend and consumer uses {GREEN}'s key")
    kinds = [(d["step"], d["status"]) for k, d in sse.events if k == "step"]
    assert kinds[:2] == [("promote", "ok"), ("promote", "done")], kinds
    # Between promote and re-key: the rotation says what it waits for, and that Roll back is possible.
    rot = w.call("GET", f"/api/rotations/{rid}").json()
    assert rot["state"] == "armed" and rot["alternating"]["asking"]["app"] == BLUE
    assert rot["alternating"]["can_roll_back"] is True
    assert set(w.fingerprints().values()) == {st["standby"]["fingerprint"]}  # every consumer on green

    # A key from the wrong app (green's, the active one) is refused; still waiting.
    r = w.key(rid, w.standin.key_of(GREEN))
    assert r.status_code == 422 and r.json()["outcome"] == "refused", r.text
    assert "the key was not reset" in r.json()["message"]
    r = w.key(rid, w.reset(BLUE))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outcome"] == "finished" and body["report"]["exit_code"] == 0, body
    report = body["report"]
    assert report["alternating"]["active"]["app"] == GREEN and report["alternating"]["standby"]["app"] == BLUE
    assert [rk["previous_revoked"] for rk in report["alternating"]["rekeys"]] == [True]
    assert sse.ended.wait(20)
    steps = [(d["step"], d["status"]) for k, d in sse.events if k == "step"]
    assert ("revoked", "ok") in steps and steps[-1] == ("rekey", "ok"), steps
    kinds = sse.kinds()
    assert kinds.index("ask") < kinds.index("key") < kinds.index("report") < kinds.index("end")

    st = w.slots()
    assert (st["active"]["app"], st["standby"]["app"]) == (GREEN, BLUE)
    assert st["last_step"] == "rekey" and st["rollback_possible"] is False
    assert w.failed() == before, (before, w.failed())  # 0 failed consumer calls
    history = w.call("GET", f"/api/history?plan={PLAN_NAME}").json()["rotations"]
    assert history[0]["id"] == rid and history[0]["state"] == "done"
    w.no_leaks()


def test_roll_back_through_the_api_fails_no_consumer_call(alt_service: AltService) -> None:
    w = alt_service
    w.seed()
    blue_fp = w.slots()["active"]["fingerprint"]
    before = w.failed()

    # Roll back while the rotation waits for the re-key after its promote.
    rid, sse = w.arm("rotate")
    sse.wait("ask", timeout=30)
    r = w.call("POST", f"/api/rotations/{rid}/rollback", json={})
    assert r.status_code == 202, r.text
    final = sse.wait("report", timeout=30)["report"]
    assert final["exit_code"] == 0, final["message"]
    assert final["alternating"]["rolled_back"] is True
    assert final["message"].startswith("promoted, then rolled back by the operator before the re-key")
    assert final["alternating"]["active"]["app"] == BLUE
    steps = [(d["step"], d["status"]) for k, d in sse.events if k == "step"]
    assert ("rollback", "done") in steps, steps
    assert set(w.fingerprints().values()) == {blue_fp}
    st = w.slots()
    assert st["active"]["app"] == BLUE and st["last_step"] == "rollback" and st["rollback_possible"] is False
    # Nothing more to roll back: one line, nothing armed.
    r = w.call("POST", f"/api/plans/{PLAN_NAME}/rollback", json={})
    assert r.status_code == 409 and r.json()["error"].startswith("nothing to roll back"), r.text

    # A promote alone, then the plan's roll back (no rotation held): both without a key.
    r = w.call("POST", f"/api/plans/{PLAN_NAME}/promote", json={})
    assert r.status_code == 200 and r.json()["report"]["alternating"]["active"]["app"] == GREEN, r.text
    assert w.slots()["rollback_possible"] is True
    r = w.call("POST", f"/api/plans/{PLAN_NAME}/rollback", json={"reason": "bad deploy"})
    assert r.status_code == 200, r.text
    assert r.json()["report"]["alternating"]["active"]["app"] == BLUE
    assert set(w.fingerprints().values()) == {blue_fp}
    # A rolled-back rotation's re-key is refused too: nothing to roll back after the re-key.
    rid, sse = w.arm("rekey")
    sse.wait("ask")
    r = w.call("POST", f"/api/rotations/{rid}/rollback", json={})
    assert r.status_code == 409 and "roll back" in r.json()["error"], r.text
    assert w.call("POST", f"/api/rotations/{rid}/close", json={}).status_code == 200
    assert sse.ended.wait(20)

    assert w.failed() == before, (before, w.failed())
    rows = w.call("GET", f"/api/history?plan={PLAN_NAME}").json()["rotations"]
    assert {r["kind"] for r in rows} >= {"rotate", "rekey", "promote", "rollback"}
    w.no_leaks()
    assert json.dumps(rows).count("sk_test_") == 0


@pytest.mark.parametrize("alt_service", [["--arm-timeout", "4"]], indirect=True, ids=["arm-timeout-4"])
def test_a_flow_waiting_for_the_rekey_expires_and_the_promote_stays(alt_service: AltService) -> None:
    """The expiry counts from the ask; the promote it did stays (both keys work), and the slots say what is left."""
    w = alt_service
    w.seed()
    before = w.failed()
    rid, sse = w.arm("rotate")
    sse.wait("ask", timeout=30)
    closed = sse.wait("closed", timeout=30)
    assert closed["reason"] == f"no key within 4s of the ask to reset {BLUE}", closed
    assert sse.ended.wait(10)
    assert w.key(rid, "sk_test_" + "x" * 40).status_code == 409
    st = w.slots()
    assert st["active"]["app"] == GREEN and st["last_step"] == "promote" and st["rollback_possible"] is True
    assert any(f"{BLUE} was not re-keyed" in line for line in st["left"]), st["left"]
    # The lock was released: the plan's roll back runs at once.
    r = w.call("POST", f"/api/plans/{PLAN_NAME}/rollback", json={})
    assert r.status_code == 200 and r.json()["report"]["alternating"]["active"]["app"] == BLUE, r.text
    assert w.failed() == before
    w.no_leaks()


def test_the_page_shows_the_slots_the_app_to_reset_and_roll_back(alt_service: AltService, tmp_path: Path) -> None:
    """In Chromium: the slots (active/standby app, fingerprint, age, works now), a planned rotation
    that names the app to reset and why no consumer is affected, Roll back, then a re-key by paste."""
    from tests.test_service import TOKEN
    from tests.test_service_page import ARGS, CHROMIUM, _need_browser

    sync_playwright = _need_browser()
    w = alt_service
    w.seed()
    st = w.slots()
    blue_fp, green_fp = st["active"]["fingerprint"], st["standby"]["fingerprint"]
    before = w.failed()
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(w.svc.url + "/")
            page.wait_for_selector("#token:focus")
            page.keyboard.type(TOKEN)
            page.keyboard.press("Enter")
            page.wait_for_selector("#alt-plan:not([hidden])")
            assert page.is_hidden("#arm-btn")  # an alternating plan's flows have their own buttons
            active = page.locator('#alt-slots tr[data-slot="active"]')
            standby = page.locator('#alt-slots tr[data-slot="standby"]')
            active.locator("td", has_text=blue_fp).wait_for()
            assert BLUE in active.inner_text() and "yes, on every URL" in active.inner_text()
            assert GREEN in standby.inner_text() and green_fp in standby.inner_text()
            assert "old" not in standby.inner_text() and "unknown" not in standby.locator("td").nth(2).inner_text()
            # Key age and the slot table agree (issue 26): blue's key was never stored by rotator, so
            # neither says an age; the standby's age is the slot record's, and says so.
            key_age = page.inner_text('#plan-info dt:text-is("Key age") + dd')
            assert key_age.startswith("unknown: nothing records it"), key_age
            assert active.locator("td").nth(2).inner_text() == "unknown"
            assert standby.locator("td").nth(2).get_attribute("title") == "from the slot record"
            assert page.inner_text("#alt-next").startswith("Next rotation: promote the standby")

            # Planned rotation: the promote runs, then the page names blue and why no consumer is affected.
            page.click("#alt-rotate-btn")
            page.wait_for_selector("#alt-ask:not([hidden])", timeout=30_000)
            assert page.inner_text("#alt-ask-h").startswith(f"Reset {BLUE} in the Adjutor dashboard")
            because = page.inner_text("#alt-because")
            assert f"every backend and consumer uses {GREEN}'s key" in because and "fails no consumer call" in because
            steps = page.locator("#alt-instruction li").all_inner_texts()  # the service's words, numbered
            assert len(steps) == 3 and f"Apps → {BLUE} → View details → Reset app key" in steps[0], steps
            assert steps[2] == "Paste it into the key field here and press Enter.", steps
            assert "promote done" in page.inner_text("#alt-steps")
            page.wait_for_selector("#alt-rollback-btn:not([hidden])")
            # After the promote the paste stores the standby, and Cancel says what it leaves.
            assert page.inner_text("#rotate-btn") == "Store as standby"
            assert page.inner_text("#cancel-btn") == f"Cancel (keeps the promote; {BLUE} not re-keyed)"
            effect = page.inner_text("#cancel-effect")
            assert f"The promote stays: {GREEN} is active on every target" in effect, effect
            assert f"{BLUE} is not re-keyed, so its previous key still works as the standby" in effect, effect
            assert re.search(r"closes itself at \d{2}:\d{2}:\d{2} UTC if no key comes", page.inner_text("#expires"))
            page.screenshot(path=str(tmp_path / "page-alternating-ask.png"), full_page=True)

            # Roll back: green's promote undone, blue active again, no key needed.
            page.click("#alt-rollback-btn")
            page.wait_for_selector("#result-h", timeout=30_000)
            assert page.inner_text("#result-h") == f"Rolled back: {BLUE} is active again"
            assert blue_fp in page.inner_text("#alt-result")
            assert set(w.fingerprints().values()) == {blue_fp}

            # Back to the plan: the slots say a roll back happened; then a re-key of the standby by paste.
            page.click("#again-btn")
            page.locator("#alt-next", has_text="Next rotation").wait_for()
            page.click("#alt-rekey-btn")
            page.wait_for_selector("#alt-ask:not([hidden])", timeout=30_000)
            assert page.inner_text("#alt-ask-h").startswith(f"Reset {GREEN}")
            assert page.is_hidden("#alt-rollback-btn")  # nothing to roll back before a promote
            assert page.inner_text("#rotate-btn") == "Store as standby"
            assert page.inner_text("#cancel-btn") == f"Cancel (nothing written; {GREEN} not re-keyed)"
            assert focused_id(page) == "key"
            new_green = w.reset(GREEN)
            page.keyboard.type(new_green)
            page.keyboard.press("Enter")
            page.wait_for_selector("#result-h", timeout=30_000)
            assert page.inner_text("#result-h") == f"Done: {BLUE} is active, {GREEN} the standby"
            assert "previous key proven revoked" in page.inner_text("#result")

            # An incident (blue's key leaked): green promoted, blue's reset asked; no Roll back offered,
            # since rolling back would put the leaked key back (issue 23).
            page.click("#again-btn")
            page.locator("#alt-next", has_text="Next rotation").wait_for()
            page.click("#alt-incident-btn")
            page.wait_for_selector("#alt-ask:not([hidden])", timeout=30_000)
            assert page.inner_text("#alt-ask-h").startswith(f"Reset {BLUE}")
            assert "promote done" in page.inner_text("#alt-steps")
            assert page.is_hidden("#alt-rollback-btn")
            page.keyboard.type(w.reset(BLUE))
            page.keyboard.press("Enter")
            page.wait_for_selector("#result-h", timeout=30_000)
            assert page.inner_text("#result-h") == f"Done: {GREEN} is active, {BLUE} the standby"
            html = page.content()
            for key in w.keys:
                assert key not in html
        finally:
            browser.close()
    assert w.failed() == before
    assert problems == [], problems
    w.no_leaks()


def focused_id(page: Any) -> str:
    return str(page.evaluate("document.activeElement && document.activeElement.id"))


def test_an_incident_closed_at_the_reset_ask_is_continued_by_the_next_arm(alt_service: AltService) -> None:
    """Issue 23: the second `arm {"flow": "incident"}` continues incident X (blue's reset only); it
    never promotes blue's leaked key back; the plan's roll back is refused naming the incident."""
    w = alt_service
    w.seed()
    leaked = w.keys[0]  # blue's, every consumer's
    before = w.failed()
    rid, sse = w.arm("incident")
    ask = sse.wait("ask", timeout=30)
    assert ask["app"] == BLUE, ask
    # At the incident's ask the summary says Roll back is not possible (it would put the leaked key back),
    # with the reason naming the incident; the page shows its button only on `can_roll_back`.
    for info in (ask["alternating"], w.call("GET", f"/api/rotations/{rid}").json()["alternating"]):
        assert info["rollback_possible"] is False and info["can_roll_back"] is False, info
        assert info["incident"]["fp"] == fingerprint(leaked) and info["incident"]["where"] == "standby", info
        assert f"incident {info['incident']['incident']}" in info["rollback_refusal"], info
    r = w.call("POST", f"/api/rotations/{rid}/rollback", json={})
    assert r.status_code == 409 and r.json()["exit_code"] == 16, r.text
    assert f"incident {ask['alternating']['incident']['incident']}" in r.json()["error"], r.text
    r = w.call("POST", f"/api/rotations/{rid}/close", json={})
    assert r.status_code in (200, 202), r.text
    assert sse.ended.wait(20)
    st = w.slots()
    assert st["incident"]["fp"] == fingerprint(leaked) and st["incident"]["where"] == "standby", st
    assert st["rollback_possible"] is False
    r = w.call("POST", f"/api/plans/{PLAN_NAME}/rollback", json={})
    assert r.status_code == 409 and r.json()["exit_code"] == 16, r.text
    assert f"incident {st['incident']['incident']}" in r.json()["error"]
    green = set(w.fingerprints().values())
    # The next arm, incident or planned: continues incident X, asks for blue's reset only.
    rid2, sse2 = w.arm("incident")
    armed = sse2.wait("armed")
    assert armed["alternating"]["plan_line"].startswith(f"continuing incident {st['incident']['incident']}"), armed
    ask = sse2.wait("ask", timeout=30)
    assert ask["app"] == BLUE and ask["slot"] == "standby", ask
    assert set(w.fingerprints().values()) == green  # nothing moved back to the leaked key
    r = w.key(rid2, w.reset(BLUE))
    assert r.status_code == 200, r.text
    report = r.json()["report"]
    assert report["exit_code"] == 0 and report["alternating"]["incident"]["revoked"] is True, report
    assert report["old_key_check"]["revoked"] is True
    assert sse2.ended.wait(20)
    assert w.slots()["incident"] is None
    assert w.failed() == before
    w.no_leaks()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # its event stream dies with it
def test_a_service_killed_between_promote_and_rekey_leaves_it_unfinished(alt_service: AltService) -> None:
    """Issue 23: `rotator serve` SIGKILLed at the re-key's ask.  The journal says `rekey_left`, not
    `done`; resume names what is left (409); the next arm asks for that re-key only, and the killed
    run is then closed as done by it, with an event naming it."""
    w = alt_service
    w.seed()
    before = w.failed()
    rid, sse = w.arm("rotate")
    ask = sse.wait("ask", timeout=30)
    assert ask["app"] == BLUE, ask
    w.svc.proc.kill()  # SIGKILL: no `finally` runs
    w.svc.proc.wait(10)
    db = f"sqlite:///{w.root / 'journal.db'}"
    w.svc = ServiceProc(["--plans", str(w.root / "plans"), "--db", db], env={HOOK_ENV: "alt-hook-signing-key"})
    w.svc.wait_ready()
    row = next(r for r in w.call("GET", "/api/history").json()["rotations"] if r["id"] == rid)
    assert row["state"] == "rekey_left", row
    r = w.call("POST", f"/api/rotations/{rid}/resume", json={})
    assert r.status_code == 409, r.text
    assert "its re-key is left" in r.json()["error"] and "rotator rekey" in r.json()["error"], r.text
    st = w.slots()
    assert st["active"]["app"] == GREEN and any(f"{BLUE} was not re-keyed" in x for x in st["left"]), st
    rid2, sse2 = w.arm("rotate")
    armed = sse2.wait("armed")
    assert "only the re-key is left" in armed["alternating"]["plan_line"], armed
    ask = sse2.wait("ask", timeout=30)
    assert ask["app"] == BLUE and ask["safe"], ask
    r = w.key(rid2, w.reset(BLUE))
    assert r.status_code == 200 and r.json()["report"]["exit_code"] == 0, r.text
    assert sse2.ended.wait(20)
    rows = {r["id"]: r for r in w.call("GET", "/api/history").json()["rotations"]}
    assert rows[rid]["state"] == "done" and rows[rid2]["state"] == "done", rows
    assert w.failed() == before
    w.no_leaks()
