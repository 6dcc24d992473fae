"""The service's state: the plans, the journal, the metrics, and the rotations
armed in memory waiting for a key.

An armed rotation is an `ArmedSession` (`rotator.pipeline.session`, the flow
`rotator rotate` runs too): clients built, connections open, preflights passed,
the plan's journal lock held.  It waits here for the key (pasted into the page
or POSTed to the API); a key the probe refuses keeps it armed so the operator
can paste again; one that gets no key within `arm_timeout` seconds is closed
(journaled as aborted).  While it waits, the probe's connection is kept warm
and the journal lock's lease renewed.

Every rotation and sync runs as a task owned by the session or this object, not
by the HTTP request that started it: a client that disconnects does not stop a
rotation half-way, and shutdown can wait for what is in flight.

With several replicas, an armed rotation lives in the replica that armed it
(its clients, connections and the plan's lock are there): another replica
answers for it from the journal, and refuses its key with the name of the
replica that holds it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from rotator import pipeline
from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.logs import get_logger
from rotator.pipeline import arm
from rotator.pipeline.session import KEEP_WARM_EVERY, MAX_KEY_ATTEMPTS, NotArmed, Outcome, SessionBusy, Status
from rotator.pipeline.state import RotationState
from rotator.report import FINISHED
from rotator.secret import scrub_data
from rotator.service.metrics import Metrics
from rotator.service.sessions import Held
from rotator.service.views import ApiError, plan_state, preflight

if TYPE_CHECKING:
    from rotator.journal import Journal, RotationRow
    from rotator.plan import Plan
    from rotator.report import Report

log = get_logger("rotator.service")

ARM_TIMEOUT = 900.0  # seconds an armed rotation waits for its key
KEEP_FINISHED = 600.0  # seconds a finished or closed rotation stays in memory (then: the journal)


class Service:
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
        self.plans: dict[str, Plan] = {p.name: p for p in plans}
        self.journal = journal
        self.metrics = metrics or Metrics()
        self.arm_timeout = arm_timeout
        self.keep_warm_every = keep_warm_every
        self.held: dict[str, Held] = {}
        self.draining = False
        self.age_unknown_warned: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()  # syncs and closes in flight
        self.metrics.load(journal, plans)

    def plan(self, name: str) -> Plan:
        plan = self.plans.get(name)
        if plan is None:
            raise ApiError(404, f"no plan named {name!r}")
        return plan

    def _refuse_if_draining(self) -> None:
        if self.draining:
            raise ApiError(503, "the service is shutting down")

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _count_armed(self) -> None:
        self.metrics.armed.set(sum(1 for h in self.held.values() if h.state == Status.ARMED))

    # -- arm -------------------------------------------------------------
    async def arm(self, plan_name: str, *, operator: str, reason: str = "") -> Held:
        self._refuse_if_draining()
        plan = self.plan(plan_name)
        for h in self.held.values():
            if h.plan.name == plan.name and not h.done:
                raise ApiError(409, f"{plan.name} is already armed (rotation {h.id})", rotation=h.id)
        state = RotationState(plan, self.journal, reason=reason or "web", operator=operator)
        held = Held(
            state, operator, arm_timeout=self.arm_timeout, keep_warm_every=self.keep_warm_every, on_end=self._ended
        )
        try:
            armed = await held.session.arm()
        except NotArmed as exc:
            self.metrics.observe_arm(plan.name, "rotate", exc.armed.seconds)
            raise ApiError(409, str(exc), preflight=preflight(state)) from None
        except RotationError as exc:
            raise ApiError(409 if exc.exit_code == Exit.BUSY else 500, str(exc), **exc.details) from None
        self.metrics.observe_arm(plan.name, "rotate", armed.seconds)
        self.held[held.id] = held
        held.armed()
        self._count_armed()
        log.info("armed", plan=plan.name, rotation=held.id, operator=operator)
        return held

    def _ended(self, held: Held, report: Report | None) -> None:
        """A session finished or closed: count it, and forget it after a while (then: the journal)."""
        if report is not None:
            self.metrics.observe_report(report)
            log.info("rotation finished", plan=held.plan.name, rotation=held.id, state=report.state)
        self._count_armed()
        asyncio.get_running_loop().call_later(KEEP_FINISHED, self.held.pop, held.id, None)

    def get(self, rid: str) -> Held:
        held = self.held.get(rid)
        if held is None:
            raise self.not_here(rid)
        return held

    def not_here(self, rid: str) -> ApiError:
        """Why a rotation this replica does not hold cannot be acted on here."""
        row = self.journal.get(rid)
        if row is None:
            return ApiError(404, f"no rotation {rid} in this service (see /api/history)")
        if row.state in FINISHED:
            return ApiError(409, f"rotation {row.id} is {row.state}; arm the plan again")
        where = self.where(row)
        if where.get("alive"):
            return ApiError(
                409,
                f"rotation {row.id} is held by another replica (pid {where['pid']} on {where['host']}, "
                "which armed it): send its key to that replica",
                lock=where,
            )
        return ApiError(
            409,
            f"rotation {row.id} ({row.state}) was left by a replica that is gone: "
            + ("arm the plan again" if row.state == "armed" else f"`rotator resume {row.id}` finishes it"),
            lock=where or None,
        )

    def where(self, row: RotationRow) -> dict[str, Any]:
        """The plan lock's holder, if it is this rotation: host, pid, since, alive."""
        info = self.journal.lock_info(row.plan)
        return info if info is not None and info["holder"] == row.id else {}

    # -- the key ---------------------------------------------------------
    async def submit_key(self, rid: str, raw: str) -> tuple[int, dict[str, Any]]:
        """Clean and probe the key; if accepted, write it everywhere.  A refused key
        keeps the rotation armed.  Returns (http status, body)."""
        held = self.get(rid)
        try:
            attempt = await held.session.offer(raw)
        except SessionBusy as exc:
            raise ApiError(409, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - reported in one line; the journal says how far it got
            raise ApiError(500, f"the rotation failed ({type(exc).__name__}); see `rotator show {rid}`") from None
        finally:
            del raw
        if attempt.outcome is Outcome.REJECTED:
            message = attempt.message
            if attempt.final:
                message += f"; {MAX_KEY_ATTEMPTS} keys refused, the rotation is closed: arm again"
            return 422, {"error": message, "rotation": held.summary()}
        body = {"rotation": held.summary(), "report": scrub_data(attempt.report.as_dict())}
        return (422 if attempt.outcome is Outcome.REFUSED else 200), body

    def _spawn_close(self, held: Held, why: str) -> None:
        self._track(asyncio.ensure_future(self.close(held.id, why)))

    async def close(self, rid: str, why: str) -> None:
        """Close an armed rotation that will get no key (journaled as aborted, or as
        refused when its last key was refused)."""
        held = self.held.get(rid)
        if held is not None:
            await held.session.close(why)

    # -- sync ------------------------------------------------------------
    async def sync(
        self, plan_name: str, *, check_only: bool = False, trigger: str = "api", reason: str | None = None
    ) -> Report:
        """A journaled sync of one plan (owned by the service, so shutdown waits for it)."""
        self._refuse_if_draining()
        plan = self.plan(plan_name)
        task = asyncio.ensure_future(self._sync(plan, check_only, trigger, reason or trigger))
        self._track(task)
        return await asyncio.shield(task)

    async def _sync(self, plan: Plan, check_only: bool, trigger: str, reason: str) -> Report:
        state = RotationState(plan, self.journal, kind="sync", reason=reason, operator=f"rotator serve ({trigger})")
        try:
            armed = await arm.run(state)
            self.metrics.observe_arm(plan.name, "sync", armed.seconds)
            if not armed.ok:
                raise ApiError(409, "cannot sync: " + "; ".join(armed.problems()), preflight=preflight(state))
            report = await (pipeline.check_drift(state) if check_only else pipeline.sync(state))
        except RotationError as exc:
            raise ApiError(409 if exc.exit_code == Exit.BUSY else 500, str(exc), **exc.details) from None
        finally:
            await arm.disarm(state)
        self.metrics.observe_report(report)
        return report

    # -- reading ---------------------------------------------------------
    def plan_state(self, plan: Plan) -> dict[str, Any]:
        armed = next((h.id for h in self.held.values() if h.plan.name == plan.name and h.state == Status.ARMED), None)
        return plan_state(self.journal, plan, armed)

    # -- shutdown --------------------------------------------------------
    def begin_drain(self) -> None:
        """Stop taking new work; close rotations still waiting for a key."""
        if self.draining:
            return
        self.draining = True
        log.info("shutting down: no new rotations; waiting for those in flight")
        for h in list(self.held.values()):
            if h.state == Status.ARMED:
                self._spawn_close(h, "the service is shutting down")

    async def drain(self, timeout: float) -> list[str]:
        """Wait (at most `timeout`) for rotations and syncs in flight.  Returns the ids
        of rotations still writing when time ran out: their journal entries stay as
        they are (primary written or fanning out), so `rotator resume ID` finishes them."""
        self.begin_drain()
        pending = [t for t in self._tasks if not t.done()]
        pending += [t for h in self.held.values() if (t := h.session.in_flight) is not None]
        if pending:
            await asyncio.wait(pending, timeout=max(timeout, 0.0))
        left = [h.id for h in self.held.values() if h.state == Status.ROTATING]
        for rid in left:
            log.warning("rotation still in flight at shutdown; resumable", rotation=rid, resume=f"rotator resume {rid}")
        for h in list(self.held.values()):
            if h.state == Status.ARMED:
                await self.close(h.id, "the service is shutting down")
        return left


__all__ = ["ARM_TIMEOUT", "ApiError", "Held", "Service"]
