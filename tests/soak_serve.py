"""A soak of `rotator serve` (not collected by pytest; run it by hand):

    python -m tests.soak_serve --minutes 10 --every 5 --drift-every 60

Five plans, each syncing every `--every` seconds and checking its key's age every 10 s;
two replicas on one real PostgreSQL; an operator rotation of one plan overlapping
several ticks; drift injected into a secondary of another plan every `--drift-every`
seconds; one replica restarted half-way.  A local receiver (every plan's signed
`[[notify]]` webhook) keeps every notification.  At the end it counts, from the
notifications and the journal: false failures, drift reports (each once, with the
injected fingerprint), skipped ticks (journaled `skipped`, naming the rotation), and
reminders (one per plan and threshold across both replicas and the restart).
Prints a JSON summary; exit 0 when every count is as it must be.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import string
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import sqlalchemy as sa

from rotator.journal import Journal, rotations
from rotator.secret import fingerprint
from rotator.testing.adjutor import AdjutorStandIn
from tests.pgserver import PostgresServer
from tests.test_service import HookReceiver, ServiceProc, write_env, write_plan

HOOK_KEY_ENV = "SOAK_NOTIFY_KEY"
HOOK_URL_ENV = "SOAK_NOTIFY_URL"


def random_key() -> str:
    return "sk_test_" + "".join(random.choices(string.ascii_letters + string.digits, k=32))


def serve(plan_dir: Path, db: str) -> ServiceProc:
    svc = ServiceProc(["--plans", str(plan_dir), "--db", db], env={HOOK_URL_ENV: os.environ[HOOK_URL_ENV]})
    svc.wait_ready(60)
    return svc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=int, default=5, help="seconds between scheduled syncs")
    ap.add_argument("--drift-every", type=float, default=60.0)
    ap.add_argument("--plans", type=int, default=5)
    args = ap.parse_args()

    receiver = HookReceiver()
    os.environ[HOOK_URL_ENV] = receiver.url + "/notify"
    os.environ[HOOK_KEY_ENV] = "soak-notify-key-" + secrets.token_hex(8)
    with TemporaryDirectory(prefix="rotator-soak-") as tmp, PostgresServer() as pg:
        root = Path(tmp)
        db = pg.new_database()
        standins = [AdjutorStandIn().__enter__() for _ in range(args.plans)]
        plan_dir = root / "plans"
        names = []
        for i, standin in enumerate(standins):
            name = f"soak-{i}"
            names.append(name)
            schedules = [{"job": "sync", "every": args.every}, {"job": "age-check", "every": 10}]
            path = write_plan(root / name, standin, schedules=schedules, name=name)
            text = path.read_text() + (
                f'\n[[notify]]\ntype = "webhook"\nurl = {{ env = "{HOOK_URL_ENV}" }}\n'
                f'hmac_key = {{ env = "{HOOK_KEY_ENV}" }}\n'
            )
            plan_dir.mkdir(exist_ok=True)
            (plan_dir / f"{name}.toml").write_text(text)
            path.unlink()
        # soak-0's key was rotated 84 days ago (max 90): the 7-day reminder is due, once.
        j = Journal(db)
        rid = j.begin(kind="rotate", plan="soak-0", plan_path="soak", reason="seed", operator="soak", old_fp=None)
        j.update(rid, state="done", exit_code=0, key_received_at=time.time() - 84 * 86400, finished_at=time.time())

        a, b = serve(plan_dir, db), serve(plan_dir, db)
        started = time.monotonic()
        end = started + args.minutes * 60
        injected: list[dict[str, Any]] = []
        rotated: dict[str, Any] = {}
        restarted = False
        next_drift = started + min(args.drift_every, 20)
        rotate_at = started + 0.3 * (end - started)
        try:
            while time.monotonic() < end:
                now = time.monotonic()
                if not rotated and now >= rotate_at:  # an operator rotation of soak-1, overlapping ticks
                    with a.client() as c:
                        r = c.post("/api/plans/soak-1/arm", json={"operator": "soak-operator"})
                        if r.status_code == 201:
                            rotated["id"] = r.json()["id"]
                            time.sleep(3 * args.every)  # several ticks find the plan locked
                            key = standins[1].reset()
                            done = c.post(f"/api/rotations/{rotated['id']}/key", json={"key": key})
                            rotated["state"] = done.json().get("report", {}).get("state")
                        else:
                            rotate_at = now + 1  # a tick's sync held the plan: try again
                if not restarted and now >= started + 0.5 * (end - started):  # one replica restarts
                    b.stop()
                    b = serve(plan_dir, db)
                    restarted = True
                if now >= next_drift:  # someone edits a secondary of a plan not being rotated
                    i = random.choice([k for k in range(args.plans) if k != 1])
                    value = random_key()
                    write_env(root / f"soak-{i}" / "worker/.env", value)
                    injected.append({"plan": f"soak-{i}", "fingerprint": fingerprint(value), "at": time.time()})
                    next_drift = now + args.drift_every
                time.sleep(0.2)
            time.sleep(args.every * 2 + 1)  # the last drift's repair and its notification
        finally:
            a.stop()
            b.stop()
        bodies = [json.loads(x) for x in receiver.bodies]
        with j.engine.connect() as conn:
            rows = conn.execute(sa.select(rotations).where(rotations.c.kind == "sync")).mappings().all()
        j.close()
        for s in standins:
            s.__exit__(None, None, None)
    receiver.stop()

    events: dict[str, int] = {}
    for body in bodies:
        events[body.get("event", "?")] = events.get(body.get("event", "?"), 0) + 1
    drift_reports = [
        (b["plan"], d["backend"], d["before"])
        for b in bodies
        if b.get("event") == "sync.drift_repaired"
        for d in b["drift"]
    ]
    expected_drift = [(d["plan"], "worker-env", d["fingerprint"]) for d in injected]
    states: dict[str, int] = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    skipped = [r for r in rows if r["state"] == "skipped"]
    skipped_naming = [
        r for r in skipped if rotated.get("id") and rotated["id"] in json.loads(r["report"] or "{}").get("message", "")
    ]
    reminders: dict[str, int] = {}
    for body in bodies:
        if body.get("event") == "warning":
            reminders[body["plan"]] = reminders.get(body["plan"], 0) + 1
    false_failures = [b for b in bodies if b.get("outcome") == "failure"]
    summary = {
        "minutes": args.minutes,
        "plans": args.plans,
        "sync_every_s": args.every,
        "drift_every_s": args.drift_every,
        "replicas": 2,
        "restarted": restarted,
        "notifications": events,
        "false_failures": len(false_failures),
        "drift_injected": len(injected),
        "drift_reported": len(drift_reports),
        "drift_reported_once_each_with_its_fingerprint": sorted(drift_reports) == sorted(expected_drift),
        "sync_rows_by_state": states,
        "skipped_ticks": len(skipped),
        "skipped_naming_the_rotation": len(skipped_naming),
        "rotation": rotated,
        "reminders_by_plan": reminders,
    }
    print(json.dumps(summary, indent=2))
    ok = (
        not false_failures
        and summary["drift_reported_once_each_with_its_fingerprint"]
        and len(skipped) > 0
        and len(skipped_naming) == len(skipped)
        and rotated.get("state") == "done"
        and all(n == 1 for n in reminders.values())
        and set(reminders) == set(names)
        and states.get("failed", 0) == 0
        and states.get("aborted", 0) == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
