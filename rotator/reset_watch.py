"""Detect the reset while armed: probe the current key every `watch_interval`.

With one app the old key dies at the dashboard's click, long before a key
reaches rotator; the first refusal of the old key marks when consumers began
failing, so the outage (reset -> last consumer confirmed) can be reported beside
the window.  The reset happened after the last probe the key passed was sent and
before the refusal arrived: `ResetDetected` carries both ends, so the reset is
known to within one interval plus a round trip (0.5 s by default).

The watch spends nothing: it runs only while the probe's answers say it is free
(``meta.cost`` 0 or absent: Adjutor adds ``meta`` to priced endpoints only) and
stops with a warning at the first answer that names a cost.  A 5xx or a timeout
is the API not answering, not a reset: counted, and watching goes on.  Each
probe is tried once (no retries): the next tick is the retry.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from rotator.probe import ProbeOutcome, Prober, ProbeResult
from rotator.secret import Secret

T = TypeVar("T")


class WatchOutcome(enum.StrEnum):
    RESET = "reset"  # the current key was refused: reset detected
    COSTS = "costs money"  # the probe is priced: the watch stopped after one call
    STOPPED = "stopped"  # the caller stopped it (a key arrived, or the session closed)
    OFF = "off"  # watch_interval = 0, or no probe configured


@dataclass(frozen=True)
class ResetDetected:
    """When the old key was first seen refused (time.time() and time.perf_counter() clocks)."""

    wall: float  # the refusal arrived
    perf: float
    after_wall: float | None  # the last probe the key passed was sent: the reset came later
    after_perf: float | None  # (None: refused at the first probe, the reset was before watching began)
    status: int | None
    detail: str

    @property
    def before_watching(self) -> bool:
        return self.after_perf is None

    @property
    def uncertainty(self) -> float | None:
        """How long before `perf` the reset may have happened (seconds)."""
        return None if self.after_perf is None else self.perf - self.after_perf

    def ago(self, now_perf: float | None = None) -> float:
        """Seconds since the refusal (for "the old key stopped working 1.2 s ago")."""
        return (time.perf_counter() if now_perf is None else now_perf) - self.perf

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.wall,
            "after": self.after_wall,
            "uncertainty": None if self.uncertainty is None else round(self.uncertainty, 4),
            "status": self.status,
            "detail": self.detail,
        }


@dataclass
class WatchResult:
    outcome: WatchOutcome
    reset: ResetDetected | None = None
    probes: int = 0
    unavailable: int = 0  # answers that were neither pass nor refusal (5xx, timeouts)
    warning: str | None = None
    # When the last probe the key passed was sent.  STOPPED with this set means the old key still
    # worked when the new key arrived: the reset did not happen yet, or another app was reset.
    last_ok_wall: float | None = None
    last_ok_perf: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "reset": self.reset.as_dict() if self.reset else None,
            "probes": self.probes,
            "unavailable": self.unavailable,
            "warning": self.warning,
            "last_ok": self.last_ok_wall,
        }


class ResetWatch:
    """``watch = ResetWatch(prober, current_key, client=own_client)``; ``task = asyncio.create_task(watch.run())``;
    the task ends with RESET at the first refusal, COSTS, or STOPPED after ``watch.stop()``.

    Give the watch its own `client` (its own warm connection): a watch probe in flight
    when the new key arrives must not hold, or be cancelled on, the connection the new
    key's probe is about to use (a fresh TLS handshake to Adjutor would cost ~100 ms of
    window).  Without one it shares `prober.client`.
    """

    def __init__(
        self,
        prober: Prober,
        current: Secret,
        interval: float | None = None,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        spec = prober.spec
        self.interval = spec.watch_interval if interval is None else interval
        self.enabled = spec.enabled and self.interval > 0
        # One try per tick: the probe's own retries (with backoff) would blur the reset's time.
        self._prober = Prober(spec.model_copy(update={"retries": 0}), client or prober.client)
        self._current = current
        self._stopped = asyncio.Event()
        self.result = WatchResult(WatchOutcome.OFF)

    def __repr__(self) -> str:
        return f"ResetWatch(key={self._current.fingerprint}, every={self.interval:g}s, {self.result.outcome})"

    def stop(self) -> None:
        """End the watch; `run` returns STOPPED (a probe in flight is abandoned)."""
        self._stopped.set()

    async def _unless_stopped(self, aw: Awaitable[T]) -> T | None:
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (task, stop):
                if not t.done():
                    t.cancel()
        return task.result() if task.done() and not task.cancelled() else None

    @property
    def free(self) -> bool:
        """Watching costs nothing: enabled and no answer named a cost."""
        return self.enabled and self.result.outcome is not WatchOutcome.COSTS

    async def look(self) -> ProbeResult:
        """One more try of the current key now, on the watch's own client (the new key
        arrived before the watch saw a refusal: did the old key stop working?)."""
        return await self._prober.probe(self._current)

    async def run(self) -> WatchResult:
        result = self.result = WatchResult(WatchOutcome.OFF)
        if not self.enabled:
            return result
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        after: tuple[float, float] | None = None
        while not self._stopped.is_set():
            sent = (time.time(), time.perf_counter())
            answer: ProbeResult | None = await self._unless_stopped(self._prober.probe(self._current))
            if answer is None:
                break
            result.probes += 1
            if answer.outcome is ProbeOutcome.REFUSED:
                result.outcome = WatchOutcome.RESET
                result.reset = ResetDetected(
                    time.time(),
                    time.perf_counter(),
                    after[0] if after else None,
                    after[1] if after else None,
                    answer.status,
                    answer.detail,
                )
                return result
            if answer.cost:
                result.outcome = WatchOutcome.COSTS
                result.warning = (
                    f"the probe costs {answer.cost:g} a call (meta.cost), so rotator does not watch the old key"
                    " for the reset; set [probe] watch_interval = 0 to skip this call"
                )
                return result
            if answer.outcome is ProbeOutcome.ACCEPTED:
                after = sent
                result.last_ok_wall, result.last_ok_perf = sent
            else:
                result.unavailable += 1
            next_at += self.interval
            delay = next_at - loop.time()
            if delay <= 0:  # a slow answer: probe again now, do not burst to catch up
                next_at, delay = loop.time(), 0.0
            await self._unless_stopped(asyncio.sleep(delay))
        result.outcome = WatchOutcome.STOPPED
        return result
