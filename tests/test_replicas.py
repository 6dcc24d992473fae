"""Several replicas of `rotator serve` on one PostgreSQL database.

A real PostgreSQL server (Debian's package: a throwaway cluster in a temp
directory, on a loopback port) and real `rotator serve` processes: two
replicas share a schedule and run each tick once; one is SIGKILLed and the
other carries on, its plan lock released; two operators arm the same plan on
two replicas at once and one is refused with who holds it; a rotation armed on
one replica is followed from the other.

Without PostgreSQL's binaries these tests are skipped, except in CI (CI=true),
where `.ci/run` installs them and their absence is a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from rotator.journal import SCHEMA_VERSION, Journal, LockHeld, SchemaTooNew, claim_run, job_runs, locks, rotations
from rotator.testing.adjutor import AdjutorStandIn
from tests.pgserver import PostgresServer, find_bindir
from tests.test_service import PLAN_NAME, SSE, ServiceProc, env_key, write_plan
from tests.timing import scaled

REPO = Path(__file__).resolve().parents[1]
TICK = 2  # seconds between scheduled syncs
SCHEDULE = [{"job": "sync", "every": TICK}]


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    if find_bindir() is None:
        why = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (required in CI; .ci/run installs them)")
        pytest.skip(why)
    with PostgresServer() as server:
        yield server


@pytest.fixture
def db_url(pg: PostgresServer) -> str:
    return pg.new_database()


@pytest.fixture
def journal(db_url: str) -> Iterator[Journal]:
    j = Journal(db_url)
    yield j
    j.close()


def python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for(what: str, check: Any, timeout: float = 30.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


# -- the journal on PostgreSQL ---------------------------------------------------
def test_journal_round_trips_on_postgres(journal: Journal) -> None:
    rid = journal.begin(
        kind="rotate", plan="p1", plan_path="/etc/rotator/p1.toml", reason="INC-1\x00", operator="ada", old_fp="a" * 16
    )
    journal.update(rid, state="key_accepted", new_fp="b" * 16, key_received_at=1_700_000_000.123456)
    for i in range(3):
        journal.record(rid, "write", "ok", target=f"t{i}", detail="é ✓", version=str(i), seconds=0.0123)
    report = {"id": rid, "targets": [{"name": "t0", "status": "ok"}], "window_seconds": 0.042, "note": "a\x00b"}
    journal.update(rid, state="done", exit_code=0, finished_at=time.time(), window_s=0.042, report=report)

    row = journal.get(rid[:18])  # a unique prefix, as git does
    assert row is not None and row.id == rid
    assert row.state == "done" and row.reason == "INC-1"  # PostgreSQL text holds no NUL: dropped
    assert row.key_received_at == 1_700_000_000.123456  # double precision, not rounded
    assert row.report == report  # JSON text, NUL escaped in it
    evs = journal.events(rid)
    assert [e["target"] for e in evs] == ["t0", "t1", "t2"] and evs[0]["detail"] == "é ✓"
    assert evs[0]["id"] < evs[1]["id"] < evs[2]["id"]
    assert [e["target"] for e in journal.events(rid, after=evs[0]["id"])] == ["t1", "t2"]
    assert [r.id for r in journal.history("p1")] == [rid]
    assert journal.last_success("p1") is not None
    with journal.engine.connect() as c:
        versions = c.execute(sa.text("SELECT version FROM schema_version")).scalars().all()
    assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1)) == [1, 2]  # 2: the outage columns


def test_replicas_starting_at_once_create_the_schema_once(db_url: str) -> None:
    """Eight processes open the same empty database at the same moment (journal
    schema and APScheduler's table): none fails, the schema is made once."""
    code = (
        "import sys, time\n"
        "from rotator.journal import Journal\n"
        "from rotator.service.scheduler import make_scheduler\n"
        "go = float(sys.argv[2])\n"
        "time.sleep(max(0.0, go - time.time()))\n"
        "j = Journal(sys.argv[1]); make_scheduler(j.engine); j.close()\n"
        "print('ok', j.schema_version)\n"
    )
    go = time.time() + 2.0  # every process imports first, then all start together
    procs = [python(code, db_url, str(go)) for _ in range(8)]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and out.strip() == f"ok {SCHEMA_VERSION}", err
    j = Journal(db_url)  # and once more: nothing to do
    with j.engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM schema_version")).scalar() == SCHEMA_VERSION  # each step once
        tables = set(sa.inspect(c).get_table_names())
    j.close()
    assert {"rotations", "events", "locks", "job_runs", "schema_version", "apscheduler_jobs"} <= tables


def test_a_schema_newer_than_this_rotator_is_refused(journal: Journal, db_url: str) -> None:
    with journal.engine.begin() as c:
        c.execute(sa.text("INSERT INTO schema_version VALUES (99, 'from the future', 0)"))
    with pytest.raises(SchemaTooNew, match="version 99, newer than this rotator knows"):
        Journal(db_url)


def test_a_scheduled_run_is_claimed_once(journal: Journal) -> None:
    when = datetime.fromisoformat("2030-01-01T10:00:02+00:00")
    results: list[bool] = []
    barrier = threading.Barrier(12)

    def claim(i: int) -> None:
        barrier.wait()
        results.append(claim_run(journal.engine, "rotator/p/0/sync", when, f"replica-{i}"))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 11 + [True]
    assert claim_run(journal.engine, "rotator/p/0/sync", when.replace(second=4), "replica-0")  # the next tick


def test_the_plan_lock_dies_with_its_holder(journal: Journal, db_url: str) -> None:
    """The lock is the holder's database session: another process (as another
    host would) is refused while it lives, and takes it over once it is killed."""
    holder = python(
        "import sys, time\n"
        "from rotator.journal import Journal\n"
        "j = Journal(sys.argv[1]); j.acquire('payments', 'rot-A')\n"
        "print('held', flush=True); time.sleep(120)\n",
        db_url,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=r"locked by rot-A \(pid \d+ on .+\) since") as exc:
            journal.acquire("payments", "rot-B")
        assert exc.value.pid == holder.pid
        info = journal.lock_info("payments")
        assert info is not None and info["holder"] == "rot-A" and info["alive"] is True
        journal.release("payments", "rot-A")  # not ours: changes nothing
        assert journal.lock_info("payments") == info
    finally:
        holder.kill()
        holder.wait()
    # Its session ends with it; no lease to run out.
    wait_for("the dead holder's lock", lambda: not (journal.lock_info("payments") or {}).get("alive"), timeout=10)
    journal.acquire("payments", "rot-B")
    info = journal.lock_info("payments")
    assert info is not None and info["holder"] == "rot-B" and info["pid"] == os.getpid()
    journal.acquire("payments", "rot-B")  # the same holder again: renewed
    journal.release("payments", "rot-B")
    assert journal.lock_info("payments") is None

    # A row left by a holder on another host, its lease not run out, but no session
    # holding the lock: PostgreSQL says it is free, the row does not.
    with journal.engine.begin() as c:
        c.execute(
            locks.insert().values(
                plan="payments", holder="rot-C", host="gone-host", pid=1, acquired_at=0, lease_until=time.time() + 3600
            )
        )
    journal.acquire("payments", "rot-D")
    assert (journal.lock_info("payments") or {})["holder"] == "rot-D"
    journal.release("payments", "rot-D")


# -- two `rotator serve` replicas ------------------------------------------------
def replicas(plan_dir: Path, db_url: str, n: int = 2, *extra: str) -> list[ServiceProc]:
    procs = [ServiceProc(["--plans", str(plan_dir), "--db", db_url, *extra], own_pid=True) for _ in range(n)]
    for p in procs:
        p.wait_ready(40)
    return procs


def sync_rows(engine: sa.Engine) -> list[Any]:
    q = sa.select(rotations.c.id, rotations.c.state, rotations.c.reason, rotations.c.created_at).where(
        rotations.c.kind == "sync"
    )
    with engine.connect() as c:
        return list(c.execute(q.order_by(rotations.c.created_at)).all())


def claims(engine: sa.Engine) -> list[Any]:
    """The scheduled jobs' claims (not the key checks' and reminders' claims beside them)."""
    q = sa.select(job_runs).where(job_runs.c.job_id.startswith("rotator/")).order_by(job_runs.c.run_time)
    with engine.connect() as c:
        return list(c.execute(q).all())


def arm_unless_busy(c: httpx.Client, body: dict[str, Any] | None = None) -> httpx.Response | None:
    """Arm; None (try again) while a tick's sync holds the plan."""
    r = c.post(f"/api/plans/{PLAN_NAME}/arm", json=body or {})
    return None if r.status_code == 409 and "is locked by" in r.json()["error"] else r


def tick_of(reason: str) -> str:
    """'schedule 2030-01-01T10:00:02.000000Z on host:pid' -> the tick."""
    parts = reason.split()
    assert parts[0] == "schedule" and parts[2] == "on", reason
    return parts[1]


def test_two_replicas_share_a_schedule_and_survive_a_kill(
    tmp_path: Path, standin: AdjutorStandIn, journal: Journal, db_url: str
) -> None:
    plan = write_plan(tmp_path, standin, schedules=SCHEDULE)
    a, b = replicas(plan.parent, db_url)
    try:
        # Both replicas fire every tick; one runs it.
        wait_for("five scheduled syncs", lambda: len(sync_rows(journal.engine)) >= 5, timeout=40)
        rows, runs = sync_rows(journal.engine), claims(journal.engine)
        ticks = [tick_of(r.reason) for r in rows]
        assert len(ticks) == len(set(ticks)), f"a tick ran twice: {ticks}"
        *older, newest = rows
        assert {r.state for r in older} <= {"done"}, rows
        # The newest may still be running: armed, key_accepted or fanning_out (a sync passes through all three).
        assert newest.state in {"done", "armed", "key_accepted", "fanning_out"}, rows
        assert set(ticks) <= {r.run_time for r in runs}
        assert "scheduled run taken by another replica" in a.output() + b.output()  # both fired, one ran

        # An operator arms a rotation on A: A holds the plan, so the ticks' syncs (on
        # either replica) are refused as busy, still one per tick.  (A tick's sync may
        # hold the plan at that moment, longer on a busy machine: then try again.)
        armed_at = time.time()
        with a.client() as ca:
            r = wait_for("an arm on A", lambda: arm_unless_busy(ca, {"operator": "ada"}), timeout=15, every=0.2)
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
        follow = SSE(b, rid)  # B follows A's rotation through the journal
        wait_for(
            "a busy tick",
            lambda: any(r.state == "skipped" and r.created_at > armed_at for r in sync_rows(journal.engine)),
            timeout=15,
        )
        lock = journal.lock_info(PLAN_NAME)
        assert lock is not None and lock["holder"] == rid and lock["pid"] == a.proc.pid and lock["alive"]

        # A dies mid-schedule, its rotation armed.
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        killed_at = time.time()
        closed = follow.wait("closed", timeout=15)
        assert "replica that armed it is gone" in closed["reason"]

        # B carries on: the dead replica's lock is released, B's ticks sync again.
        def synced_since_kill() -> list[Any]:
            return [r for r in sync_rows(journal.engine) if r.created_at > killed_at and r.state == "done"]

        wait_for("three syncs after the kill", lambda: len(synced_since_kill()) >= 3, timeout=30)
        assert all(r.reason.endswith(f":{b.proc.pid}") for r in synced_since_kill())
        with b.client() as cb:
            lock = cb.get(f"/api/plans/{PLAN_NAME}").json()["lock"]
            assert lock is None or lock["pid"] == b.proc.pid  # between ticks, or B's sync
            gone = cb.post(f"/api/rotations/{rid}/key", json={"key": standin.current_key})
            assert gone.status_code == 409 and "replica that is gone" in gone.json()["error"]
            # The plan can be armed again, on B, without waiting for any lease
            # (a tick's sync may hold the plan for a moment: then try again).
            again = wait_for("an arm on B", lambda: arm_unless_busy(cb), timeout=15, every=0.2)
            assert again.status_code == 201, again.text
            cb.post(f"/api/rotations/{again.json()['id']}/close", json={})

        rows, runs = sync_rows(journal.engine), claims(journal.engine)
        ticks = [tick_of(r.reason) for r in rows]
        assert len(ticks) == len(set(ticks)), f"a tick ran twice: {ticks}"
        # Every claimed tick has its journal row (but perhaps the one A was killed in).
        assert len(runs) - 1 <= len(rows) <= len(runs)
        # No tick lost while a replica was up (a few may straddle the kill).
        first, last = (datetime.fromisoformat(runs[i].run_time.replace("Z", "+00:00")) for i in (0, -1))
        expected = (last - first).total_seconds() / TICK + 1
        assert len(runs) >= expected - 2, (len(runs), expected)
    finally:
        for p in (a, b):
            if p.proc.poll() is None:
                p.stop()


def test_concurrent_arms_on_two_replicas_one_wins_the_other_follows(
    tmp_path: Path, standin: AdjutorStandIn, journal: Journal, db_url: str
) -> None:
    plan = write_plan(tmp_path, standin)
    a, b = replicas(plan.parent, db_url)
    try:
        answers: dict[str, httpx.Response] = {}
        barrier = threading.Barrier(2)

        def arm(name: str, svc: ServiceProc) -> None:
            with svc.client() as c:
                barrier.wait()
                answers[name] = c.post(f"/api/plans/{PLAN_NAME}/arm", json={"operator": name})

        threads = [threading.Thread(target=arm, args=(n, s)) for n, s in (("ada", a), ("bob", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(r.status_code for r in answers.values()) == [201, 409], {k: v.text for k, v in answers.items()}
        won = next(n for n, r in answers.items() if r.status_code == 201)
        winner, loser = (a, b) if won == "ada" else (b, a)
        rid = answers[won].json()["id"]
        refusal = answers["bob" if won == "ada" else "ada"].json()
        assert f"is locked by {rid} (pid {winner.proc.pid} on " in refusal["error"] and " since " in refusal["error"]
        assert refusal["lock"]["holder"] == rid and refusal["lock"]["pid"] == winner.proc.pid
        assert abs(refusal["lock"]["since"] - time.time()) < 60

        with loser.client() as cl, winner.client() as cw:
            # The loser answers for the winner's rotation from the database.
            r = cl.get(f"/api/rotations/{rid}")
            assert r.status_code == 200, r.text
            seen = r.json()
            assert seen["state"] == "armed" and seen["held_here"] is False
            assert seen["lock"]["pid"] == winner.proc.pid and seen["lock"]["alive"] is True
            assert [(e["step"], e["status"]) for e in seen["events"]] == [("arm", "ok")]
            follow = SSE(loser, rid)
            new_key = standin.reset()
            # The key goes to the replica holding the rotation; the other says so.
            r = cl.post(f"/api/rotations/{rid}/key", json={"key": new_key})
            assert r.status_code == 409
            assert f"held by another replica (pid {winner.proc.pid} on " in r.json()["error"]
            r = cw.post(f"/api/rotations/{rid}/key", json={"key": new_key})
            assert r.status_code == 200 and r.json()["report"]["state"] == "done", r.text
            fp = r.json()["report"]["new_fingerprint"]

            final = follow.wait("report", timeout=20)
            assert final["state"] == "done" and final["report"]["new_fingerprint"] == fp
            assert follow.ended.wait(10)
            steps = [(d["step"], d["status"]) for k, d in follow.events if k == "journal"]
            assert steps[0] == ("arm", "ok") and ("key", "accepted") in steps and steps[-1] == ("report", "done")
            assert ("primary", "ok") in steps and steps.count(("write", "ok")) == 2
            assert follow.kinds()[-2:] == ["report", "end"]
            seqs = [d["seq"] for k, d in follow.events if k == "journal"]
            assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))

            r = cl.get(f"/api/rotations/{rid}")
            assert r.json()["state"] == "done" and r.json()["report"]["new_fingerprint"] == fp
            assert cl.get(f"/api/plans/{PLAN_NAME}").json()["lock"] is None  # released
        for p in ("store/adjutor.env", "api/.env", "worker/.env"):
            assert env_key(tmp_path / p) == new_key
        for p in (a, b):
            assert new_key not in p.output()
    finally:
        for p in (a, b):
            if p.proc.poll() is None:
                assert p.stop() == 0
