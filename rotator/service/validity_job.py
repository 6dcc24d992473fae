"""The service's check of each plan's key (`rotator.key_validity`), on a fixed interval.

Intervals are counted from the epoch, so every replica sees the same ones; each
is claimed in the journal (`job_runs`) before the probe, so one replica probes a
key once per interval, however many run.  A replica whose last own check is older
than two intervals drops its series rather than show a stale answer (another
replica has the fresh one; alert rules take the max over replicas).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rotator.key_validity import check_key
from rotator.logs import get_logger

if TYPE_CHECKING:
    from rotator.service.core import Service

log = get_logger("rotator.service.validity")


async def check_due(service: Service, every: float, now: float | None = None) -> int:
    """Check every plan whose key this replica claims for the current interval; returns how many."""
    from rotator.journal import claim_run

    now = time.time() if now is None else now
    slot = datetime.fromtimestamp((now // every) * every, UTC)
    checked = 0
    for plan in list(service.plans.values()):
        try:
            won = await asyncio.to_thread(claim_run, service.journal.engine, f"rotator-validity/{plan.name}", slot)
        except Exception as exc:  # noqa: BLE001 - the journal is away: check again next interval
            log.warning("key validity not checked", plan=plan.name, error=type(exc).__name__)
            continue
        if not won:
            service.metrics.forget_validity_older_than(plan.name, now - 2 * every)
            continue
        result = await check_key(plan)
        service.metrics.set_validity(plan.name, result.state.label, now)
        (log.info if result.state.label == "works" else log.warning)(
            "key validity",
            plan=plan.name,
            state=str(result.state),
            detail=result.detail,
            fingerprint=result.fingerprint,
        )
        checked += 1
    return checked


async def validity_loop(service: Service, every: float) -> None:
    """Until shutdown: at each interval's start, `check_due`."""
    while not service.draining:
        try:
            await check_due(service, every)
        except Exception as exc:  # noqa: BLE001 - a check must never stop the loop
            log.warning("key validity check failed", error=type(exc).__name__)
        now = time.time()
        await asyncio.sleep(max(1.0, every - (now % every)))
