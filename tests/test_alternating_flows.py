"""Alternating flows that reach what the single-app flow already had (issue 25), end to end:

- the clipboard as the key source of `rotator rekey` on an alternating plan (a real X server,
  xclip; the test plays the operator: it resets the app rotator names and the dashboard's
  copy puts the key on the clipboard), the clipboard cleared afterwards;
- `--incident --revoke-now`: the leaked app's reset is watched while the key is awaited, so the
  report has the outage, the reset time and the operator's share, as a single-app rotation's.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rotator.secret import fingerprint
from tests import forkserver
from tests import leakcheck as lc
from tests.test_alternating import BLUE, GREEN, RESET_LINE, make_world, seeded
from tests.xserver import XServer, xserver_fixture

__all__ = ["make_world"]  # the fixture, re-used


@pytest.fixture(scope="module")
def xserver() -> Iterator[XServer]:
    yield from xserver_fixture()


def test_rekey_takes_the_standby_key_from_the_clipboard_and_clears_it(make_world: Any, xserver: XServer) -> None:
    w = make_world()
    before = w.failed()
    env = {**w.env, "DISPLAY": xserver.display}
    env.pop("WAYLAND_DISPLAY", None)
    xserver.copy("https://example.test/not-a-key")  # what the operator had copied before: ignored
    err_p = w.tmp / "clip-stderr"
    with err_p.open("wb") as e:
        proc = subprocess.Popen(
            [*forkserver.command(), "rekey", str(w.plan), "--key-from", "clipboard", "--json"],
            stdin=subprocess.DEVNULL,  # no terminal: the clipboard alone
            stdout=subprocess.PIPE,
            stderr=e,
            env=env,
        )
    key = None
    try:
        until = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < until:
            text = err_p.read_text(errors="replace")
            if key is None and RESET_LINE.search(text) and "watching the clipboard" in text:
                assert RESET_LINE.findall(text) == [(GREEN, "the standby")], text
                key = w.reset(GREEN)
                xserver.copy(key)  # the dashboard's "Reset app key" copies the new key
            time.sleep(0.02)
        out, _ = proc.communicate(timeout=max(until - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    err = err_p.read_text(errors="replace")
    assert key is not None, err
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["new_fingerprint"] == fingerprint(key)
    assert report["alternating"]["standby"]["fingerprint"] == fingerprint(key)
    assert "clipboard cleared" in err
    assert xserver.paste() in (None, "")
    assert w.failed() == before  # the standby: no consumer uses it
    hits = lc.find(out, w.keys, "stdout") + lc.find(err, w.keys, "stderr") + lc.scan_journal(w.keys)
    assert hits == []


def test_incident_revoke_now_reports_the_outage_reset_time_and_operators_share(make_world: Any) -> None:
    w = make_world()  # no standby: --revoke-now is the single-app flow on the leaked (active) app
    leaked = w.keys[0]
    f = w.rotator("rotate", str(w.plan), "--incident", "--revoke-now", "--key-stdin", "--json", pauses=(0.8,))
    assert f.code == 0, f.err
    assert f.resets == [(BLUE, "the ACTIVE key")]
    r = f.report
    assert r is not None
    assert r["reset"] is not None and r["reset"]["at"] is not None, r
    # The test resets, then pauses 0.8 s before typing: the watch (every 0.2 s) saw the reset before
    # the key came, so the operator's share is measured (how much of the pause depends on the load).
    assert 0 < r["operator_seconds"] < 0.8 + 10, r
    assert r["reset"]["at"] <= r["key_received_at"], r
    assert r["outage_seconds"] >= r["operator_seconds"] + r["window_seconds"] - 0.01, r
    assert r["alternating"]["incident"]["leaked_revoked"] is True
    assert not w.works(leaked)
    w.no_leaks(f)


def test_a_mistaken_reset_reports_its_outage_from_the_reset_the_watch_saw(make_world: Any) -> None:
    w = seeded(make_world)
    # Asked to reset blue (the standby after the promote), the operator resets green (the active app)
    # and takes 1.5 s to paste: the watch saw the reset, so the report measures the outage from it.
    f = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(1.5,), wrong={0: GREEN})
    assert f.code == 0, f.err
    r = f.report
    assert r is not None and r["alternating"]["mistaken_reset"]["app"] == GREEN
    assert r["reset"] is not None and r["reset"]["inferred"] is False, r
    assert 0 < r["operator_seconds"] < 1.5 + 10, r  # the reset was seen during the pause, before the key
    assert r["reset"]["at"] <= r["key_received_at"], r
    assert r["outage_seconds"] >= r["operator_seconds"], r
    assert "outage:" in f.err and "key received → last target done" in f.err
    w.no_leaks(f)


def test_promote_rollback_and_sync_are_labelled_by_what_starts_their_window() -> None:
    """No key is received in a promote, a roll back or a sync: their window and timeline say what
    they count from; a re-key, a mistaken reset and a single-app rotation count from the key."""
    from rotator.notify.message import from_report
    from rotator.report import window_from
    from rotator.timeline import build, render_text

    promoted = {"promote": {"window_s": 0.2}}
    assert window_from("promote") == "promote start"
    assert window_from("rotate", promoted) == "promote start"  # a planned rotation's report is its promote's
    assert window_from("rollback", promoted) == "roll back start"
    assert window_from("sync") == "sync start"
    assert window_from("rekey") == window_from("rotate") == "key received"
    assert window_from("rotate", {**promoted, "mistaken_reset": {"app": BLUE}}) == "key received"
    report = {"id": "r1", "kind": "rollback", "state": "done", "window_seconds": 0.2, "alternating": promoted}
    report |= {"targets": [{"name": "store", "status": "ok", "started": 0.0, "finished": 0.2, "primary": True}]}
    tl = build(report)
    assert tl is not None
    text = "\n".join(render_text(tl))
    assert "K roll back start" in text and "key received" not in text
    facts = {f.label: f.value for f in from_report("payments", report).facts}
    assert facts["Window"].endswith("(roll back start → last target done)")
