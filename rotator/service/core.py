"""The service: its plans, journal and metrics (`ServiceContext`), with one name for each
thing the API and the scheduler ask of it.

The work is in three modules, each in domain terms (no HTTP: `routes` says it):
- `rotations`: the rotations armed here, waiting for a key (arm, hand a key, close, roll back);
- `runs`: resume, sync and the drift check on `pipeline.oneshot`, and an alternating plan's slots;
- `replicas`: a rotation another process holds, answered and closed from the journal.

Every rotation and sync runs as a task owned by a session or by this object, not by the
HTTP request that started it: shutdown (`drain`) waits for what is in flight.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from rotator.key_age import key_age_with
from rotator.logs import get_logger
from rotator.pipeline.ask import KEEP_WARM_EVERY
from rotator.pipeline.session import Status
from rotator.service import proxies, replicas, runs
from rotator.service.context import ServiceContext
from rotator.service.metrics import Metrics
from rotator.service.rotations import ARM_TIMEOUT, KeyAnswer, Rotations
from rotator.service.sessions import Held
from rotator.service.views import plan_state

if TYPE_CHECKING:
    from rotator.journal import Journal, RotationRow
    from rotator.plan import Plan
    from rotator.report import Report
    from rotator.service.errors import ServiceError

log = get_logger("rotator.service")


class Service(ServiceContext):
    """Plans, journal, metrics and the rotations in flight, for the API and the scheduler."""

    def __init__(
        self,
        plans: list[Plan],
        journal: Journal,
        metrics: Metrics | None = None,
        *,
        arm_timeout: float = ARM_TIMEOUT,
        keep_warm_every: float = KEEP_WARM_EVERY,
    ) -> None:
        super().__init__(plans, journal, metrics or Metrics())
        self.rotations = Rotations(self, arm_timeout=arm_timeout, keep_warm_every=keep_warm_every)
        self.held: dict[str, Held] = self.rotations.held
        self.metrics.load(journal, plans)

    # -- armed rotations (`rotations`) ---------------------------------------
    async def arm(
        self, plan_name: str, *, operator: str, reason: str = "", flow: str | None = None, choice: str | None = None
    ) -> Held:
        return await self.rotations.arm(plan_name, operator=operator, reason=reason, flow=flow, choice=choice)

    async def submit_key(self, rid: str, raw: str, *, accept_unprobed: bool = False) -> KeyAnswer:
        try:
            return await self.rotations.submit_key(rid, raw, accept_unprobed=accept_unprobed)
        finally:
            del raw

    async def roll_back(self, rid: str) -> Held:
        return await self.rotations.roll_back(rid)

    def get(self, rid: str) -> Held:
        return self.rotations.get(rid)

    async def close(self, rid: str, why: str) -> None:
        await self.rotations.close(rid, why)

    async def close_any(self, rid: str, who: str) -> replicas.Closed:
        """Close an armed rotation wherever it is held: here at once; held by another live
        process (a replica, `rotator rotate`) by asking it through the journal; left by a
        process that is gone, here in the journal.  A rotation writing a key is never closed."""
        held = self.held.get(rid)
        if held is not None:
            return await self.rotations.close_here(held, who)
        return await replicas.close_elsewhere(self.journal, rid, who)

    # -- one-shot runs (`runs`) ----------------------------------------------
    async def resume(self, rid: str, *, operator: str, reason: str = "") -> Report:
        return await runs.resume(self, self.rotations, rid, operator=operator, reason=reason)

    async def sync(
        self,
        plan_name: str,
        *,
        check_only: bool = False,
        trigger: str = "api",
        reason: str | None = None,
        operator: str | None = None,
    ) -> Report:
        return await runs.sync(
            self, plan_name, check_only=check_only, trigger=trigger, reason=reason, operator=operator
        )

    async def slots(self, plan_name: str) -> dict[str, Any]:
        return await runs.slots(self, plan_name)

    # -- elsewhere (`replicas`) ----------------------------------------------
    def not_here(self, rid: str) -> ServiceError:
        return replicas.not_here(self.journal, rid)

    def where(self, row: RotationRow) -> dict[str, Any]:
        return replicas.where(self.journal, row)

    # -- reading ---------------------------------------------------------
    def plan_state(self, plan: Plan) -> dict[str, Any]:
        held = self.rotations.armed_in(plan)
        armed_id = held.id if held is not None and held.state == Status.ARMED else None
        out = plan_state(
            self.journal, plan, armed_id, key_age_with(self.journal, plan, self.primary_records.get(plan.name))
        )
        out["active"] = replicas.active(self.journal, held, out["lock"])
        # A holder that is gone (or a lock row a database outage left behind) keeps nobody from Resume.
        busy = out["active"]["id"] if out["active"] and out["active"].get("alive", True) else None
        out["resumable"] = [
            {"id": r.id, "state": r.state, "created_at": r.created_at, "operator": r.operator}
            for r in self.journal.unfinished(plan.name)
            if r.id != busy
        ]
        out["proxy"] = proxies.view(plan.name)  # its [proxy] served here: address, fingerprint, holds
        return out

    # -- shutdown --------------------------------------------------------
    def begin_drain(self) -> None:
        """Stop taking new work; close rotations still waiting for a key."""
        if self.draining:
            return
        self.draining = True
        log.info("shutting down: no new rotations; waiting for those in flight")
        for h in self.rotations.waiting():
            self.spawn(self.close(h.id, "the service is shutting down"))

    async def drain(self, timeout: float) -> list[str]:
        """Wait (at most `timeout`) for rotations and syncs in flight.  Returns the ids
        of rotations still writing when time ran out: their journal entries stay as
        they are (primary written or fanning out), so `rotator resume ID` finishes them."""
        self.begin_drain()
        pending = self.in_flight + self.rotations.in_flight()
        if pending:
            await asyncio.wait(pending, timeout=max(timeout, 0.0))
        left = self.rotations.writing()
        for rid in left:
            log.warning("rotation still in flight at shutdown; resumable", rotation=rid, resume=f"rotator resume {rid}")
        for h in self.rotations.waiting():
            await self.close(h.id, "the service is shutting down")
        return left


__all__ = ["ARM_TIMEOUT", "Held", "KeyAnswer", "Service"]
