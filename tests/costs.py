"""Where the suite's time goes: each test's wall time and the CPU it used, its processes included.

    ROTATOR_TEST_COSTS=/tmp/costs.jsonl python -m pytest -q     # records one JSON line per test
    python -m tests.costs /tmp/costs.jsonl                      # the summary

A test's CPU is its worker's own (every thread: in-process servers too) plus that of the
processes it started and waited for (the CLI, `rotator serve`, PostgreSQL, Chromium and what
they started in turn, and the commands run through `tests.forkserver`), from setup to teardown.  Wall time minus CPU is waiting: sleeps,
pauses, timeouts, I/O.  On a busy machine the wall times grow and the CPU times barely do,
so the CPU total divided by the cores is what the suite needs at the least, and the wall
total beyond it is waiting that more workers than cores can overlap (`-n 4`).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import forkserver

ENV = "ROTATOR_TEST_COSTS"


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system + forkserver.cpu()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    out = os.environ.get(ENV)
    if not out:
        return (yield)
    wall, cpu = time.monotonic(), _cpu()
    try:
        return (yield)
    finally:
        line = {
            "test": item.nodeid,
            "wall": round(time.monotonic() - wall, 3),
            "cpu": round(_cpu() - cpu, 3),
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "tier": next((m.name for m in item.iter_markers() if m.name in ("unit", "process", "browser", "lint")), ""),
        }
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def summary(rows: list[dict[str, Any]], top: int = 25) -> str:
    """Totals per tier, per worker and per file, and the tests that cost most."""
    cores = os.cpu_count() or 1
    wall = sum(r["wall"] for r in rows)
    cpu = sum(r["cpu"] for r in rows)
    lines = [
        f"{len(rows)} tests: {wall:.0f} test-seconds of wall time, {cpu:.0f} s of CPU "
        f"({cpu / cores:.0f} s on {cores} cores at the least); waiting {wall - cpu:.0f} s",
    ]
    for key in ("tier", "worker"):
        by: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
        for r in rows:
            acc = by[r.get(key, "")]
            acc[0] += r["wall"]
            acc[1] += r["cpu"]
            acc[2] += 1
        lines.append(
            f"by {key}: "
            + "; ".join(f"{k} {v[2]:.0f} tests {v[0]:.0f} s wall {v[1]:.0f} s CPU" for k, v in sorted(by.items()))
        )
    files: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        acc = files[r["test"].split("::")[0]]
        acc[0] += r["wall"]
        acc[1] += r["cpu"]
    lines.append("files by wall time (wall s, CPU s):")
    for name, (w, c) in sorted(files.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"  {w:7.1f} {c:7.1f}  {name}")
    lines.append("tests by wall time (wall s, CPU s):")
    for r in sorted(rows, key=lambda r: -r["wall"])[:top]:
        lines.append(f"  {r['wall']:7.1f} {r['cpu']:7.1f}  {r['test']}")
    lines.append("tests by waiting, wall minus CPU (s):")
    for r in sorted(rows, key=lambda r: r["cpu"] - r["wall"])[:top]:
        lines.append(f"  {r['wall'] - r['cpu']:7.1f}  {r['test']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.costs", description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help=f"the JSON lines a run wrote ({ENV}=FILE)")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    with open(args.file, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    print(summary(rows, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
