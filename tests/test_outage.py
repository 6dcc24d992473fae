"""Issue 12 end to end: a real `rotator rotate --key-from clipboard` process under a
real X server (Xvfb + xclip), the Adjutor stand-in over HTTP, real files and a real
reload command.

The operator's clipboard gets a URL, a sentence and the current key (ignored: never
offered, so never counted as refused pastes), then a wrong key (probed, refused,
reported; watching goes on); the app key is reset (rotator sees the old key refused
and says so at once), and the new key is copied: taken, probed, written.  The
report's outage is the operator's share plus the window; the journal, `rotator
show` and the timeline carry it; the clipboard is cleared only if it still holds
the key; the key reaches no file, log or output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from rotator.journal import Journal
from rotator.secret import fingerprint
from rotator.testing import plans
from rotator.testing.adjutor import AdjutorStandIn, new_key
from tests.leakcheck import cli, find, rotator_env, scan_journal, scan_tree, start, wait_for
from tests.xserver import XServer, xserver_fixture

xserver = pytest.fixture(scope="module")(xserver_fixture)

RELOAD = """
import os, pathlib, subprocess, sys
root = pathlib.Path(__file__).parent
(root / "reloaded").write_text(os.environ["ROTATOR_FINGERPRINT"])
if (root / "copy-on-reload").exists():
    # The operator copies something of their own while the rotation runs: not ours to clear.
    # (A command consumer gets a minimal environment: the display is in the flag file.)
    display = (root / "copy-on-reload").read_text()
    subprocess.run(["xclip", "-i", "-selection", "clipboard"], input=b"meeting notes",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env={"DISPLAY": display, "PATH": "/usr/bin:/bin"})
"""


def setup_plan(tmp: Path, standin: AdjutorStandIn) -> Path:
    key = standin.current_key
    (tmp / "app").mkdir()
    (tmp / "store.env").write_text(f"ADJUTOR_API_KEY={key}\n")
    (tmp / "app" / ".env").write_text(f"PORT=8080\nADJUTOR_API_KEY={key}\n")
    (tmp / "reload.py").write_text(RELOAD)
    data = plans.plan(
        "outage-e2e",
        probe=plans.adjutor_probe(standin.models_url, check_old_key=True, retries=0, watch_interval=0.2),
        backends=[plans.envfile("store", tmp / "store.env", primary=True), plans.envfile("app", tmp / "app/.env")],
        consumers=[plans.command("reloader", [sys.executable, tmp / "reload.py"], retries=0)],
    )
    return plans.write_plan(tmp / "plan.toml", data)


def assert_outage(report: dict[str, Any], err: str) -> None:
    """Issue 24: a reset seen by the watch gives outage = operator's share + window; one not seen
    before the key arrived is a bound (never outage = window): at least the window, at most the
    window plus the time since the watch's last pass."""
    reset = report["reset"]
    if reset["inferred"]:
        assert report["outage_seconds"] is None and report["operator_seconds"] is None and reset["bound"] is True
        bound = report["outage_bound"]
        assert bound["at_least"] == pytest.approx(report["window_seconds"], abs=2e-4)
        assert bound["at_most"] is None or bound["at_most"] > bound["at_least"]
        assert "outage: at least" in err and "a bound" in err
    else:
        assert report["outage_seconds"] == pytest.approx(
            report["operator_seconds"] + report["window_seconds"], abs=2e-4
        )
        assert report["outage_seconds"] >= report["window_seconds"] > 0


def test_clipboard_key_after_a_detected_reset(xserver: XServer, standin: AdjutorStandIn, tmp_path: Path) -> None:
    plan = setup_plan(tmp_path, standin)
    old = standin.current_key
    wrong = new_key()
    env = rotator_env(**{k: v for k, v in xserver.env.items() if k == "DISPLAY"})
    env.pop("WAYLAND_DISPLAY", None)
    run = start("rotate", str(plan), "--key-from", "clipboard", "--json", logs=tmp_path / "logs", env=env)
    try:
        wait_for("the clipboard watched", lambda: "watching the clipboard" in run.err, proc=run)
        for value in ("https://app.adjutor.io/business/apps/1", "Reset the key after the standup, please", old):
            xserver.copy(value)
        xserver.copy(wrong)  # shaped like a key: probed, refused, watching goes on
        wait_for("the wrong key refused", lambda: "refused this key" in run.err, proc=run)
        new = standin.reset()
        wait_for("the reset seen", lambda: "the old key stopped working" in run.err, proc=run)
        xserver.copy(new)
        assert run.wait(60) == 0, run.err
    finally:
        if run.proc.poll() is None:
            run.kill()
    out, err = run.out, run.err
    report = json.loads(out)
    assert report["state"] == "done"
    assert report["new_fingerprint"] == fingerprint(new)
    # Only the wrong key was a refused paste: the URL, the sentence and the current key were never offered.
    assert [(r["outcome"], r["attempt"]) for r in report["refused_keys"]] == [("refused", 1)]
    assert "HTTP 401" in report["refused_keys"][0]["why"]
    reset = report["reset"]
    assert reset is not None and reset["inferred"] is False
    assert reset["after"] is not None and reset["after"] < reset["at"]
    assert report["refused_keys"][0]["after_reset"] < 0  # the wrong paste came before the reset
    # The outage is the operator's share plus the window, and began at the reset.
    assert report["outage_seconds"] == pytest.approx(report["operator_seconds"] + report["window_seconds"], abs=2e-4)
    assert report["operator_seconds"] == pytest.approx(report["key_received_at"] - reset["at"], abs=0.01)
    assert 0 < report["window_seconds"] < report["outage_seconds"]
    # The window ran from the accepted key: the refused paste before it is not in any target's start.
    assert all(0 <= t["started"] <= report["window_seconds"] for t in report["targets"])
    assert {tuple(t["phases"]) for t in report["targets"]} == {("write", "read_back"), ("signal",)}
    assert "outage:" in err and "operator's share" in err and "refused pastes: 1" in err
    assert "R reset seen" in err and "K key received" in err  # the timeline after the report
    assert "clipboard cleared" in err
    assert xserver.paste() in ("", None)  # it still held the key: cleared
    assert (tmp_path / "app/.env").read_text().endswith(f"ADJUTOR_API_KEY={new}\n")
    assert (tmp_path / "reloaded").read_text() == fingerprint(new)

    row = Journal().get(report["id"])
    assert row is not None and row.refused_keys == 1
    assert row.outage_s == pytest.approx(report["outage_seconds"], abs=1e-3)
    assert row.reset_at == pytest.approx(reset["at"])
    shown = cli("show", report["id"], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "outage:" in shown.stdout and "R reset seen" in shown.stdout

    canaries = [new, wrong]
    assert find("\n".join([out, err, shown.stdout, shown.stderr]), canaries, "output") == []
    assert scan_journal(canaries) == []
    allowed = [tmp_path / "store.env", tmp_path / "app/.env"]
    assert scan_tree(tmp_path, canaries, allowed=allowed) == []


def test_a_clipboard_the_operator_changed_is_left_alone(
    xserver: XServer, standin: AdjutorStandIn, tmp_path: Path
) -> None:
    plan = setup_plan(tmp_path, standin)
    (tmp_path / "copy-on-reload").write_text(xserver.display)
    env = rotator_env(DISPLAY=xserver.display)
    env.pop("WAYLAND_DISPLAY", None)
    run = start("rotate", str(plan), "--key-from", "clipboard", "--json", logs=tmp_path / "logs", env=env)
    try:
        wait_for("the clipboard watched", lambda: "watching the clipboard" in run.err, proc=run)
        new = standin.reset()
        xserver.copy(new)  # at once, like the dashboard: the watch has not seen the reset yet
        assert run.wait(60) == 0, run.err
    finally:
        if run.proc.poll() is None:
            run.kill()
    report = json.loads(run.out)
    assert report["state"] == "done" and report["refused_keys"] == []
    # Seen or not by the watch, the reset is known: at the latest when the key arrived.
    assert report["reset"] is not None
    assert report["reset"]["at"] <= report["key_received_at"]
    assert_outage(report, run.err)
    assert "clipboard cleared" not in run.err
    assert xserver.paste() == "meeting notes"
    assert find(run.out + run.err, [new], "output") == []


def test_old_key_still_working_is_said_plainly(standin: AdjutorStandIn, tmp_path: Path) -> None:
    """Another app's key pasted while this app was not reset: the old key still works when
    the new one arrives, and the report says so instead of an outage."""
    plan = setup_plan(tmp_path, standin)
    other = standin.add_app("Staging")
    r = cli("rotate", str(plan), "--key-stdin", "--json", input=other + "\n")
    report = json.loads(r.stdout)
    assert report["reset"] is None and report["outage_seconds"] is None
    assert any("the old key still worked when the new key arrived" in w for w in report["warnings"]), report
    assert "another app" in r.stderr
    assert report["watch"]["outcome"] == "stopped"  # the key came at once (stdin): the last look said it


def test_a_version_1_journal_gains_the_outage_columns(tmp_path: Path) -> None:
    """A journal written before the outage columns: migrated in place, its rows kept (no outage)."""
    import sqlalchemy as sa

    from rotator.journal.schema import _V2_COLUMNS, SCHEMA_VERSION, rotations

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    old = sa.MetaData()
    sa.Table("rotations", old, *(c._copy() for c in rotations.columns if c.name not in _V2_COLUMNS))
    sa.Table(
        "schema_version",
        old,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("applied_at", sa.Float, nullable=False),
    )
    old.create_all(engine)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO schema_version VALUES (1, 'rotations, events, locks, job_runs', 0)"))
        c.execute(
            sa.text(
                "INSERT INTO rotations (id, kind, plan, plan_path, reason, operator, state, created_at, window_s)"
                " VALUES ('r1', 'rotate', 'p', '/p.toml', '', 'me', 'done', 1.0, 0.05)"
            )
        )
    engine.dispose()
    journal = Journal(url)
    assert journal.schema_version == SCHEMA_VERSION == 2
    row = journal.get("r1")
    assert row is not None and row.window_s == 0.05 and row.outage_s is None and row.refused_keys is None
    journal.update("r1", outage_s=1.5, operator_s=1.45, reset_at=0.5, refused_keys=2)
    row = journal.get("r1")
    assert row is not None and (row.outage_s, row.refused_keys) == (1.5, 2)
    journal.close()
    assert Journal(url).schema_version == 2  # opening again finds nothing to do


def test_the_timeline_fits_the_width_and_reads_without_colour() -> None:
    from rotator.timeline import build, render_svg, render_text

    report = {
        "window_seconds": 0.03,
        "key_received_at": 100.0,
        "reset": {"at": 99.5},
        "refused_keys": [{"at": 99.9}],
        "steps": {"probe": 0.003},
        "targets": [
            {
                "name": "store",
                "kind": "backend",
                "primary": True,
                "status": "ok",
                "started": 0.004,
                "finished": 0.01,
                "phases": {"write": [0.004, 0.008], "read_back": [0.008, 0.01]},
            },
            {
                "name": "a-consumer-with-a-very-long-name-indeed",
                "kind": "consumer",
                "status": "unconfirmed",
                "started": 0.012,
                "finished": 0.03,
                "phases": {"signal": [0.012, 0.02], "confirm": [0.02, 0.03]},
            },
        ],
    }
    tl = build(report)
    assert tl is not None and tl.broken  # 0.5 s before the key, 30 ms after: the axis is broken at the key
    for width in (40, 80, 200):
        lines = render_text(tl, width)
        assert all(len(line) <= width for line in lines), (width, lines)
    text = "\n".join(render_text(tl, 100))
    assert "R reset seen -500 ms" in text and "x refused paste -100 ms" in text and "E window's end 30 ms" in text
    assert "✗" in text  # the unconfirmed consumer, marked without colour
    row = next(line for line in text.splitlines() if line.startswith("store"))
    assert "w" in row and "r" in row
    svg = render_svg(tl)
    assert svg.startswith("<svg") and 'stroke-dasharray="4 2"' in svg and "key received" in svg
    assert build({"targets": [], "window_seconds": None}) is None
