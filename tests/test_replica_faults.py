"""Replicas of `rotator serve` when their PostgreSQL restarts or stops mid-rotation.

A real PostgreSQL server of its own (restarted and stopped by these tests, so not
the module-wide one of test_replicas) and real `rotator serve` processes:

- a restart ends the session holding an armed rotation's plan lock; another
  replica takes the plan meanwhile: the first one never writes its key (409,
  nothing written, its rotation closed saying it lost the lock), the other one
  finishes;
- a restart nobody takes advantage of: the holder takes its lock back and
  finishes as usual;
- the database stops during the fan-out: the key request still answers the
  rotation's truth (done: every target holds the key), the report says the
  journal could not be written, and once the database is back the page offers
  Resume, which records the finish.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from rotator.journal import Journal, LockHeld
from rotator.testing._http import LoopbackServer
from rotator.testing.adjutor import AdjutorStandIn
from tests.pgserver import PostgresServer, find_bindir
from tests.test_service import PLAN_NAME, ServiceProc, env_key, webhook_available, write_plan

FILES = ("store/adjutor.env", "api/.env", "worker/.env")


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    if find_bindir() is None:
        why = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (required in CI; .ci/run installs them)")
        pytest.skip(why)
    with PostgresServer() as server:
        yield server


def wait_for(what: str, check: Any, timeout: float = 30.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def serve(plan: Path, db_url: str) -> ServiceProc:
    svc = ServiceProc(["--plans", str(plan.parent), "--db", db_url], own_pid=True)
    svc.wait_ready(40)
    return svc


def grab_lock(journal: Journal, holder: str, timeout: float = 20.0) -> str | None:
    """Take the plan's lock as another replica would, as soon as the database answers.
    Returns None once taken, or the holder that took it first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            journal.acquire(PLAN_NAME, holder)
            return None
        except LockHeld as exc:
            return exc.holder
        except Exception:  # noqa: BLE001 - the database is still starting
            time.sleep(0.01)
    raise AssertionError("the database did not come back")


def test_a_restart_never_hands_an_armed_rotation_to_a_second_replica(
    tmp_path: Path, standin: AdjutorStandIn, pg: PostgresServer
) -> None:
    db_url = pg.new_database()
    plan = write_plan(tmp_path, standin)
    old_key = standin.current_key
    a, b = serve(plan, db_url), serve(plan, db_url)
    other = Journal(db_url)  # a third replica's journal: takes the plan the moment it can
    try:
        with a.client() as ca, b.client() as cb:
            r = ca.post(f"/api/plans/{PLAN_NAME}/arm", json={"operator": "ada"})
            assert r.status_code == 201, r.text
            rid = r.json()["id"]

            pg.restart()  # every session ends: the advisory lock A held is gone
            taken_by = grab_lock(other, "rot-other")
            if taken_by is not None:
                # A took its lock back first (its keeper checks every 2 s): then the plan
                # stays A's, and A finishes as usual.
                assert taken_by == rid
                key = standin.reset()
                done = ca.post(f"/api/rotations/{rid}/key", json={"key": key})
                assert done.status_code == 200 and done.json()["report"]["state"] == "done", done.text
                return
            # The plan is another's now.  A is asked for its key at once (before its keeper
            # noticed, or after it closed the rotation): it writes nothing.
            key_a = standin.reset()
            refused = ca.post(f"/api/rotations/{rid}/key", json={"key": key_a})
            assert refused.status_code == 409, refused.text
            assert "lost the lock of plan" in refused.text or "closed" in refused.text, refused.text
            for p in FILES:
                assert env_key(tmp_path / p) == old_key, p
            seen = wait_for("A's rotation closed", lambda: ca.get(f"/api/rotations/{rid}").json(), timeout=15)
            row = other.get(rid)
            assert row is not None and row.state == "aborted", row
            assert seen["state"] == "closed" and "lost the lock of plan" in seen["closed_reason"], seen
            assert "lost the lock of plan" in a.output()

            # The other replica's turn: B arms once the plan is free, and finishes.
            r = cb.post(f"/api/plans/{PLAN_NAME}/arm", json={"operator": "bob"})
            assert r.status_code == 409 and "rot-other" in r.json()["error"], r.text
            other.release(PLAN_NAME, "rot-other")
            r = cb.post(f"/api/plans/{PLAN_NAME}/arm", json={"operator": "bob"})
            assert r.status_code == 201, r.text
            key_b = standin.reset()
            done = cb.post(f"/api/rotations/{r.json()['id']}/key", json={"key": key_b})
            assert done.status_code == 200 and done.json()["report"]["state"] == "done", done.text
            for p in FILES:
                assert env_key(tmp_path / p) == key_b, p
    finally:
        other.close()
        for p in (a, b):
            if p.proc.poll() is None:
                p.stop()


def test_an_outage_nobody_used_leaves_the_lock_with_its_holder(
    tmp_path: Path, standin: AdjutorStandIn, pg: PostgresServer
) -> None:
    db_url = pg.new_database()
    plan = write_plan(tmp_path, standin)
    a = serve(plan, db_url)
    j = Journal(db_url)
    try:
        with a.client() as ca:
            r = ca.post(f"/api/plans/{PLAN_NAME}/arm", json={"operator": "ada"})
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
            pg.halt()
            time.sleep(5)  # an outage longer than the lock checks (every 2 s): each one fails meanwhile
            pg.resume()
            # Within a lock check (2 s) A holds its plan again: nobody else can take it.
            wait_for("A's lock again", lambda: (j.lock_info(PLAN_NAME) or {}).get("alive"), timeout=15, every=0.2)
            with pytest.raises(LockHeld, match=rid):
                j.acquire(PLAN_NAME, "rot-other")
            key = standin.reset()
            done = ca.post(f"/api/rotations/{rid}/key", json={"key": key})
            assert done.status_code == 200 and done.json()["report"]["state"] == "done", done.text
            for p in FILES:
                assert env_key(tmp_path / p) == key, p
    finally:
        j.close()
        a.stop()


class HaltingHook:
    """A consumer's reload endpoint that stops the database when it is called (the
    fan-out's last step) and answers 200 once it is down."""

    def __init__(self, pg: PostgresServer) -> None:
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.calls += 1
                if outer.calls == 1:
                    pg.halt()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = LoopbackServer("127.0.0.1", 0, Handler).start_background("halting-hook")
        self.url = self.server.url


@pytest.mark.skipif(not webhook_available(), reason="the webhook consumer plugin is part of rotator")
def test_the_database_stopping_during_the_fan_out_never_fails_a_finished_rotation(
    tmp_path: Path, standin: AdjutorStandIn, pg: PostgresServer
) -> None:
    db_url = pg.new_database()
    hook = HaltingHook(pg)
    plan = write_plan(tmp_path, standin, hook_url=hook.url)
    a = serve(plan, db_url)
    try:
        with a.client() as ca:
            r = ca.post(f"/api/plans/{PLAN_NAME}/arm", json={"operator": "ada"})
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
            key = standin.reset()
            answer: dict[str, Any] = {}

            def send() -> None:
                answer["r"] = ca.post(f"/api/rotations/{rid}/key", json={"key": key})

            t = threading.Thread(target=send)
            t.start()
            t.join(60)
            done = answer["r"]
            # The truth of the rotation, not of the database: every target holds the key.
            assert done.status_code == 200, done.text
            report = done.json()["report"]
            assert report["state"] == "done" and report["exit_code"] == 0, report
            assert report["journal_written"] is False
            assert any("journal could not be written" in w and "Resume" in w for w in report["warnings"]), report
            for p in FILES:
                assert env_key(tmp_path / p) == key, p
            assert hook.calls == 1

            pg.resume()
            # The journal still says the run is unfinished: the page offers Resume.
            state = wait_for(
                "the plan's state",
                lambda: (s := ca.get(f"/api/plans/{PLAN_NAME}")).status_code == 200 and s.json(),
                timeout=30,
                every=0.3,
            )
            j = Journal(db_url)
            row = j.get(rid)
            j.close()
            assert row is not None and row.state in {"key_accepted", "fanning_out"}, row
            assert [x["id"] for x in state["resumable"]] == [rid], state
            resumed = ca.post(f"/api/rotations/{rid}/resume", json={"operator": "ada"})
            assert resumed.status_code == 200, resumed.text
            assert resumed.json()["state"] == "done", resumed.text
            assert ca.get(f"/api/plans/{PLAN_NAME}").json()["resumable"] == []
    finally:
        a.stop()
        hook.server.stop()
