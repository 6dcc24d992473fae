"""Faults found by trying to break rotator (issue "Eleven faults…"): each one as
the real run that showed it, against real rotator processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rotator.exitcodes import Exit
from rotator.plan import PlanError, load_plan
from rotator.secret import fingerprint

try:
    from tests import leakcheck as lc
except ImportError:
    import leakcheck as lc  # type: ignore[no-redef]

OLD = "sk_test_" + "0ld" * 10
COLLEAGUE = "sk_live_ChangedByColleague"

ENVFILE_PRIMARY = """
[secret]
name = "break-cas"

[[backends]]
name = "store"
type = "envfile"
primary = true
path = "{tmp}/store.env"
variable = "ADJUTOR_API_KEY"

[[backends]]
name = "app"
type = "envfile"
path = "{tmp}/app.env"
variable = "ADJUTOR_API_KEY"
"""


def test_envfile_primary_changed_after_arm_is_a_conflict(tmp_path: Path) -> None:
    """A colleague's edit of the primary between arm and key is never overwritten: exit 9."""
    for name in ("store.env", "app.env"):
        (tmp_path / name).write_text(f"# keep me\nADJUTOR_API_KEY={OLD}\n")
    plan = tmp_path / "plan.toml"
    plan.write_text(ENVFILE_PRIMARY.format(tmp=tmp_path))
    new = lc.canary()

    run = lc.start("rotate", str(plan), "--key-stdin", "--json", logs=tmp_path / "logs")
    lc.wait_for("arm", lc.armed("break-cas"), proc=run)
    (tmp_path / "store.env").write_text(f"# keep me\nADJUTOR_API_KEY={COLLEAGUE}\n")
    run.send(new + "\n")
    code = run.wait(60)

    assert code == Exit.CONFLICT, run.err
    report = json.loads(run.out)
    assert report["state"] == "conflict"
    assert "changed since arm" in report["message"]
    assert COLLEAGUE in (tmp_path / "store.env").read_text()  # the colleague's value kept
    assert lc.env_fp(tmp_path / "app.env") == fingerprint(OLD)  # nothing past the check
    assert not lc.find(run.out + run.err, [new], "output")


def test_envfile_primary_unchanged_still_rotates_and_force_overrides(tmp_path: Path) -> None:
    for name in ("store.env", "app.env"):
        (tmp_path / name).write_text(f"ADJUTOR_API_KEY={OLD}\nOTHER=1\n")
    plan = tmp_path / "plan.toml"
    plan.write_text(ENVFILE_PRIMARY.format(tmp=tmp_path))

    # Other lines edited after arm: not a conflict, and kept.
    new = lc.canary()
    run = lc.start("rotate", str(plan), "--key-stdin", "--json", logs=tmp_path / "a")
    lc.wait_for("arm", lc.armed("break-cas"), proc=run)
    (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={OLD}\nOTHER=2\n")
    run.send(new + "\n")
    assert run.wait(60) == Exit.DONE, run.err
    assert "OTHER=2" in (tmp_path / "store.env").read_text()
    assert lc.env_fp(tmp_path / "store.env") == fingerprint(new)

    # --force writes over a changed primary.
    newer = lc.canary()
    run = lc.start("rotate", str(plan), "--key-stdin", "--json", "--force", logs=tmp_path / "b")
    first = lc.latest("break-cas")
    assert first is not None
    lc.wait_for("arm", lambda: (row := lc.armed("break-cas")()) is not None and row.id != first.id, proc=run)
    (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={COLLEAGUE}\n")
    run.send(newer + "\n")
    assert run.wait(60) == Exit.DONE, run.err
    assert lc.env_fp(tmp_path / "store.env") == fingerprint(newer)


SAME_NAME = """
[secret]
name = "break-names"

[[backends]]
name = "store"
type = "envfile"
primary = true
path = "{tmp}/store.env"
variable = "ADJUTOR_API_KEY"

[[backends]]
name = "app-env"
type = "envfile"
path = "{tmp}/missing-dir/.env"
variable = "ADJUTOR_API_KEY"

[[consumers]]
name = "app-env"
type = "webhook"
url = "http://127.0.0.1:9/reload"
hmac_key = {{ env = "BREAK_HOOK_KEY" }}
"""


def test_consumer_named_like_a_backend_is_a_plan_error(tmp_path: Path) -> None:
    (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={OLD}\n")
    plan = tmp_path / "plan.toml"
    plan.write_text(SAME_NAME.format(tmp=tmp_path))
    with pytest.raises(PlanError) as err:
        load_plan(plan)
    assert any("consumers[0].name" in p and "backends[1]" in p for p in err.value.problems), err.value.problems

    r = lc.cli("check", str(plan), env=lc.rotator_env(BREAK_HOOK_KEY="k"))
    assert r.returncode == Exit.PLAN_INVALID, r.stderr
    assert "consumers[0].name: 'app-env' is already the name of backends[1]" in r.stderr

    r = lc.cli("rotate", str(plan), "--key-stdin", input=lc.canary() + "\n", env=lc.rotator_env(BREAK_HOOK_KEY="k"))
    assert r.returncode == Exit.PLAN_INVALID, r.stderr
    assert (tmp_path / "store.env").read_text() == f"ADJUTOR_API_KEY={OLD}\n"


def test_arm_checks_are_kept_per_target_even_for_a_plan_built_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Plan built without load_plan's checks: the failing backend's check is not masked."""
    import asyncio

    from rotator.journal import Journal
    from rotator.rotation import Rotation

    (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={OLD}\n")
    plan = tmp_path / "plan.toml"
    plan.write_text(SAME_NAME.format(tmp=tmp_path).replace('"app-env"\ntype = "webhook"', '"hook"\ntype = "webhook"'))
    monkeypatch.setenv("BREAK_HOOK_KEY", "k")
    p = load_plan(plan)
    p.consumers[0].name = "app-env"  # what the plan check now refuses

    async def arm() -> bool:
        rot = Rotation(p, Journal(), reason="test")
        try:
            return (await rot.arm()).ok
        finally:
            await rot.close()

    assert asyncio.run(arm()) is False
