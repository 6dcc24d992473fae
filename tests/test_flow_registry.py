"""A new flow reaches the CLI and the service's API with no edit to either.

The toy flow is a list of existing steps (probe the key, then compare every backend with
the primary: writes nothing), added to `rotator.pipeline` and registered in
`rotator.pipeline.flows` by a `sitecustomize` the child processes load, as a flow added in
`pipeline/__init__.py` would be.  Then `rotator rotate PLAN --flow probe-check` (a real
subprocess, the key on stdin) and `rotator serve` (a real process: arm with that flow over
HTTP, POST the key) run it against the Adjutor stand-in and an env-file primary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

try:
    from tests.test_service import PLAN_NAME, ServiceProc, env_key, write_plan
except ImportError:
    from test_service import PLAN_NAME, ServiceProc, env_key, write_plan  # type: ignore[no-redef]

from rotator.testing.adjutor import AdjutorStandIn

TOY = '''
from rotator import pipeline
from rotator.pipeline import flows, probe
from rotator.pipeline.single_flow import SingleFlow
from rotator.report import RunKind


async def probe_then_check(state, secret):
    """Probe the key; if the API takes it, say which backends differ from the primary (nothing written)."""
    if (refused := await probe.run(state, secret)) is not None:
        return refused
    return await pipeline.check_drift(state)


pipeline.probe_then_check = probe_then_check
flows.register(
    flows.FlowSpec(
        "probe-check",
        RunKind.CHECK,
        alternating=False,
        takes_key=True,
        make=lambda options: SingleFlow(steps=pipeline.probe_then_check),
    )
)
'''


def toy_env(tmp_path: Path, db: str) -> dict[str, str]:
    """The child's environment: the toy flow loaded at start-up (`sitecustomize`)."""
    site = tmp_path / "toy_site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(textwrap.dedent(TOY))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, "ROTATOR_DB": db}


def stores(root: Path) -> dict[str, str | None]:
    return {p: env_key(root / p) for p in ("store/adjutor.env", "api/.env", "worker/.env")}


def test_a_new_flow_runs_from_the_cli_and_from_the_api(tmp_path: Path, standin: AdjutorStandIn) -> None:
    plan = write_plan(tmp_path, standin)
    db = f"sqlite:///{tmp_path / 'journal.db'}"
    env = toy_env(tmp_path, db)
    old = standin.current_key
    cmd = [sys.executable, "-m", "rotator", "rotate", str(plan), "--flow", "probe-check", "--key-stdin", "--json"]

    # Without the toy flow loaded, the CLI does not know it: one line, exit 2, nothing run.
    bare = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    r = subprocess.run(cmd, input="sk_test_whatever", env=bare, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "--flow probe-check" in r.stderr and "no such flow" in r.stderr

    # The CLI: the key on stdin is probed, every backend compared with the primary, nothing written.
    new_key = standin.reset()
    r = subprocess.run(cmd, input=new_key, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["kind"] == "check" and report["state"] == "done", report
    assert report["message"] == "every backend matches the primary"
    assert "accepted" in r.stderr  # the probe ran (its progress line)
    assert stores(tmp_path) == dict.fromkeys(stores(tmp_path), old)  # nothing was written
    assert new_key not in r.stdout + r.stderr

    # A key the API refuses: the toy flow's probe says so (the single flow's refusal), exit 3.
    wrong = new_key[:-1] + ("x" if new_key[-1] != "x" else "y")
    r = subprocess.run(cmd, input=wrong, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    assert "refused" in json.loads(r.stdout)["message"]

    # The API: arm the plan with the toy flow, POST the key, get its report.
    svc = ServiceProc(["--plans", str(plan), "--db", db], env={"PYTHONPATH": env["PYTHONPATH"]})
    try:
        with svc.client() as c:
            bad = c.post(f"/api/plans/{PLAN_NAME}/arm", json={"flow": "no-such-flow"})
            assert bad.status_code == 400 and "probe-check" in bad.json()["error"]
            r = c.post(f"/api/plans/{PLAN_NAME}/arm", json={"flow": "probe-check", "reason": "toy"})
            assert r.status_code == 201, r.text
            armed = r.json()
            assert armed["state"] == "armed"
            r = c.post(f"/api/rotations/{armed['id']}/key", json={"key": f"  {new_key}\n"})
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            assert body["report"]["kind"] == "check" and body["report"]["state"] == "done"
            assert body["report"]["message"] == "every backend matches the primary"
            assert body["rotation"]["state"] == "finished"
            rows = c.get("/api/history").json()["rotations"]
            row = next(x for x in rows if x["id"] == armed["id"])
            assert row["kind"] == "check" and row["state"] == "done" and row["reason"] == "toy"
    finally:
        assert svc.stop() == 0
    assert stores(tmp_path) == dict.fromkeys(stores(tmp_path), old)
    assert new_key not in svc.output()
