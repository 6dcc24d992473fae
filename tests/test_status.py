"""`rotator status PLAN` (issue 24) for single-app and alternating plans, as cron runs it: a real
`rotator` process against the Adjutor stand-in (in-process, on loopback) up, answering 503,
down (nothing listening), and refusing each key; env-file backends.

What monitoring needs: a key is `works`, `refused` or `could not check`; exit 0 only when
every key works and nothing drifted, 18 for a refused key, 8 for drift, 19 for anything
that could not be checked; never reset advice for a key that could not be checked; one
probe call per key (the API counts them).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from rotator.exitcodes import Exit
from rotator.secret import fingerprint
from rotator.testing import plans
from rotator.testing.adjutor import AdjutorStandIn
from tests.leakcheck import cli, find

BLUE, GREEN = "payments-blue", "payments-green"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_env(path: Path, key: str) -> None:
    path.write_text(f"ADJUTOR_API_KEY={key}\n")
    path.chmod(0o600)


def single_plan(tmp: Path, url: str, key: str) -> Path:
    write_env(tmp / "store.env", key)
    write_env(tmp / "app.env", key)
    data = plans.plan(
        "payments",
        probe=plans.adjutor_probe(url),
        backends=[plans.envfile("store", tmp / "store.env", primary=True), plans.envfile("app", tmp / "app.env")],
    )
    return plans.write_plan(tmp / "plan.toml", data)


def status(plan: Path) -> tuple[int, dict[str, Any], str]:
    r = cli("status", str(plan), "--json")
    text = cli("status", str(plan))
    assert "Traceback" not in r.stderr + text.stderr, r.stderr + text.stderr
    assert text.returncode == r.returncode  # the same facts either way
    # The plan's path (in the adopt hint) holds the test's name: what status says is the rest.
    return r.returncode, json.loads(r.stdout), text.stdout.replace(str(plan), "PLAN")


def states(st: dict[str, Any]) -> dict[str, str]:
    return {k["role"]: k["state"] for k in st["keys"]}


def test_single_app_up_refused_unavailable_down_and_drift(standin: AdjutorStandIn, tmp_path: Path) -> None:
    key = standin.current_key
    plan = single_plan(tmp_path, standin.models_url, key)

    before = standin.requests
    code, st, text = status(plan)
    assert code == Exit.DONE, text
    assert states(st) == {"current": "works"}
    assert st["strategy"] == "single" and st["drift"] == [] and st["lock"] is None
    assert [b["fingerprint"] for b in st["backends"]] == [fingerprint(key)] * 2
    assert st["probe_calls"] == 1 and standin.requests - before == 2  # --json and the text run: one call each
    assert "works" in text and "exit 0" in text

    standin.unavailable = True  # the API answers 503: it cannot say
    before = standin.requests
    code, st, text = status(plan)
    assert code == Exit.STATUS_UNCHECKED
    assert states(st) == {"current": "could not check"}
    assert standin.requests - before == 2  # no retries: one call per key per run
    assert "refused" not in text.lower() and "reset" not in text.lower().replace("no reason to reset", "")
    standin.unavailable = False

    standin.reset()  # the key every backend holds is now refused
    code, st, text = status(plan)
    assert code == Exit.STATUS_REFUSED
    assert states(st) == {"current": "refused"} and "HTTP 401" in st["keys"][0]["detail"]
    assert "REFUSED" in text

    write_env(tmp_path / "store.env", standin.current_key)  # the primary moved on, app did not
    code, st, text = status(plan)
    assert code == Exit.STATUS_REFUSED  # app's key is refused: worse than the drift
    assert st["drift"] == ["app"]
    assert states(st) == {"current": "works", "other": "refused"}
    write_env(tmp_path / "app.env", key)
    standin.unavailable = True
    code, st, _ = status(plan)
    assert code == Exit.DRIFT  # drift is known; the keys could not be checked
    assert set(states(st).values()) == {"could not check"}
    assert not find(json.dumps(st) + text, [key, standin.current_key], "status output")


def test_single_app_api_down(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: connection refused
    plan = single_plan(tmp_path, f"http://127.0.0.1:{port}/v2/decisioning/models", "sk_test_" + "a" * 40)
    code, st, text = status(plan)
    assert code == Exit.STATUS_UNCHECKED
    assert states(st) == {"current": "could not check"}
    assert "could not check" in text and "DOES NOT WORK" not in text


def test_a_backend_that_cannot_be_read_is_could_not_check(standin: AdjutorStandIn, tmp_path: Path) -> None:
    plan = single_plan(tmp_path, standin.models_url, standin.current_key)
    (tmp_path / "app.env").chmod(0o000)
    (tmp_path / "app.env").unlink()
    (tmp_path / "app.env").mkdir()  # a directory where the file should be: unreadable
    code, st, text = status(plan)
    assert code == Exit.STATUS_UNCHECKED
    app = next(b for b in st["backends"] if b["name"] == "app")
    assert app["error"] and app["drift"] is None
    assert "could not read" in text


def test_lock_holder_and_last_rotation_are_shown(standin: AdjutorStandIn, tmp_path: Path) -> None:
    from rotator.journal import Journal

    plan = single_plan(tmp_path, standin.models_url, standin.current_key)
    new = standin.reset()
    r = cli("rotate", str(plan), "--key-stdin", input=new + "\n")
    assert r.returncode == 0, r.stderr
    j = Journal()
    try:
        j.acquire("payments", "20990101-000000-cafe0000")
        code, st, text = status(plan)
    finally:
        j.release("payments", "20990101-000000-cafe0000")
        j.close()
    assert code == Exit.DONE
    assert st["lock"]["holder"] == "20990101-000000-cafe0000" and "lock: held by 20990101-000000-cafe0000" in text
    assert st["last_rotation"]["kind"] == "rotate" and st["last_rotation"]["state"] == "done"
    assert st["keys"][0]["age_seconds"] is not None and st["keys"][0]["age_seconds"] < 120


# -- alternating ----------------------------------------------------------------------------------


@pytest.fixture
def two_apps() -> Any:
    with AdjutorStandIn(app=BLUE) as s:
        s.add_app(GREEN)
        yield s


def alternating_plan(tmp: Path, url: str, key: str) -> Path:
    write_env(tmp / "store.env", key)
    write_env(tmp / "app.env", key)
    data = plans.plan(
        "payments",
        probe=plans.adjutor_probe(url),
        backends=[plans.envfile("store", tmp / "store.env", primary=True), plans.envfile("app", tmp / "app.env")],
        strategy="alternating",
        apps=[BLUE, GREEN],
    )
    return plans.write_plan(tmp / "plan.toml", data)


def test_alternating_up_refused_each_unavailable_down(two_apps: AdjutorStandIn, tmp_path: Path) -> None:
    api = two_apps
    plan = alternating_plan(tmp_path, api.models_url, api.key_of(BLUE))
    green = api.reset(GREEN)
    r = cli("rekey", str(plan), "--key-stdin", input=green + "\n")
    assert r.returncode == 0, r.stderr

    code, st, text = status(plan)
    assert code == Exit.DONE, text
    assert states(st) == {"active": "works", "standby": "works"}
    assert st["active"]["works"] is True and st["standby"]["state"] == "works"
    assert (st["active"]["app"], st["standby"]["app"]) == (BLUE, GREEN)
    assert st["next"].startswith("promote") and st["probe_calls"] == 2

    api.unavailable = True  # both keys in fact valid; the API cannot say
    code, st, text = status(plan)
    assert code == Exit.STATUS_UNCHECKED
    assert states(st) == {"active": "could not check", "standby": "could not check"}
    assert st["active"]["works"] is None and st["standby"]["works"] is None
    assert "DOES NOT WORK" not in text and "rotator rekey" not in text and st["notes"] == []
    assert "could not be checked" in st["next"]
    api.unavailable = False

    api.reset(GREEN)  # the standby's key refused
    code, st, text = status(plan)
    assert code == Exit.STATUS_REFUSED
    assert states(st) == {"active": "works", "standby": "refused"}
    assert any("rotator rekey" in n for n in st["notes"])  # the API said no: re-keying it is the fix

    api.reset(BLUE)  # the active key refused too
    code, st, text = status(plan)
    assert code == Exit.STATUS_REFUSED
    assert states(st) == {"active": "refused", "standby": "refused"}


def test_alternating_active_refused_standby_works(two_apps: AdjutorStandIn, tmp_path: Path) -> None:
    api = two_apps
    plan = alternating_plan(tmp_path, api.models_url, api.key_of(BLUE))
    r = cli("rekey", str(plan), "--key-stdin", input=api.reset(GREEN) + "\n")
    assert r.returncode == 0, r.stderr
    api.reset(BLUE)
    code, st, _ = status(plan)
    assert code == Exit.STATUS_REFUSED
    assert states(st) == {"active": "refused", "standby": "works"}


def test_alternating_api_down(two_apps: AdjutorStandIn, tmp_path: Path) -> None:
    api = two_apps
    plan = alternating_plan(tmp_path, api.models_url, api.key_of(BLUE))
    r = cli("rekey", str(plan), "--key-stdin", input=api.reset(GREEN) + "\n")
    assert r.returncode == 0, r.stderr
    api.stop()
    code, st, text = status(plan)
    assert code == Exit.STATUS_UNCHECKED
    assert states(st) == {"active": "could not check", "standby": "could not check"}
    assert "DOES NOT WORK" not in text and "rotator rekey" not in text
