"""Run a command on a busy machine: CPU burners keep the load at a multiple of the cores.

    python -m tests.load                          # the README's test command at 2 x the cores
    python -m tests.load --per-core 3 -- python -m pytest -q -m process

Starts `per-core x cores` busy loops (plain processes at normal priority, as other work on a
shared CI machine would be), runs the command, and prints one line: its exit code, wall
time, and the 1-minute load average seen every 5 s during it (min / median / max).  The
burners are stopped however the command ends.  `stress-ng --cpu N` does the same job where
it is installed; this needs nothing but Python.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

DEFAULT_COMMAND = [sys.executable, "-m", "pytest", "-q"]


def _burn() -> None:
    while True:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-core", type=float, default=2.0, help="burners per core (default 2: load 2 x the cores)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the command (default: python -m pytest -q)")
    args = ap.parse_args(argv)
    command = [c for c in args.command if c != "--"] or DEFAULT_COMMAND
    cores = os.cpu_count() or 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a `kill` stops the burners too (finally below)
    burners = [mp.Process(target=_burn, daemon=True) for _ in range(max(1, round(args.per_core * cores)))]
    for b in burners:
        b.start()
    loads: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(5.0):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample, daemon=True).start()
    started = time.monotonic()
    try:
        code = subprocess.call(command)
    finally:
        done.set()
        for b in burners:
            b.terminate()
        for b in burners:
            b.join(5)
    wall = time.monotonic() - started
    seen = f"{min(loads):.1f} / {statistics.median(loads):.1f} / {max(loads):.1f}" if loads else "not sampled"
    print(
        f"tests.load: {len(burners)} burners on {cores} cores; exit {code}; wall {wall:.0f} s "
        f"({wall / 60:.1f} min); 1-min load average min / median / max {seen}",
        file=sys.stderr,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
