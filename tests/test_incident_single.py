"""`rotate --incident` on a single-app plan (issue 24): recorded as an incident, not ignored.

A real `rotator` process, the Adjutor stand-in, env-file backends: the report, the journal
(reason, an `incident` event) and `rotator show` say it was an incident and whether the
leaked key is proven revoked; the old-key check runs even when the plan does not ask for it.
"""

from __future__ import annotations

import json
from pathlib import Path

from rotator.exitcodes import Exit
from rotator.journal import Journal
from rotator.secret import fingerprint
from rotator.testing import plans
from rotator.testing.adjutor import AdjutorStandIn
from tests.leakcheck import cli, find


def plan_file(tmp: Path, standin: AdjutorStandIn) -> Path:
    for name in ("store.env", "app.env"):
        (tmp / name).write_text(f"ADJUTOR_API_KEY={standin.current_key}\n")
        (tmp / name).chmod(0o600)
    data = plans.plan(
        "payments",
        probe=plans.adjutor_probe(standin.models_url),  # check_old_key not set: an incident checks anyway
        backends=[plans.envfile("store", tmp / "store.env", primary=True), plans.envfile("app", tmp / "app.env")],
    )
    return plans.write_plan(tmp / "plan.toml", data)


def test_incident_is_recorded_with_the_revocation_proof(standin: AdjutorStandIn, tmp_path: Path) -> None:
    plan = plan_file(tmp_path, standin)
    leaked = standin.current_key
    new = standin.reset()
    r = cli(
        "rotate",
        str(plan),
        "--incident",
        "--reason",
        "INC-42 key in a public repo",
        "--key-stdin",
        "--json",
        input=new + "\n",
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["reason"] == "incident: INC-42 key in a public repo"
    inc = report["incident"]
    assert inc["leaked_fingerprint"] == fingerprint(leaked) and inc["revoked"] is True
    assert "is proven revoked" in r.stderr
    assert report["old_key_check"]["revoked"] is True  # run although the plan does not ask for it

    j = Journal()
    try:
        row = j.get(report["id"])
        assert row is not None and row.reason.startswith("incident")
        events = [e for e in j.events(report["id"]) if e["step"] == "incident"]
    finally:
        j.close()
    assert [(e["status"], e["fingerprint"]) for e in events] == [("revoked", fingerprint(leaked))]
    show = cli("show", report["id"])
    assert show.returncode == 0 and "incident: the leaked key" in show.stdout and "reason: incident" in show.stdout
    assert find(r.stdout + r.stderr + show.stdout, [leaked, new], "output") == []


def test_incident_refused_key_says_the_leaked_key_is_still_in_use(standin: AdjutorStandIn, tmp_path: Path) -> None:
    plan = plan_file(tmp_path, standin)
    r = cli("rotate", str(plan), "--incident", "--key-stdin", "--json", input="sk_test_" + "Z" * 40 + "\n")
    assert r.returncode == Exit.KEY_REFUSED
    report = json.loads(r.stdout)
    assert report["reason"] == "incident" and report["incident"]["revoked"] is None
    assert "still the one in use" in report["incident"]["detail"]


def test_standby_first_on_a_single_app_plan_is_one_line(standin: AdjutorStandIn, tmp_path: Path) -> None:
    plan = plan_file(tmp_path, standin)
    r = cli("rotate", str(plan), "--incident", "--standby-first", "--key-stdin", input="x\n")
    assert r.returncode == Exit.PLAN_INVALID
    assert r.stderr.strip().splitlines() == [
        "rotator: --standby-first needs an alternating plan (this plan has one app: there is no standby)"
    ]
