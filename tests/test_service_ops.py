"""`rotator serve` as an operator meets it during an incident (issue 13): who acts is
taken from the request as configured, a rotation armed by another process can be
closed from here, notifications follow every run that changed something, and the
service's log is one format.

The service is a real subprocess; receivers are loopback servers in this process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rotator.testing.adjutor import AdjutorStandIn
from rotator.testing.plans import to_toml
from tests.test_service import PLAN_NAME, SSE, HookReceiver, ServiceProc, env_key, write_env, write_plan

NOTIFY_ENV = "ROTATOR_TEST_SLACK_URL"


def _serve(tmp_path: Path, plan: Path, *extra: str, env: dict[str, str] | None = None) -> ServiceProc:
    svc = ServiceProc(
        ["--plans", str(plan), "--db", f"sqlite:///{tmp_path / 'journal.db'}", *extra], env=env, own_pid=True
    )
    svc.wait_ready()
    return svc


def test_the_operator_comes_from_a_trusted_proxy_only(tmp_path: Path, standin: AdjutorStandIn) -> None:
    plan = write_plan(tmp_path, standin)
    proxied = {"X-Forwarded-User": "alice@example.com", "X-Forwarded-For": "203.0.113.9"}
    svc = _serve(tmp_path, plan)  # no --trusted-proxy: the header is anyone's to send, so ignored
    try:
        with svc.client() as c:
            r = c.post(f"/api/plans/{PLAN_NAME}/arm", json={"reason": "INC-7"}, headers=proxied)
            assert r.status_code == 201, r.text
            assert r.json()["operator"] == "web (127.0.0.1)"
            assert c.post(f"/api/rotations/{r.json()['id']}/close", json={}).status_code == 200
    finally:
        svc.stop()
    svc = _serve(tmp_path, plan, "--trusted-proxy", "127.0.0.1/32")
    try:
        with svc.client() as c:
            assert c.get("/api/whoami", headers=proxied).json()["user"] == "alice@example.com"
            r = c.post(f"/api/plans/{PLAN_NAME}/arm", json={"reason": "INC-7", "operator": "mallory"}, headers=proxied)
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
            assert r.json()["operator"] == "alice@example.com (web, X-Forwarded-User, 203.0.113.9)"
            assert c.post(f"/api/rotations/{rid}/close", json={}, headers=proxied).status_code == 200
            row = next(x for x in c.get("/api/history").json()["rotations"] if x["id"] == rid)
            assert (row["operator"], row["reason"]) == (
                "alice@example.com (web, X-Forwarded-User, 203.0.113.9)",
                "INC-7",
            )
            events = c.get(f"/api/rotations/{rid}").json()["events"]
            assert any("alice@example.com" in (e.get("detail") or e.get("reason") or "") for e in events), events
    finally:
        svc.stop()
    bad = ServiceProc(["--plans", str(plan), "--trusted-proxy", "not-an-address"])
    assert bad.proc.wait(20) == 2
    assert "--trusted-proxy 'not-an-address' is not an IP address or CIDR" in bad.output()


def test_a_rotation_armed_by_another_replica_is_shown_and_closed_from_here(
    tmp_path: Path, standin: AdjutorStandIn
) -> None:
    plan = write_plan(tmp_path, standin)
    a = _serve(tmp_path, plan)
    b = _serve(tmp_path, plan, "--no-scheduler")
    try:
        with a.client() as ca, b.client() as cb:
            rid = ca.post(f"/api/plans/{PLAN_NAME}/arm", json={"operator": "ada"}).json()["id"]
            sse = SSE(a, rid)
            sse.wait("armed")
            # B cannot arm it ("already armed" with no way out, before): it says who holds it, and where.
            r = cb.post(f"/api/plans/{PLAN_NAME}/arm", json={})
            assert r.status_code == 409 and r.json()["lock"]["holder"] == rid, r.text
            active = cb.get("/api/plans").json()["plans"][0]["active"]
            assert active["id"] == rid and active["held_here"] is False and active["alive"] is True
            assert active["operator"] == "ada (web, 127.0.0.1)" and active["pid"] == a.proc.pid
            # Closing it from B asks A through the journal; A's keeper closes it.
            r = cb.post(f"/api/rotations/{rid}/close", json={"operator": "bob"})
            assert r.status_code == 202, r.text
            closed = sse.wait("closed", timeout=40)
            assert "closed by bob (web, 127.0.0.1)" in closed["reason"]
            assert sse.ended.wait(10)
            # The plan is free again, from either replica.
            r = cb.post(f"/api/plans/{PLAN_NAME}/arm", json={})
            assert r.status_code == 201, r.text
            assert cb.post(f"/api/rotations/{r.json()['id']}/close", json={}).status_code == 200
    finally:
        a.stop()
        b.stop()


def _plan_with_notify(tmp_path: Path, standin: AdjutorStandIn) -> Path:
    plan = write_plan(tmp_path, standin)
    extra = to_toml({"notify": [{"type": "slack", "url": {"env": NOTIFY_ENV}, "retries": 0}]})
    plan.write_text(plan.read_text() + "\n" + extra + "\n")
    return plan


def _wait_bodies(hook: HookReceiver, n: int, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(hook.bodies) < n:
        time.sleep(0.02)
    return [json.loads(b) for b in hook.bodies]


def test_notifications_follow_rotations_and_syncs_with_a_link_to_the_page(
    tmp_path: Path, standin: AdjutorStandIn
) -> None:
    chat = HookReceiver(path="/chat")
    plan = _plan_with_notify(tmp_path, standin)
    svc = _serve(tmp_path, plan, "--public-url", "https://rotator.example.com", env={NOTIFY_ENV: chat.url})
    try:
        with svc.client() as c:
            rid = c.post(f"/api/plans/{PLAN_NAME}/arm", json={"reason": "planned", "operator": "ada"}).json()["id"]
            new_key = standin.reset()
            r = c.post(f"/api/rotations/{rid}/key", json={"key": new_key})
            assert r.status_code == 200, r.text
            [sent] = _wait_bodies(chat, 1)
            text = json.dumps(sent)
            assert f"https://rotator.example.com/#rotation={rid}" in text
            assert "ada" in text and "planned" in text and new_key not in text

            # A sync that changes nothing says nothing; one that repairs drift does; a check never.
            assert c.post(f"/api/plans/{PLAN_NAME}/sync", json={}).json()["state"] == "done"
            write_env(tmp_path / "worker/.env", "sk_test_drifted0000000000")
            assert c.post(f"/api/plans/{PLAN_NAME}/sync", json={"check": True}).json()["state"] == "drift"
            report = c.post(f"/api/plans/{PLAN_NAME}/sync", json={}).json()
            assert report["state"] == "done" and env_key(tmp_path / "worker/.env") == new_key
            bodies = _wait_bodies(chat, 2)
            assert len(bodies) == 2, bodies
            assert f"#rotation={report['id']}" in json.dumps(bodies[1])
            time.sleep(0.5)  # nothing else arrives (the unchanged sync, the check)
            assert len(chat.bodies) == 2
    finally:
        svc.stop()
        chat.stop()


def test_the_service_log_is_one_format(tmp_path: Path, standin: AdjutorStandIn) -> None:
    """Not a TTY: every line is a JSON object, uvicorn's own and its access log included."""
    plan = write_plan(tmp_path, standin)
    svc = _serve(tmp_path, plan)
    try:
        with svc.client() as c:
            assert c.get("/api/plans").status_code == 200
            assert c.get("/healthz").status_code == 200
            assert c.get("/api/nothing-here").status_code == 404
    finally:
        assert svc.stop() == 0
    lines = [json.loads(line) for line in svc.output().splitlines() if line.strip()]  # each one parses
    access = [x for x in lines if x.get("logger") == "uvicorn.access"]
    assert {(x["method"], x["path"], x["status"]) for x in access} >= {("GET", "/api/plans", 200)}
    assert not any(x.get("path") == "/healthz" for x in access)  # health checks do not drown the log
    assert any("Application startup complete" in x["event"] for x in lines)
    assert all("timestamp" in x and "level" in x for x in lines)


def test_scheduled_syncs_and_age_warnings_reach_the_plans_notify_entries(
    tmp_path: Path, standin: AdjutorStandIn, monkeypatch: Any
) -> None:
    """In-process, as the scheduler runs the jobs: a scheduled sync that repaired drift and
    an overdue key reach ``[[notify]]``; the schedule's own Slack-style webhook still works."""
    import asyncio

    from rotator.journal import Journal
    from rotator.plan import load_plan
    from rotator.service import scheduler as sched
    from rotator.service.core import Service

    chat, legacy = HookReceiver(path="/chat"), HookReceiver(path="/legacy")
    monkeypatch.setenv(NOTIFY_ENV, chat.url)
    monkeypatch.setenv("ROTATOR_TEST_LEGACY_URL", legacy.url)
    schedules = [
        {"job": "sync", "cron": "* * * * *"},
        {"job": "age-check", "cron": "0 9 * * *", "notify": {"env": "ROTATOR_TEST_LEGACY_URL"}},
    ]
    plan_path = write_plan(tmp_path, standin, schedules=schedules)
    extra = to_toml({"notify": [{"type": "slack", "url": {"env": NOTIFY_ENV}, "retries": 0}]})
    plan_path.write_text(plan_path.read_text() + "\n" + extra + "\n")
    journal = Journal(f"sqlite:///{tmp_path / 'journal.db'}")
    try:
        plan = load_plan(plan_path)
        svc = Service([plan], journal)
        svc.public_url = "https://rotator.example.com"
        sched.set_service(svc)
        write_env(tmp_path / "worker/.env", "sk_test_edited0by0hand000000")
        rid = journal.begin(kind="rotate", plan=plan.name, plan_path="/x.toml", reason="t", operator="t", old_fp=None)
        when = time.time() - 120 * 86400
        journal.update(rid, state="done", created_at=when, key_received_at=when, finished_at=when)

        async def run() -> tuple[str, str]:
            synced = await sched.sync_job(plan.name)
            aged = await sched.age_check_job(plan.name, 1)
            await svc.drain(10)  # the notifications run beside the jobs
            return synced, aged

        assert asyncio.run(run()) == ("done", "overdue")
        bodies = _wait_bodies(chat, 2)
        texts = [json.dumps(b) for b in bodies]
        assert len(texts) == 2, texts
        assert any("sync" in t and "#rotation=" in t for t in texts)
        assert any("120 days" in t and "https://rotator.example.com/" in t for t in texts)
        assert len(legacy.bodies) == 1 and "120 days" in json.loads(legacy.bodies[0])["text"]
    finally:
        sched.set_service(None)
        journal.close()
        chat.stop()
        legacy.stop()
