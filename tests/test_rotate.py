"""`rotator rotate` as an operator runs it: a real CLI process, a real Adjutor
stand-in over HTTP, real files and real consumer commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rotator.exitcodes import Exit
from rotator.journal import Journal
from rotator.testing import plans
from rotator.testing.adjutor import AdjutorStandIn
from tests import forkserver
from tests.timing import scaled


def rotate_plan(tmp: Path, models_url: str) -> dict[str, object]:
    """The primary .env store, the app's .env, a reload command."""
    return plans.plan(
        "adjutor-e2e",
        probe=plans.adjutor_probe(models_url, check_old_key=True, retries=1, backoff=0.01),
        backends=[plans.envfile("store", tmp / "store.env", primary=True), plans.envfile("app", tmp / "app/.env")],
        consumers=[plans.command("reloader", [sys.executable, tmp / "reload.py"], retries=0)],
    )


RELOAD = """
import os, pathlib, sys
root = pathlib.Path(__file__).parent
if (root / "fail").exists():
    sys.stderr.write("reload failed: service not ready\\n")
    sys.exit(3)
(root / "reloaded").write_text(os.environ["ROTATOR_FINGERPRINT"])
"""


@pytest.fixture
def setup(tmp_path: Path, standin: AdjutorStandIn) -> dict[str, object]:
    key = standin.current_key
    (tmp_path / "app").mkdir()
    (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={key}\n")
    (tmp_path / "app" / ".env").write_text(f"# app settings\nPORT=8080\nADJUTOR_API_KEY={key}\nDEBUG=false\n")
    (tmp_path / "reload.py").write_text(RELOAD)
    plan = plans.write_plan(tmp_path / "plan.toml", rotate_plan(tmp_path, standin.models_url))
    return {"plan": plan, "tmp": tmp_path, "old": key}


def rotate(plan: Path, key: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*forkserver.command(), "rotate", str(plan), "--key-stdin", "--json", *extra],
        input=key + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


def snapshot(tmp: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in tmp.rglob("*.env")} | {
        str(tmp / "app/.env"): (tmp / "app/.env").read_bytes()
    }


def assert_no_key(key: str, *texts: str) -> None:
    for t in texts:
        assert key not in t


def journal_bytes() -> bytes:
    from rotator.journal import data_dir

    return b"".join(p.read_bytes() for p in data_dir().glob("journal.db*"))


def test_wrong_key_is_refused_and_nothing_is_written(setup: dict, standin: AdjutorStandIn) -> None:
    tmp = setup["tmp"]
    before = snapshot(tmp)
    standin.reset()
    wrong = "sk_test_" + "A" * 40
    r = rotate(setup["plan"], wrong)
    assert r.returncode == Exit.KEY_REFUSED, r.stderr
    assert "refused" in r.stderr and "nothing was written" in r.stderr
    assert snapshot(tmp) == before
    assert not (tmp / "reloaded").exists()
    report = json.loads(r.stdout)
    assert report["state"] == "refused"
    assert_no_key(wrong, r.stdout, r.stderr)
    assert wrong.encode() not in journal_bytes()


def test_rotation_end_to_end(setup: dict, standin: AdjutorStandIn) -> None:
    tmp = setup["tmp"]
    new = standin.reset()
    r = rotate(setup["plan"], f'  "Bearer {new}"  ', "--reason", "planned")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["state"] == "done"
    assert {t["name"]: t["status"] for t in report["targets"]} == {"store": "ok", "app": "ok", "reloader": "ok"}
    assert 0 < report["window_seconds"] < scaled(10)
    assert report["old_key_check"]["outcome"] == "revoked" and report["old_key_check"]["revoked"] is True
    from rotator.secret import fingerprint

    fp = fingerprint(new)
    assert report["new_fingerprint"] == fp
    assert (tmp / "reloaded").read_text() == fp
    app = (tmp / "app" / ".env").read_text()
    assert app == f"# app settings\nPORT=8080\nADJUTOR_API_KEY={new}\nDEBUG=false\n"
    assert ((tmp / "app" / ".env").stat().st_mode & 0o777) == 0o600
    assert "window" in r.stderr
    # The key reached only the two env files: not the output, the journal, or any other file.
    assert_no_key(new, r.stdout, r.stderr)
    assert new.encode() not in journal_bytes()
    holders = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file() and new.encode() in p.read_bytes())
    assert holders == ["app/.env", "store.env"]
    # The journal tells the story.
    j = Journal()
    row = j.get(report["id"])
    assert row is not None and row.state == "done" and row.reason == "planned" and row.new_fp == fp
    steps = [(e["step"], e["target"], e["status"]) for e in j.events(row.id)]
    assert ("primary", "store", "ok") in steps and ("write", "app", "ok") in steps
    assert ("consumer", "reloader", "ok") in steps
    hist = subprocess.run([*forkserver.command(), "history"], capture_output=True, text=True)
    assert row.id in hist.stdout and "done" in hist.stdout
    show = subprocess.run([*forkserver.command(), "show", row.id], capture_output=True, text=True)
    assert show.returncode == 0 and fp in show.stdout


def test_probe_unavailable_writes_nothing_unless_overridden(setup: dict, standin: AdjutorStandIn) -> None:
    tmp = setup["tmp"]
    before = snapshot(tmp)
    new = standin.reset()
    standin.unavailable = True
    r = rotate(setup["plan"], new)
    assert r.returncode == Exit.PROBE_UNAVAILABLE, r.stderr
    assert "--accept-unprobed" in r.stderr
    assert snapshot(tmp) == before
    r = rotate(setup["plan"], new, "--accept-unprobed")
    assert r.returncode == 0, r.stderr
    assert "WRITTEN WITHOUT A SUCCESSFUL PROBE" in r.stderr
    assert new in (tmp / "store.env").read_text()


def test_dry_run_probes_and_writes_nothing(setup: dict, standin: AdjutorStandIn) -> None:
    before = snapshot(setup["tmp"])
    new = standin.reset()
    r = rotate(setup["plan"], new, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "dry_run"
    assert snapshot(setup["tmp"]) == before


def test_preflight_failure_stops_before_the_reset(setup: dict) -> None:
    tmp = setup["tmp"]
    (tmp / "app" / ".env").unlink()
    r = rotate(setup["plan"], "sk_test_whatever1")
    assert r.returncode == Exit.PREFLIGHT_FAILED
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("rotator: not armed: app:") and "Traceback" not in r.stderr


def test_partial_then_resume(setup: dict, standin: AdjutorStandIn) -> None:
    tmp = setup["tmp"]
    (tmp / "fail").write_text("")
    new = standin.reset()
    r = rotate(setup["plan"], new)
    assert r.returncode == Exit.PARTIAL, r.stderr
    report = json.loads(r.stdout)
    assert report["state"] == "partial"
    status = {t["name"]: (t["status"], t["detail"]) for t in report["targets"]}
    assert status["store"][0] == "ok" and status["app"][0] == "ok"
    assert status["reloader"][0] == "failed" and "service not ready" in status["reloader"][1]
    assert f"rotator resume {report['id']}" in r.stderr
    # Fix the consumer and finish the rotation from the primary.
    (tmp / "fail").unlink()
    r2 = subprocess.run(
        [*forkserver.command(), "resume", report["id"], "--json"], capture_output=True, text=True, timeout=60
    )
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout)["state"] == "done"
    from rotator.secret import fingerprint

    assert (tmp / "reloaded").read_text() == fingerprint(new)
    assert new not in r2.stdout + r2.stderr


def test_second_rotation_of_same_plan_is_refused_while_locked(setup: dict) -> None:
    j = Journal()
    j.acquire("adjutor-e2e", "someone-else", lease=300)
    try:
        r = rotate(setup["plan"], "sk_test_whatever1")
    finally:
        j.release("adjutor-e2e", "someone-else")
    assert r.returncode == Exit.BUSY, r.stderr
    assert "locked by someone-else" in r.stderr


def test_no_terminal_and_no_stdin_flag_is_a_clear_error(setup: dict) -> None:
    r = subprocess.run(
        [*forkserver.command(), "rotate", str(setup["plan"])],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == Exit.PLAN_INVALID
    assert "--key-stdin" in r.stderr.strip().splitlines()[-1]
