"""`python -m benchmarks.window`: parse the options, start the services, run the cases, write the results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from benchmarks import _latent
from benchmarks._services import AWS_ENV, IDLE_TIMEOUT, VAULT_TOKEN, backends_main, consumers_main
from benchmarks.window.cases import HOOK_ENV, RESULTS, VAULT_ENV, Case, Latency, cases, prepare
from benchmarks.window.child import Child
from benchmarks.window.measure import run_case, run_long_wait, run_plans, run_service
from benchmarks.window.report import render_tables, targets_met

LATENCY = 0.05  # seconds injected per request unless --latency says otherwise
SMOKE_LATENCY = 0.005


def smoke_cases() -> list[Case]:
    """The headline case once: rotator (after one warm-up), the runbook and the parallel floor."""
    headline = next(c for c in cases(quick=True, only=["headline"]))
    return [replace(headline, reps=1, baseline_reps=1, cold_reps=0)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.window", description=__doc__.split("\n\n")[0])
    modes = ap.add_mutually_exclusive_group()
    modes.add_argument("--quick", action="store_true", help="fewer repetitions and one 60 s wait (about 5-9 minutes)")
    modes.add_argument(
        "--smoke",
        action="store_true",
        help="check that the benchmark runs: the headline case once against each comparison, 5 ms latency, "
        "written to smoke.json and smoke.md (seconds, not a measurement)",
    )
    ap.add_argument(
        "--latency", type=float, help=f"seconds added to every request (default {LATENCY}; --smoke: {SMOKE_LATENCY})"
    )
    for name in ("probe", "vault", "aws", "env", "consumer"):
        ap.add_argument(f"--{name}-latency", type=float, help=f"override --latency for {name}")
    ap.add_argument("--reload-delay", type=float, help="seconds a consumer takes to reload (default: --latency)")
    ap.add_argument("--case", action="append", help="run only these cases (headline, fanout-1, fanout-10, ...)")
    ap.add_argument(
        "--wait", type=float, action="append", help="long-wait: seconds between arm and the key (repeatable)"
    )
    ap.add_argument("--out", type=Path, default=RESULTS, help="directory for latest.json and latest.md")
    args = ap.parse_args(argv)
    if args.latency is None:
        args.latency = SMOKE_LATENCY if args.smoke else LATENCY
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"

    def pick(name: str) -> float:
        v = getattr(args, f"{name}_latency")
        return args.latency if v is None else v

    lat = Latency(
        pick("probe"),
        pick("vault"),
        pick("aws"),
        pick("env"),
        pick("consumer"),
        args.latency if args.reload_delay is None else args.reload_delay,
    )
    hook_key = secrets.token_hex(32)
    os.environ.update(AWS_ENV)
    os.environ[HOOK_ENV] = hook_key
    os.environ[VAULT_ENV] = VAULT_TOKEN
    _latent.register()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    root = Path(tempfile.mkdtemp(prefix="rotator-bench-"))
    started = time.perf_counter()
    s1 = Child(backends_main)
    s2 = Child(consumers_main, hook_key.encode())
    log(f"services up (stand-in {s1.ready['probe_url']}, vault {s1.ready['vault_url']}, moto {s1.ready['moto_url']})")
    from rotator.journal import Journal

    journal = Journal(f"sqlite:///{root / 'journal.db'}")
    results: dict[str, Any] = {
        "meta": {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mode": mode,
            "latency": asdict(lat),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "command": "python -m benchmarks.window" + ("" if mode == "full" else f" --{mode}"),
            "idle_timeout": IDLE_TIMEOUT,
        },
        "cases": [],
    }
    try:
        for case in smoke_cases() if args.smoke else cases(args.quick, args.case):
            if args.wait and case.kind == "long-wait":
                case = replace(case, waits=tuple(args.wait))
            setups = prepare(case, lat, s1, s2, root, hook_key.encode())
            if case.kind == "long-wait":
                results["cases"].append(run_long_wait(setups[0], journal, s1, s2, log))
            elif case.kind == "plans":
                results["cases"].append(run_plans(setups, journal, s1, s2, log))
            elif case.kind == "service":
                results["cases"].append(run_service(setups[0], journal, s1, s2, log, root))
            else:
                results["cases"].append(run_case(setups[0], journal, s1, s2, log, journal.url))
    finally:
        journal.close()
        s1.stop()
        s2.stop()
        shutil.rmtree(root, ignore_errors=True)
    results["targets"] = targets_met(results)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "smoke" if args.smoke else "latest"  # a smoke run never replaces the measurement
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    md = render_tables(results)
    (args.out / f"{stem}.md").write_text(md)
    print(md)
    log(f"wrote {args.out / stem}.json and {stem}.md in {results['meta']['seconds']} s")
    return 0
