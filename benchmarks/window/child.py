"""The benchmark's service processes (`Child`) and the CPU each process spends in a window."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from typing import Any


class Child:
    def __init__(self, target: Any, *args: Any) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        self.ready = self._recv(60)

    def _recv(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise RuntimeError(f"{self.proc.name} did not answer within {timeout:.0f}s")
        reply = self.conn.recv()
        if isinstance(reply, Exception):
            raise reply
        return reply

    def call(self, *msg: Any, timeout: float = 120) -> Any:
        self.conn.send(msg)
        return self._recv(timeout)

    def stop(self) -> None:
        try:
            self.call("stop", timeout=10)
        except (RuntimeError, OSError, EOFError):
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def process_cpu(pid: int) -> float:
    """Seconds of CPU every thread of process `pid` has run (the scheduler's own count,
    /proc/PID/task/*/schedstat, in ns: finer than the 10 ms ticks of /proc/PID/stat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total / 1e9


class WindowCpu:
    """CPU each process spent between `start()` and `stop()`: rotator's (every thread, and its
    event loop's thread alone), the backends' and the consumers'.  All share this machine's
    cores, so their sum over the cores is the least time this machine needs for that work
    (issue 15)."""

    def __init__(self, s1: Child, s2: Child) -> None:
        self.pids: dict[str, int] = {
            "rotator": os.getpid(),
            "backends": s1.proc.pid or 0,
            "consumers": s2.proc.pid or 0,
        }

    def start(self) -> None:
        self._loop = time.thread_time()
        self._at = {k: process_cpu(p) for k, p in self.pids.items()}

    def stop(self) -> dict[str, float]:
        out = {k: process_cpu(p) - self._at[k] for k, p in self.pids.items()}
        out["rotator_loop"] = time.thread_time() - self._loop
        return out
