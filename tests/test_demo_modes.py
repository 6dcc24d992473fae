"""`rotator demo` as the README runs it: the single-app flow and the alternating flows side by
side, each consumer a real process counting its own failed calls, at a 2 s operator pause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.timing import scaled

REPO = Path(__file__).resolve().parents[1]


def test_demo_alternating_fails_no_call_and_single_app_does_at_a_2s_pause() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rotator", "demo", "--json", "--pause", "2"],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["pause_s"] == 2.0
    rows = {(r["mode"], r["flow"]): r for r in data["rows"]}
    assert set(rows) == {("single", "reset"), ("alternating", "planned"), ("alternating", "incident")}
    for flow in ("planned", "incident"):
        alt = rows[("alternating", flow)]
        assert alt["exit_code"] == 0 and alt["pause_s"] == 2.0
        assert alt["failed_calls"] == {"api": 0, "worker": 0}, alt
        assert alt["outage_seconds"] == {"api": 0.0, "worker": 0.0}
        assert alt["window_s"] is not None and alt["window_s"] < scaled(2.0)  # the promote's, not the operator's
        assert alt["report"]["alternating"]["rekeys"][-1]["previous_revoked"] is True  # the reset app's old key is dead
    incident = rows[("alternating", "incident")]["report"]["alternating"]["incident"]
    # The leaked key is out of use (promoted away) before the operator even resets it: the
    # operator's 2 s pause lies between the promote and the proof of revocation.
    assert 0 < incident["leaked_in_use_s"] < scaled(2.0), incident
    assert incident["leaked_in_use_s"] + 2.0 <= incident["revoked_after_s"], incident
    single = rows[("single", "reset")]
    assert single["exit_code"] == 0
    # The worker calls every 20 ms with no helper: a 2 s pause between the reset and the paste
    # is ~100 failed calls (a consumer on the hold-and-retry helper may hold its calls instead).
    assert single["failed_calls"]["worker"] >= 20, single
    assert single["outage_seconds"]["worker"] >= 2.0, single
    # The table is on stderr, with the comparison under it; no key anywhere (fingerprints only).
    assert "the consumers' view" in proc.stderr and "0 failed calls, whatever the operator's speed" in proc.stderr
    assert "sk_test_" not in proc.stdout + proc.stderr
