"""Clipboard change -> key received, on a real X server: ``python -m benchmarks.clipboard``.

Starts Xvfb, arms a `ClipboardSource` (xclip; XFIXES notifications, then the
50 ms poll), then N times copies
a fresh key with xclip and times how long until `next_key` returns it; also the
CPU the watch costs while idle.  Issue 12's goal is <= 60 ms at p99.  Not part
of the test suite: nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import time
from typing import Any

from rotator.clipboard import ClipboardSource
from rotator.testing.adjutor import new_key
from rotator.testing.xserver import XServer, xvfb


def _cpu() -> tuple[float, float]:
    me, ch = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, ch.ru_utime + ch.ru_stime


async def run(x: XServer, n: int, idle: float, native: bool) -> dict[str, Any]:
    async with ClipboardSource(current=None, env=x.env, native=native) as clip:
        how = clip.describe()
        cpu0, wall0 = _cpu(), time.perf_counter()
        taking = asyncio.create_task(clip.next_key())
        await asyncio.sleep(idle)  # the watch polling an unchanged clipboard
        idle_cpu, idle_wall = _cpu(), time.perf_counter() - wall0
        lat: list[float] = []  # from the copy's start (xclip -i spawned)
        after_copy: list[float] = []  # from xclip -i having returned
        for i in range(n):
            key = new_key()
            if i:
                taking = asyncio.create_task(clip.next_key())
            await asyncio.sleep(0.013 * (i % 4))  # land the copy at different points of the 50 ms tick
            start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                "xclip",
                "-i",
                "-selection",
                "clipboard",
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=x.env,
            )
            await proc.communicate(key.encode())  # returns once xclip owns the selection
            copied = time.perf_counter()
            got = await taking
            lat.append(time.perf_counter() - start)
            after_copy.append(time.perf_counter() - copied)
            assert got.reveal() == key
    lat.sort()
    after_copy.sort()
    return {
        "how": how,
        "after_copy_p50_ms": statistics.median(after_copy) * 1000,
        "after_copy_p99_ms": after_copy[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "n": n,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "max_ms": lat[-1] * 1000,
        "idle_cpu_self_pct": (idle_cpu[0] - cpu0[0]) / idle_wall * 100,
        "idle_cpu_tool_pct": (idle_cpu[1] - cpu0[1]) / idle_wall * 100,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clipboard")
    parser.add_argument("-n", type=int, default=200, help="copies to time")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle watching to measure CPU over")
    args = parser.parse_args()
    with xvfb() as x:
        results = [asyncio.run(run(x, args.n, args.idle, native)) for native in (True, False)]
    for r in results:
        print(
            f"clipboard change -> key received over {r['n']} copies, {r['how']}:"
            f" p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms"
            f" (after xclip -i returned: p50 {r['after_copy_p50_ms']:.1f}, p99 {r['after_copy_p99_ms']:.1f} ms);"
            f" idle watch: rotator {r['idle_cpu_self_pct']:.1f}% + xclip {r['idle_cpu_tool_pct']:.1f}% of one core"
        )


if __name__ == "__main__":
    main()
