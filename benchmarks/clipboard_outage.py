"""Rotator's reported outage beside the one a consumer measures: ``python -m benchmarks.clipboard_outage``.

Issue 24.  Real parts only: the Adjutor stand-in, Xvfb + xclip, a consumer process
(`rotator.demo.consumer_app`: calls the API every 5 ms with the key in its env file,
reloads on a signed webhook, and times its own outage: first failed call -> first
call that worked again), and `rotator rotate --key-from clipboard` as a process.
Each run: rotator arms and watches the clipboard; the "operator" resets the key
(the stand-in's admin reset, as the dashboard's button does) and copies the new key
with xclip `pause` seconds later (0 to 1 s: the dashboard copies it itself, at once); rotator
takes it, writes it, the webhook reloads the consumer.

Printed per run: the consumer's outage, rotator's `outage_seconds` or its
`outage_bound` (at least / at most), and whether the consumer's figure is within
50 ms of rotator's figure or inside its bound.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from rotator.testing import plans
from rotator.testing.adjutor import AdjutorStandIn
from rotator.testing.xserver import xvfb

HOOK_ENV = "BENCH_HOOK_KEY"
TOLERANCE = 0.05


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _wait(cond: Any, what: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out: {what}")
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=12)
    ap.add_argument("--watch-interval", type=float, default=0.5)
    args = ap.parse_args(argv)
    pauses = [0.0, 0.05, 0.1, 0.3, 0.6, 1.0]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d, AdjutorStandIn() as api, xvfb() as x:
        tmp = Path(d)
        env = {**x.env, HOOK_ENV: "bench-hook-secret", "PYTHONUNBUFFERED": "1", "ROTATOR_DATA_DIR": str(tmp / "state")}
        for name in ("store.env", "app.env"):
            (tmp / name).write_text(f"ADJUTOR_API_KEY={api.current_key}\n")
            (tmp / name).chmod(0o600)
        consumer = subprocess.Popen(
            [sys.executable, "-m", "rotator.demo.consumer_app", "--env-file", str(tmp / "app.env"), "--api", api.url,
             "--hmac-key-env", HOOK_ENV, "--ready-file", str(tmp / "consumer.json"), "--interval", "0.005"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait(lambda: (tmp / "consumer.json").exists(), "the consumer")
            curl = json.loads((tmp / "consumer.json").read_text())["url"]
            data = plans.plan(
                "bench",
                probe=plans.adjutor_probe(api.models_url, watch_interval=args.watch_interval),
                backends=[
                    plans.envfile("store", tmp / "store.env", primary=True),
                    plans.envfile("app", tmp / "app.env"),
                ],
                consumers=[
                    plans.webhook(
                        "service", f"{curl}/reload", hmac_env=HOOK_ENV, confirm_url=f"{curl}/fingerprint",
                        reads_from=["app"],
                    )
                ],
            )  # fmt: skip
            plan = plans.write_plan(tmp / "plan.toml", data)
            for i in range(args.n):
                pause = pauses[i % len(pauses)]
                rows.append(_one(plan, env, api, x, curl, pause, tmp / f"run{i}.err"))
                r = rows[-1]
                print(json.dumps(r), flush=True)
        finally:
            consumer.terminate()
            consumer.wait(10)
    _table(rows)
    return 0


def _one(plan: Path, env: dict[str, str], api: AdjutorStandIn, x: Any, curl: str, pause: float, errf: Path) -> Any:
    before = _get(f"{curl}/stats")["outages"]
    with errf.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rotator", "rotate", str(plan), "--key-from", "clipboard", "--json"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
        )  # fmt: skip
        try:
            _wait(lambda: "watching the clipboard" in errf.read_text(), "rotator armed", 60)
        except RuntimeError:
            proc.kill()
            raise RuntimeError(errf.read_text()[-2000:]) from None
        time.sleep(1.2)  # the watch sees the old key pass (more than two intervals)
        new = api.reset()
        time.sleep(pause)
        x.copy(new)
        out, _ = proc.communicate(timeout=60)
    report = json.loads(out)
    _wait(lambda: _get(f"{curl}/stats")["outages"] > before and not _get(f"{curl}/stats")["in_outage"], "recovery")
    st = _get(f"{curl}/stats")
    seen = st["outage_seconds"]
    bound = report.get("outage_bound")
    rot = report.get("outage_seconds")
    if rot is not None:
        ok = abs(seen - rot) <= TOLERANCE or (
            bound is not None and bound["at_least"] - TOLERANCE <= seen <= (bound["at_most"] or 1e9) + TOLERANCE
        )
    elif bound is not None:
        ok = bound["at_least"] <= seen + TOLERANCE and (
            bound["at_most"] is None or seen <= bound["at_most"] + TOLERANCE
        )
    else:
        ok = False
    return {
        "pause": pause,
        "state": report["state"],
        "consumer_outage": round(seen, 4),
        "rotator_outage": rot,
        "at_least": bound["at_least"] if bound else None,
        "at_most": bound["at_most"] if bound else None,
        "reset_seen_by_watch": not (report.get("reset") or {}).get("inferred", True),
        "window": report.get("window_seconds"),
        "consistent": ok,
    }


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def _table(rows: list[dict[str, Any]]) -> None:
    print("\n| # | copy after reset | consumer's outage (ms) | rotator's outage (ms) | bound: at least / at most (ms) "
          "| reset seen by watch | window (ms) | consistent |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows, 1):
        print(
            f"| {i} | {r['pause'] * 1000:.0f} ms | {_ms(r['consumer_outage'])} | {_ms(r['rotator_outage'])} | "
            f"{_ms(r['at_least'])} / {_ms(r['at_most'])} | {'yes' if r['reset_seen_by_watch'] else 'no'} | "
            f"{_ms(r['window'])} | {'yes' if r['consistent'] else 'NO'} |"
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
