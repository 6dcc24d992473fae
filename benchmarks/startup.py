"""Start-up cost of the `rotator` command: `python -m benchmarks.startup [--runs N]`.

Wall time of `rotator --version`, `rotator --help` and `rotator check
config/adjutor.example.toml`, each in a fresh process, as medians over N runs and
as a ratio to `python -c pass` measured in the same run (so a loaded machine
shows in both).  Goals (issue 10): --version <= 0.25 s, check <= 0.6 s.
Not a test: nothing is asserted.  `-X importtime` shows where the rest goes.

Measured 1 Dec 2026 on this machine (2 cores shared by 8 busy sessions, load 4-9:
read the ratios, the seconds are inflated).  Before: `check` imported hvac and
requests, boto3 and botocore (the plugins' module tops) and structlog (`rotator.logs`,
and `rotator.notify.send` through `rotator.notify`).  After: the SDKs load in the
plugins' `open()` (arm), structlog on the first `get_logger`; `check` keeps pydantic,
httpx (the webhook and signal consumers validate URLs with `httpx.URL`), re2 and
apscheduler (cron), which validating a plan uses.

| command | before: wall median, x python -c pass | after: wall median, x python -c pass |
|---|---|---|
| python -c pass | 0.051 s | 0.098 s |
| rotator --version | 0.109 s, 2.1 | 0.388 s, 4.0 |
| rotator --help | 0.100 s, 1.9 | 0.247 s, 2.5 |
| rotator check config/adjutor.example.toml | 1.452 s, 28.2 | 1.929 s, 19.7 |

The two columns ran at different loads; run interleaved (before, after, before, ...,
11 rounds, the old tree on PYTHONPATH) `check` was 28.6 -> 19.7 x python -c pass,
and its CPU time (user + sys, 9 rounds) 1.08 -> 0.69 s median: -36 %, so the 0.78 s
of a quiet machine becomes about 0.50 s (goal 0.6 s).  `--version` and `--help` do
not change (interleaved, `--version` was 3.7 and 4.9 x before, 4.2 and 3.8 x after).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"--version": 0.25, "check": 0.6}


def rotator() -> list[str]:
    script = Path(sys.executable).with_name("rotator")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rotator"]


def wall(argv: list[str], runs: int) -> float:
    times = []
    env = {**os.environ, "ROTATOR_DATA_DIR": str(ROOT / ".startup-bench-state")}
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    base = wall([sys.executable, "-c", "pass"], args.runs)
    cases = {
        "--version": [*rotator(), "--version"],
        "--help": [*rotator(), "--help"],
        "check": [*rotator(), "check", "config/adjutor.example.toml"],
    }
    print(f"python -c pass: {base:.3f} s (median of {args.runs})\n")
    print("| command | wall median | x python -c pass | goal | met |")
    print("|---|---|---|---|---|")
    for name, argv in cases.items():
        t = wall(argv, args.runs)
        goal = GOALS.get(name)
        met = "" if goal is None else ("yes" if t <= goal else "**no**")
        shown = " ".join(argv[len(rotator()) :])
        print(f"| rotator {shown} | {t:.3f} s | {t / base:.1f} | {'' if goal is None else f'<= {goal} s'} | {met} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
