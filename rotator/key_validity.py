"""Whether the key a plan's primary holds works: `works`, `refused` or `could not check`.

The same three words as `rotator status` (the API refused the key: its consumers
fail; it accepted it; or no answer, a 5xx, no probe configured: never "does not
work" when the API did not say so).  The service checks each plan's key on its
probe endpoint every `VALIDITY_EVERY` seconds by default (`rotator serve
--validity-every`), once, without retries, since Adjutor bills each call from a
prepaid wallet; replicas claim each interval in the journal so that one of them
probes it.  The answer is the `rotator_key_validity` gauge on /metrics.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rotator.key_state import KeyState
from rotator.plugin import PluginContext
from rotator.probe import ProbeOutcome, Prober
from rotator.registry import backend_class

if TYPE_CHECKING:
    from rotator.plan import Plan

VALIDITY_EVERY = 600.0  # seconds between checks of one plan's key (one billed probe call each)


@dataclass(frozen=True)
class ValidityCheck:
    plan: str
    state: KeyState
    detail: str
    fingerprint: str | None
    checked_at: float


async def check_key(plan: Plan) -> ValidityCheck:
    """Read the primary's key and probe it once (no retries: one billed call).  Never raises."""
    now = time.time()
    if not plan.probe.enabled or not plan.probe.url:
        return ValidityCheck(plan.name, KeyState.UNCHECKED, "the plan has no probe", None, now)
    ctx = PluginContext(max_threads=4)
    try:
        backend = backend_class(plan.primary.type)(plan.primary, ctx)
        try:
            await asyncio.wait_for(backend.open(), plan.primary.timeout)
            stored = await asyncio.wait_for(backend.read(), plan.primary.timeout)
        finally:
            await asyncio.wait_for(backend.close(), 5)
        if stored.secret is None:
            return ValidityCheck(plan.name, KeyState.UNCHECKED, f"{plan.primary.name} holds no key", None, now)
        prober = Prober(plan.probe.model_copy(update={"retries": 0}), ctx.http)
        result = await prober.probe(stored.secret)
        fp = stored.secret.fingerprint
        del stored
    except Exception as exc:  # noqa: BLE001 - one word for the gauge, one line for the log
        return ValidityCheck(plan.name, KeyState.UNCHECKED, f"{type(exc).__name__} reading the primary", None, now)
    finally:
        await ctx.aclose()
    state = {ProbeOutcome.ACCEPTED: KeyState.WORKS, ProbeOutcome.REFUSED: KeyState.REFUSED}.get(
        result.outcome, KeyState.UNCHECKED
    )
    return ValidityCheck(plan.name, state, result.detail, fp, now)
