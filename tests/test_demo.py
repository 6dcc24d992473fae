"""`rotator demo` as a new user runs it: real processes (the Adjutor stand-in, two
consumers), a real rotation through the armed session.  The consumer with the
hold-and-retry helper fails no call across the reset; the one without fails its
calls; the report has the detected reset and the outage beside the window."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_demo_reports_the_outage_and_the_helpers_zero_failed_calls() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "rotator", "demo", "--mode", "single", "--pause", "0.5", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["state"] == "done"
    assert report["reset"] is not None and report["reset"]["inferred"] is False
    assert report["outage_seconds"] == pytest.approx(report["operator_seconds"] + report["window_seconds"], abs=2e-4)
    assert report["operator_seconds"] > 0.4  # the demo's operator takes 0.5 s after the reset is seen
    assert [r["outcome"] for r in report["refused_keys"]] == ["refused"]  # the typo: not in the window
    helped, plain = report["consumers_seen"]["api"], report["consumers_seen"]["worker"]
    assert helped["failed"] == 0 and helped["hold"]["held"] >= 1 and helped["hold"]["timeouts"] == 0
    assert helped["hold"]["longest_hold"] >= report["operator_seconds"] - 0.15
    assert plain["hold"] is None and plain["failed"] > 0
    # The consumer without the helper failed from the reset to its reload: about the outage rotator reports
    # (the watch sees the reset up to watch_interval late, 0.1 s in the demo).
    assert plain["outage_seconds"] == pytest.approx(report["outage_seconds"], abs=0.25)
    err = r.stderr
    assert "the old key stopped working" in err
    assert "0 failed calls" in err and "calls held, longest hold" in err
    assert "outage:" in err and "R reset seen" in err
