"""Scheduled jobs of `rotator serve`: sync repairs drift and is journaled; the
age check warns and notifies; APScheduler keeps the jobs in the journal's
database and a service that was down catches up once, not once per missed run.

No test waits for a cron minute: the job functions are called directly, or a
stored job is made due now.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rotator.journal import Journal
from rotator.plan import load_plan
from rotator.service import scheduler as sched
from rotator.service.core import Service
from rotator.testing.adjutor import AdjutorStandIn
from tests import forkserver
from tests.test_service import HookReceiver, env_key, write_env, write_plan
from tests.timing import scaled

NOTIFY_ENV = "ROTATOR_TEST_NOTIFY_URL"
SCHEDULES = [
    {"job": "sync", "cron": "* * * * *"},
    {"job": "age-check", "cron": "0 9 * * *", "notify": {"env": "ROTATOR_TEST_NOTIFY_URL"}},
]


class Notified(HookReceiver):
    """A Slack-style incoming webhook on loopback: keeps each JSON body."""

    def __init__(self) -> None:
        super().__init__(answer=b"ok", path="/services/T000/B000/xyz")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(b) for b in self.bodies]


@pytest.fixture
def notified(monkeypatch: pytest.MonkeyPatch) -> Iterator[Notified]:
    n = Notified()
    monkeypatch.setenv(NOTIFY_ENV, n.url)
    yield n
    n.stop()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(f"sqlite:///{tmp_path / 'journal.db'}")
    yield j
    j.close()


@pytest.fixture
def plan_path(tmp_path: Path, standin: AdjutorStandIn) -> Path:
    return write_plan(tmp_path, standin, schedules=SCHEDULES, reminder_lead_days=7)


def make_service(plan_path: Path, journal: Journal) -> Service:
    svc = Service([load_plan(plan_path)], journal)
    sched.set_service(svc)
    return svc


@pytest.fixture(autouse=True)
def _no_service_left() -> Iterator[None]:
    yield
    sched.set_service(None)


def journaled_rotation(journal: Journal, plan: str, days_ago: float, state: str = "done") -> str:
    """A rotation row as `rotator rotate` leaves it, `days_ago` days back."""
    when = time.time() - days_ago * 86400
    rid = journal.begin(kind="rotate", plan=plan, plan_path="/x.toml", reason="t", operator="t", old_fp="a" * 16)
    journal.update(rid, state=state, created_at=when, key_received_at=when, finished_at=when + 0.1, new_fp="b" * 16)
    return rid


def syncs(journal: Journal, plan: str) -> list[Any]:
    return [r for r in journal.history(plan, 100) if r.kind == "sync"]


# -- sync --------------------------------------------------------------------
def test_sync_job_repairs_drift_and_journals_it(plan_path: Path, journal: Journal, tmp_path: Path) -> None:
    svc = make_service(plan_path, journal)
    plan = load_plan(plan_path)
    key = env_key(tmp_path / "store/adjutor.env")
    write_env(tmp_path / "worker/.env", "sk_test_edited0by0hand000000")  # someone edited a target

    assert asyncio.run(sched.sync_job(plan.name)) == "done"

    assert env_key(tmp_path / "worker/.env") == key
    assert env_key(tmp_path / "api/.env") == key
    rows = syncs(journal, plan.name)
    assert len(rows) == 1 and rows[0].state == "done"
    targets = {t["name"]: t["status"] for t in rows[0].report["targets"]}
    assert targets["worker-env"] == "ok"  # written
    assert targets["api-env"] == "unchanged"  # already in line: not touched
    steps = [(e["step"], e["target"], e["status"]) for e in journal.events(rows[0].id)]
    assert ("write", "worker-env", "ok") in steps
    assert 'rotator_backend_drift{backend="worker-env"' in svc.metrics.render().decode()

    # Nothing drifted: the next run writes nothing.
    assert asyncio.run(sched.sync_job(plan.name)) == "done"
    latest = syncs(journal, plan.name)[0]
    assert all(t["status"] == "unchanged" for t in latest.report["targets"] if not t["primary"])


def test_drift_is_news_and_routine_is_not(
    plan_path: Path, journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync that repaired drift sends its own notification naming each backend with its
    fingerprint before and after and what the backend recorded of the change (an .env
    file: its modification time); a sync that found nothing sends nothing; `history`
    folds the no-op syncs into one line."""
    receiver = HookReceiver()
    try:
        monkeypatch.setenv("DRIFT_HOOK_URL", receiver.url + "/hook")
        monkeypatch.setenv("DRIFT_HOOK_KEY", "drift-hook-key-" + "y" * 20)
        with plan_path.open("a") as f:
            f.write(
                '\n[[notify]]\ntype = "webhook"\nurl = { env = "DRIFT_HOOK_URL" }\n'
                'hmac_key = { env = "DRIFT_HOOK_KEY" }\n'
            )
        svc = make_service(plan_path, journal)
        plan = load_plan(plan_path)
        key = env_key(tmp_path / "store/adjutor.env")
        assert key is not None
        edited = "sk_test_edited0by0hand000000"
        write_env(tmp_path / "worker/.env", edited)
        mtime = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((tmp_path / "worker/.env").stat().st_mtime))

        async def ticks(n: int) -> list[str]:
            out = [await sched.sync_job(plan.name) for _ in range(n)]
            await svc.drain(scaled(10))  # every notification the syncs sent (in the background) has landed
            return out

        assert asyncio.run(ticks(4)) == ["done"] * 4  # one repair, then three no-op syncs
        assert len(receiver.bodies) == 1, receiver.bodies
        sent = json.loads(receiver.bodies[0])
        assert sent["event"] == "sync.drift_repaired" and sent["outcome"] == "warning"
        [d] = sent["drift"]
        from rotator.secret import fingerprint

        assert d["backend"] == "worker-env"
        assert d["before"] == fingerprint(edited) and d["after"] == fingerprint(key)
        assert d["changed_at"] == mtime
        assert edited not in receiver.bodies[0].decode() and key not in receiver.bodies[0].decode()
        text = svc.metrics.render().decode()
        assert f'rotator_last_drift_repaired_timestamp_seconds{{backend="worker-env",plan="{plan.name}"}}' in text

        run = subprocess.run(
            [*forkserver.command(), "--db", journal.url, "history"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        out = run.stdout
        assert run.returncode == 0, run.stderr
        assert "3 syncs, no drift since" in out, out
        assert f"drift repaired: worker-env ({fingerprint(edited)} → {fingerprint(key)})" in out, out
    finally:
        receiver.stop()


def test_sync_job_skips_a_plan_that_is_being_rotated(
    plan_path: Path, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick that finds the plan locked is skipped, not failed: journaled as `skipped`
    naming the holder, counted on /metrics, and no notification (Slack here) is sent."""
    chat = HookReceiver(b"ok")
    try:
        monkeypatch.setenv("SKIP_TEST_SLACK", chat.url + "/hook")
        with plan_path.open("a") as f:
            f.write('\n[[notify]]\ntype = "slack"\nurl = { env = "SKIP_TEST_SLACK" }\n')
        svc = make_service(plan_path, journal)
        plan = load_plan(plan_path)
        journal.acquire(plan.name, "someone-else")  # held by a live process (this one)

        async def tick() -> str:
            state = await sched.sync_job(plan.name)
            await svc.drain(scaled(10))  # a notification, were one sent (in the background), has landed
            return state

        assert asyncio.run(tick()) == "skipped"
        journal.release(plan.name, "someone-else")
        rows = syncs(journal, plan.name)
        assert [r.state for r in rows] == ["skipped"]
        assert rows[0].report is not None and "locked by someone-else" in rows[0].report["message"]
        assert rows[0].report["lock"]["holder"] == "someone-else"
        assert any(e["status"] == "skipped" and "someone-else" in e["detail"] for e in journal.events(rows[0].id))
        text = svc.metrics.render().decode()
        assert f'rotator_sync_skipped_total{{kind="sync",plan="{plan.name}"}} 1.0' in text
        assert f'rotator_runs_total{{kind="sync",plan="{plan.name}",state="skipped"}} 1.0' in text
        assert chat.bodies == []  # not news
        assert asyncio.run(sched.sync_job("no-such-plan")) == "unknown-plan"
    finally:
        chat.stop()


def test_the_service_pages_only_news_resumes_and_syncs_alike(
    plan_path: Path, journal: Journal, tmp_path: Path, notified: Notified
) -> None:
    """One rule (`notify.policy.is_news`) for the service's runs: a resume that finds every
    target in place sends nothing, one that writes a target is news; a scheduled sync that
    cannot run at all (a target not ready) is news, as a failed sync."""
    from rotator.secret import fingerprint

    with plan_path.open("a") as f:
        f.write(f'\n[[notify]]\ntype = "slack"\nurl = {{ env = "{NOTIFY_ENV}" }}\nretries = 0\n')
    svc = make_service(plan_path, journal)
    plan = load_plan(plan_path)
    key = env_key(tmp_path / "store/adjutor.env")
    assert key is not None

    def partial() -> str:
        """A rotation that wrote the primary and stopped (as a crash during the fan-out leaves it)."""
        rid = journal.begin(
            kind="rotate", plan=plan.name, plan_path=str(plan_path), reason="t", operator="t", old_fp=None
        )
        journal.update(rid, state="partial", new_fp=fingerprint(key), key_received_at=time.time())
        return rid

    async def runs() -> tuple[str, str, str]:
        quiet = await svc.resume(partial(), operator="ada")
        await asyncio.sleep(0.5)
        sent_after_quiet = len(notified.bodies)
        write_env(tmp_path / "worker/.env", "sk_test_edited0by0hand000000")
        loud = await svc.resume(partial(), operator="ada")
        (tmp_path / "worker/.env").unlink()
        (tmp_path / "worker/.env").mkdir()  # not a file: the target is not ready, the sync cannot run
        synced = await sched.sync_job(plan.name)
        await svc.drain(10)
        assert sent_after_quiet == 0, notified.messages
        return quiet.state, loud.state, synced

    assert asyncio.run(runs()) == ("done", "done", "failed")
    texts = [json.dumps(m) for m in notified.messages]
    assert len(texts) == 2, texts
    assert "rotate done" in texts[0] and "1 ok, 2 unchanged" in texts[0], texts[0]  # the resume that wrote
    assert "sync failed" in texts[1] and "exit 6" in texts[1], texts[1]


# -- the scheduler with its persistent job store ------------------------------
def test_stored_job_runs_by_reference(plan_path: Path, journal: Journal, tmp_path: Path) -> None:
    make_service(plan_path, journal)
    plan = load_plan(plan_path)
    write_env(tmp_path / "api/.env", "sk_test_drifted00000000000")

    async def run() -> dict[str, str]:
        s = sched.make_scheduler(journal.engine)
        s.start(paused=True)
        outcome = sched.reconcile(s, [plan])
        s.resume()
        await sched.run_now(s, f"rotator/{plan.name}/0/sync")
        deadline = time.monotonic() + 15
        while not syncs(journal, plan.name) or syncs(journal, plan.name)[0].state not in ("done", "partial"):
            assert time.monotonic() < deadline, "the scheduled sync did not run"
            await asyncio.sleep(0.05)
        s.shutdown(wait=False)
        await asyncio.sleep(0.05)
        return outcome

    outcome = asyncio.run(run())
    assert outcome == {f"rotator/{plan.name}/0/sync": "added", f"rotator/{plan.name}/1/age-check": "added"}
    assert env_key(tmp_path / "api/.env") == env_key(tmp_path / "store/adjutor.env")
    with journal.engine.connect() as c:
        ids = {r[0] for r in c.execute(sa.text("SELECT id FROM apscheduler_jobs"))}
    assert ids == set(outcome)


def test_a_service_that_was_down_catches_up_once(tmp_path: Path, standin: AdjutorStandIn, journal: Journal) -> None:
    # A run every minute of the last ten: the next regular one is 50 minutes away, out of the
    # counting below, without waiting for a minute boundary.
    now = datetime.now().astimezone()  # the scheduler's clock (its default time zone: the local one)
    minutes = ",".join(str((now - timedelta(minutes=k)).minute) for k in range(1, 11))
    schedules = [{"job": "sync", "cron": f"{minutes} * * * *"}, *SCHEDULES[1:]]
    plan_path = write_plan(tmp_path, standin, schedules=schedules, reminder_lead_days=7)
    make_service(plan_path, journal)
    plan = load_plan(plan_path)
    job_id = f"rotator/{plan.name}/0/sync"

    async def first_life() -> None:
        s = sched.make_scheduler(journal.engine)
        s.start(paused=True)
        sched.reconcile(s, [plan])
        # As if the service stopped ten minutes ago, before the ten runs of the last ten minutes.
        s.modify_job(job_id, next_run_time=datetime.now(s.timezone) - timedelta(minutes=10))
        s.shutdown(wait=False)
        await asyncio.sleep(0.05)

    async def second_life() -> tuple[dict[str, str], Any]:
        s = sched.make_scheduler(journal.engine)
        s.start(paused=True)
        outcome = sched.reconcile(s, [plan])  # unchanged schedule: the stored next run time is kept
        s.resume()
        deadline = time.monotonic() + 15
        while not syncs(journal, plan.name):
            assert time.monotonic() < deadline, "the missed run was not caught up"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # room for any further (wrong) runs
        next_run = s.get_job(job_id).next_run_time
        s.shutdown(wait=False)
        await asyncio.sleep(0.05)
        return outcome, next_run

    asyncio.run(first_life())
    outcome, next_run = asyncio.run(second_life())
    assert outcome[job_id] == "kept"
    assert len(syncs(journal, plan.name)) == 1  # ten missed runs, one catch-up
    assert next_run > datetime.now(next_run.tzinfo)


def test_reconcile_follows_the_plans(plan_path: Path, journal: Journal, tmp_path: Path) -> None:
    plan = load_plan(plan_path)

    async def run() -> list[dict[str, str]]:
        s = sched.make_scheduler(journal.engine)
        s.start(paused=True)
        out = [sched.reconcile(s, [plan])]
        changed = load_plan(plan_path)
        changed.schedules = [changed.schedules[0].model_copy(update={"cron": "*/5 * * * *"})]
        out.append(sched.reconcile(s, [changed]))
        out.append(sched.reconcile(s, [changed]))
        s.shutdown(wait=False)
        await asyncio.sleep(0.05)
        return out

    first, second, third = asyncio.run(run())
    sync_id, age_id = f"rotator/{plan.name}/0/sync", f"rotator/{plan.name}/1/age-check"
    assert first == {sync_id: "added", age_id: "added"}
    assert second == {sync_id: "rescheduled", age_id: "removed"}
    assert third == {sync_id: "kept"}


# -- key age -------------------------------------------------------------------
def test_age_check_warns_and_notifies_when_the_key_is_too_old(
    plan_path: Path, journal: Journal, notified: Notified
) -> None:
    svc = make_service(plan_path, journal)
    plan = load_plan(plan_path)
    journaled_rotation(journal, plan.name, days_ago=120)

    assert asyncio.run(sched.age_check_job(plan.name, 1)) == "overdue"

    assert len(notified.messages) == 1
    text = notified.messages[0]["text"]
    assert plan.name in text and "120 days" in text and "max_age_days = 90" in text
    m = svc.metrics.render().decode()
    age = float(next(line.split()[-1] for line in m.splitlines() if line.startswith("rotator_key_age_seconds{")))
    assert 119 * 86400 < age < 121 * 86400
    assert f'rotator_key_age_warning{{plan="{plan.name}"}} 1.0' in m


def test_age_check_reminds_within_the_lead_time(plan_path: Path, journal: Journal, notified: Notified) -> None:
    make_service(plan_path, journal)
    plan = load_plan(plan_path)
    journaled_rotation(journal, plan.name, days_ago=400, state="done")  # older, superseded
    journaled_rotation(journal, plan.name, days_ago=86)
    journaled_rotation(journal, plan.name, days_ago=1, state="partial")  # not a completed rotation

    assert asyncio.run(sched.age_check_job(plan.name, 1)) == "due"
    assert len(notified.messages) == 1 and "in 4 days" in notified.messages[0]["text"]


def test_age_check_is_quiet_for_a_fresh_key(plan_path: Path, journal: Journal, notified: Notified) -> None:
    svc = make_service(plan_path, journal)
    plan = load_plan(plan_path)
    journaled_rotation(journal, plan.name, days_ago=10)
    assert asyncio.run(sched.age_check_job(plan.name, 1)) == "ok"
    assert notified.messages == []
    assert f'rotator_key_age_warning{{plan="{plan.name}"}} 0.0' in svc.metrics.render().decode()


def test_unknown_age_is_warned_once(plan_path: Path, journal: Journal, notified: Notified) -> None:
    make_service(plan_path, journal)
    plan = load_plan(plan_path)
    assert asyncio.run(sched.age_check_job(plan.name, 1)) == "unknown"
    assert asyncio.run(sched.age_check_job(plan.name, 1)) == "unknown"
    assert len(notified.messages) == 1 and "unknown" in notified.messages[0]["text"]


def test_notify_failures_do_not_break_the_check(
    plan_path: Path, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_service(plan_path, journal)
    plan = load_plan(plan_path)
    journaled_rotation(journal, plan.name, days_ago=120)
    monkeypatch.delenv(NOTIFY_ENV, raising=False)  # the webhook URL is not set
    assert asyncio.run(sched.age_check_job(plan.name, 1)) == "overdue"
    monkeypatch.setenv(NOTIFY_ENV, "http://127.0.0.1:9/nothing-listens")
    assert asyncio.run(sched.age_check_job(plan.name, 1)) == "overdue"
