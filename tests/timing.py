"""Time in tests on a busy machine: one scale factor for the deadlines a test checks, and waits
for a condition instead of fixed sleeps.

``ROTATOR_TEST_TIME_SCALE`` (a number, e.g. ``3``) multiplies every deadline that is part of
what a test checks (a backend's timeout, a rotation's deadline) and every wait's limit.  Unset,
it is the load per core (1-minute load average / cores) or the suite's own workers per core,
whichever is more, from 1 to 5: a test must not fail because other work holds the CPU.
Only deadlines go through it, never what a test asserts about the code's own timing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

ENV = "ROTATOR_TEST_TIME_SCALE"


def _default() -> float:
    """The load per core, or the suite's own workers per core (2 under `-n auto`, before the
    load average, a minute behind, shows them): whichever is more, from 1 to 5."""
    cores = os.cpu_count() or 1
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    try:
        per_core = os.getloadavg()[0] / cores
    except OSError:  # no load average on this platform
        per_core = 1.0
    return min(5.0, max(1.0, per_core, workers / cores))


def _scale() -> float:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return _default()
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r}: must be a number such as 2 (or unset)") from None
    if value < 1:
        raise ValueError(f"{ENV}={raw!r}: must be 1 or more (it only ever lengthens deadlines)")
    return value


SCALE = _scale()  # taken once per test process, so every deadline in a run has the same factor


def scaled(seconds: float) -> float:
    """`seconds` of a deadline, lengthened by the run's factor."""
    return seconds * SCALE


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 10.0, every: float = 0.01) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `scaled(timeout)`."""
    until = time.monotonic() + scaled(timeout)
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > until:
            raise AssertionError(f"timed out after {scaled(timeout):.1f} s waiting for {what}")
        time.sleep(every)


async def until(what: str, probe: Callable[[], T | None], timeout: float = 10.0, every: float = 0.005) -> T:
    """`wait_until` on an event loop: polls without blocking the loop."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {scaled(timeout):.1f} s waiting for {what}")
        await asyncio.sleep(every)
