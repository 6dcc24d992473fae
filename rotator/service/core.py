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
import time
from typing import TYPE_CHECKING, Any

from rotator import pipeline
from rotator.errors import RotationError, RotatorError
from rotator.exitcodes import Exit
from rotator.key_age import key_age_with
from rotator.logs import get_logger
from rotator.pipeline import arm, leaked
from rotator.pipeline.alternating_flow import AlternatingFlow
from rotator.pipeline.session import (
    CLOSE_STEP,
    KEEP_WARM_EVERY,
    MAX_KEY_ATTEMPTS,
    Flow,
    NotArmed,
    Outcome,
    SessionBusy,
    Status,
)
from rotator.pipeline.state import RotationState
from rotator.report import FINISHED, PRIMARY_UNSURE, REKEY_LEFT_LINE, RESUMABLE, RunKind, RunState
from rotator.secret import scrub_data
from rotator.service import proxies
from rotator.service.metrics import Metrics
from rotator.service.sessions import Held
from rotator.service.views import ApiError, plan_state, preflight

if TYPE_CHECKING:
    from rotator.journal import Journal, RotationRow
    from rotator.key_record import PrimaryRecord
    from rotator.plan import Plan
    from rotator.report import Report

log = get_logger("rotator.service")

ARM_TIMEOUT = 900.0  # seconds an armed rotation waits for its key
KEEP_FINISHED = 600.0  # seconds a finished or closed rotation stays in memory (then: the journal)


# An alternating plan's refusals before anything is asked: the slot record cannot be trusted,
# or the step would put an incident's leaked key back in use (the line says how to go on).
REFUSED_ALTERNATING = (Exit.SLOT_RECORD, Exit.LEAKED_KEY)


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
        self.public_url: str | None = None  # the page's address, for the links in notifications
        self.draining = False
        self.primary_records: dict[str, PrimaryRecord] = {}  # the primary's own date of its value (key_age)
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
    async def arm(
        self,
        plan_name: str,
        *,
        operator: str,
        reason: str = "",
        flow: str | None = None,
        choice: str | None = None,
    ) -> Held:
        """Arm a rotation of the plan.  An alternating plan's `flow` (rotate | incident |
        rekey | promote | rollback; default rotate) starts at once (`alternating_flow`)."""
        self._refuse_if_draining()
        plan = self.plan(plan_name)
        kind, run = self._flow(plan, flow, choice)
        for h in self.held.values():
            if h.plan.name == plan.name and not h.done:
                raise ApiError(
                    409,
                    f"{plan.name} is already armed (rotation {h.id}, by {h.operator}): open it, or close it",
                    rotation=h.id,
                    held_here=True,
                    operator=h.operator,
                )
        state = RotationState(plan, self.journal, kind=kind, reason=reason or "web", operator=operator)
        held = Held(
            state,
            operator,
            arm_timeout=self.arm_timeout,
            keep_warm_every=self.keep_warm_every,
            on_end=self._ended,
            flow=run,
        )
        try:
            armed = await held.session.arm()
        except NotArmed as exc:
            self.metrics.observe_arm(plan.name, "rotate", exc.armed.seconds)
            raise ApiError(409, str(exc), preflight=preflight(state)) from None
        except RotationError as exc:
            refusals = (Exit.BUSY, Exit.PLAN_INVALID, Exit.PARTIAL, Exit.PREFLIGHT_FAILED, *REFUSED_ALTERNATING)
            status = 409 if exc.exit_code in refusals else 500
            extra = {"exit_code": int(exc.exit_code)} if exc.exit_code in REFUSED_ALTERNATING else {}
            raise ApiError(status, str(exc), preflight=preflight(state), **extra, **exc.details) from None
        self.metrics.observe_arm(plan.name, "rotate", armed.seconds)
        self.held[held.id] = held
        held.armed()
        self._count_armed()
        log.info("armed", plan=plan.name, rotation=held.id, operator=operator)
        return held

    @staticmethod
    def _flow(plan: Plan, flow: str | None, choice: str | None) -> tuple[RunKind, Flow]:
        """The flow asked for, from the flows registered (`pipeline.flows`); a bad name is a 400."""
        from rotator.pipeline import flows
        from rotator.pipeline.alternating import IncidentChoice

        spec = flows.find(flow or "rotate", alternating=plan.alternating)
        if spec is None:
            if not plan.alternating and flows.names(alternating=False) == ["rotate"]:
                raise ApiError(400, f"{plan.name} is a single-app plan: only the planned rotation (no flow) applies")
            raise ApiError(400, f"flow must be one of: {', '.join(flows.names(alternating=plan.alternating))}")
        if choice is not None and not spec.takes_choice and not plan.alternating:
            raise ApiError(400, f"{plan.name} is a single-app plan: only the planned rotation (no flow) applies")
        try:
            picked = IncidentChoice(choice) if choice else None
        except ValueError:
            raise ApiError(400, f"choice must be one of: {', '.join(IncidentChoice)}") from None
        if picked is not None and not spec.takes_choice:
            raise ApiError(400, "choice goes with the incident flow")
        return spec.kind, spec.make(flows.FlowOptions(choice=picked))

    async def slots(self, plan_name: str) -> dict[str, Any]:
        """An alternating plan's slots, as `rotator status --json` prints them (from the backends)."""
        from rotator.pipeline.slot_status import status_data, survey

        plan = self.plan(plan_name)
        if not plan.alternating:
            raise ApiError(404, f"{plan.name} is a single-app plan: it has no slots")
        try:
            alt = await survey(plan, self.journal)
        except RotationError as exc:
            if exc.exit_code in REFUSED_ALTERNATING:
                raise ApiError(409, str(exc), exit_code=int(exc.exit_code)) from None
            raise ApiError(502, str(exc)) from None
        return await asyncio.to_thread(status_data, plan, alt, self.journal)

    async def roll_back(self, rid: str) -> Held:
        """Roll back instead of the re-key an armed alternating rotation waits for."""
        held = self.get(rid)
        alternating = held.flow
        if not isinstance(alternating, AlternatingFlow):
            raise ApiError(409, f"rotation {rid} is a single-app rotation: there is nothing to roll back")
        if held.done:
            raise ApiError(409, f"rotation {rid} is {held.state}: arm the plan's roll back instead")
        if (why := alternating.roll_back(held.session)) is not None:
            alt = alternating.alt
            leaked_key = alt is not None and leaked.refusal(alt, "roll back") is not None
            raise ApiError(409, why, **({"exit_code": int(Exit.LEAKED_KEY)} if leaked_key else {}))
        return held

    def _ended(self, held: Held, report: Report | None) -> None:
        """A session finished or closed: count it, and forget it after a while (then: the journal)."""
        if report is not None:
            self.metrics.observe_report(report)
            log.info("rotation finished", plan=held.plan.name, rotation=held.id, state=report.state)
            self.notify(held.plan, report.as_dict())
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
    async def submit_key(self, rid: str, raw: str, *, accept_unprobed: bool = False) -> tuple[int, dict[str, Any]]:
        """Clean and probe the key; if accepted, write it everywhere.  A refused key
        keeps the rotation armed.  `accept_unprobed`: write it even if the probe cannot
        reach the API (an outage; the page asks for an explicit confirmation first).
        Returns (http status, body)."""
        held = self.get(rid)
        if held.state == Status.ARMED:  # per key: a later paste is probed as usual unless asked again
            held.session.state.accept_unprobed = accept_unprobed
            if accept_unprobed:
                log.warning("key to be written even unprobed", rotation=held.id, operator=held.operator)
        try:
            attempt = await held.session.hand(raw)
        except SessionBusy as exc:
            raise ApiError(409, str(exc)) from None
        finally:
            del raw
        error = held.session.error
        if attempt.outcome is Outcome.CLOSED and error is not None and not isinstance(error, RotatorError):
            raise ApiError(500, f"the rotation failed ({type(error).__name__}); see `rotator show {rid}`")
        report = attempt.report or held.session.report
        body: dict[str, Any] = {
            "outcome": attempt.outcome,
            "message": attempt.message,
            "rotation": held.summary(),
            "report": scrub_data(report.as_dict()) if report is not None else None,
        }
        if attempt.outcome is Outcome.REJECTED:
            closed = f"; {MAX_KEY_ATTEMPTS} keys refused, the rotation is closed: arm again" if attempt.final else ""
            return 422, {"error": attempt.message + closed, **body}
        if report is not None and report.exit_code == Exit.LOCK_LOST:  # another rotation holds the plan now: say so
            return 409, {"error": report.message, **body}
        return {"refused": 422, "closed": 409}.get(attempt.outcome, 200), body

    async def close_any(self, rid: str, who: str) -> tuple[int, dict[str, Any]]:
        """Close an armed rotation wherever it is held: here at once; held by another live
        process (a replica, `rotator rotate`) by asking it through the journal (its keeper
        reads the request within `KEEP_WARM_EVERY` seconds); left by a process that is gone,
        here in the journal.  A rotation writing a key is never closed."""
        held = self.held.get(rid)
        if held is not None:
            if held.state == Status.ROTATING:
                raise ApiError(409, f"rotation {held.id} is writing its key: it cannot be closed now")
            await self.close(held.id, f"closed by {who}")
            return 200, {**held.summary(), "closed": True}
        row = await asyncio.to_thread(self.journal.get, rid)
        if row is None:
            raise ApiError(404, f"no rotation {rid} in this service (see /api/history)")
        if row.state in FINISHED:
            raise ApiError(409, f"rotation {row.id} is already {row.state}")
        if row.state != RunState.ARMED:
            raise ApiError(
                409, f"rotation {row.id} is {row.state}: it has a key; `rotator resume {row.id}` finishes it"
            )
        where = await asyncio.to_thread(self.where, row)
        if where.get("alive"):
            detail = f"closed by {who}"
            await asyncio.to_thread(self.journal.record, row.id, CLOSE_STEP, "requested", detail=detail)
            log.info("close requested", rotation=row.id, holder_pid=where.get("pid"), by=who)
            return 202, {
                "id": row.id,
                "requested": True,
                "message": f"asked pid {where['pid']} on {where['host']} (which holds it) to close rotation "
                f"{row.id}: it closes within {KEEP_WARM_EVERY:.0f} s",
                "lock": where,
            }

        def abort() -> None:
            self.journal.record(row.id, CLOSE_STEP, "done", detail=f"closed by {who}: its holder is gone")
            self.journal.update(row.id, state=RunState.ABORTED, finished_at=time.time())
            if where:
                self.journal.release(row.plan, row.id)

        await asyncio.to_thread(abort)
        return 200, {"id": row.id, "closed": True, "message": f"rotation {row.id} closed (its holder was gone)"}

    # -- resume ----------------------------------------------------------
    async def resume(self, rid: str, *, operator: str, reason: str = "") -> Report:
        """`rotator resume ID` from the page: finish a partial or interrupted rotation from the
        key in its primary (owned by the service, so shutdown waits for it)."""
        self._refuse_if_draining()
        row = await asyncio.to_thread(self.journal.get, rid)
        if row is None:
            raise ApiError(404, f"no rotation {rid} in the journal")
        if row.state == RunState.REKEY_LEFT:  # the operator's reset is left: the plan's next arm asks for it
            raise ApiError(409, f"rotation {row.id}: {REKEY_LEFT_LINE.format(plan=row.plan_path)}", left="rekey")
        if row.state not in RESUMABLE:
            why = "is done" if row.state == RunState.DONE else f"never wrote the primary ({row.state}): arm it again"
            raise ApiError(409, f"rotation {row.id} {why}")
        if (held := self.held.get(row.id)) is not None and not held.done:
            raise ApiError(409, f"rotation {row.id} is still running here")
        plan = self.plan(row.plan)
        task = asyncio.ensure_future(self._resume(plan, row, operator, reason))
        self._track(task)
        return await asyncio.shield(task)

    async def _resume(self, plan: Plan, row: RotationRow, operator: str, reason: str) -> Report:
        state = RotationState(plan, self.journal, id=row.id, operator=operator, reason=reason or row.reason)
        await asyncio.to_thread(
            self.journal.record,
            row.id,
            "resume",
            "started",
            detail=f"by {operator}" + (f": {reason}" if reason else ""),
        )
        try:
            armed = await arm.run(state)
            if not armed.ok:
                raise ApiError(409, "cannot resume: " + "; ".join(armed.problems()), preflight=preflight(state))
            report = await pipeline.resume(state, row.new_fp, primary_unsure=row.state in PRIMARY_UNSURE)
        except RotationError as exc:
            raise ApiError(409 if exc.exit_code == Exit.BUSY else 500, str(exc), **exc.details) from None
        finally:
            await arm.disarm(state)
        self.metrics.observe_report(report)
        self.notify(plan, report.as_dict())
        return report

    # -- notifications -----------------------------------------------------
    def link(self, rid: str | None = None) -> str | None:
        """The page's view of a rotation (of the page itself without `rid`), when the URL is known."""
        if not self.public_url:
            return None
        return self.public_url.rstrip("/") + "/" + (f"#rotation={rid}" if rid else "")

    def notify(self, plan: Plan, report: dict[str, Any]) -> None:
        """Every ``[[notify]]`` of the plan, in the background: never holds up or fails the run."""
        if not getattr(plan, "notify", None):
            return
        from rotator.notify import notify_all

        self._track(asyncio.ensure_future(notify_all(plan, report, link=self.link(report.get("id")))))

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
        self,
        plan_name: str,
        *,
        check_only: bool = False,
        trigger: str = "api",
        reason: str | None = None,
        operator: str | None = None,
    ) -> Report:
        """A journaled sync (or drift check) of one plan (owned by the service, so shutdown waits for it)."""
        self._refuse_if_draining()
        plan = self.plan(plan_name)
        task = asyncio.ensure_future(self._sync(plan, check_only, trigger, reason or trigger, operator))
        self._track(task)
        return await asyncio.shield(task)

    async def _sync(
        self, plan: Plan, check_only: bool, trigger: str, reason: str, operator: str | None = None
    ) -> Report:
        # A drift check writes nothing: journaled as a check, not as a sync.
        kind = "check" if check_only else "sync"
        state = RotationState(
            plan, self.journal, kind=kind, reason=reason, operator=operator or f"rotator serve ({trigger})"
        )
        try:
            armed = await arm.run(state)
            self.metrics.observe_arm(plan.name, kind, armed.seconds)
            if not armed.ok:
                raise ApiError(409, f"cannot {kind}: " + "; ".join(armed.problems()), preflight=preflight(state))
            report = await (pipeline.check_drift(state) if check_only else pipeline.sync(state))
        except (RotationError, ApiError) as exc:
            if isinstance(exc, RotationError) and exc.details.get("skipped"):
                # The plan is locked (a rotation armed): skipped, journaled as such; not news.
                self.metrics.observe_skipped(plan.name, kind)
                raise ApiError(409, str(exc), **exc.details) from None
            self.metrics.runs.labels(plan.name, kind, "failed").inc()
            if not check_only:  # a sync that could not run is a failure worth telling
                code = int(exc.exit_code) if isinstance(exc, RotationError) else int(Exit.PREFLIGHT_FAILED)
                failed: dict[str, Any] = {"id": state.id or None, "kind": kind, "plan": plan.name, "state": "failed"}
                failed |= {"exit_code": code, "message": str(exc), "operator": state.operator, "reason": reason}
                self.notify(plan, failed)
            if isinstance(exc, ApiError):
                raise
            raise ApiError(409 if exc.exit_code == Exit.BUSY else 500, str(exc), **exc.details) from None
        finally:
            await arm.disarm(state)
        self.metrics.observe_report(report)
        if not check_only and (report.exit_code != 0 or report.drift):
            self.notify(plan, report.as_dict())  # drift repaired (its own notification), or failed; never a no-op
        return report

    # -- reading ---------------------------------------------------------
    def plan_state(self, plan: Plan) -> dict[str, Any]:
        held = next((h for h in self.held.values() if h.plan.name == plan.name and not h.done), None)
        armed_id = held.id if held is not None and held.state == Status.ARMED else None
        out = plan_state(
            self.journal, plan, armed_id, key_age_with(self.journal, plan, self.primary_records.get(plan.name))
        )
        out["active"] = self.active(plan, held, out["lock"])
        # A holder that is gone (or a lock row a database outage left behind) keeps nobody from Resume.
        busy = out["active"]["id"] if out["active"] and out["active"].get("alive", True) else None
        out["resumable"] = [
            {"id": r.id, "state": r.state, "created_at": r.created_at, "operator": r.operator}
            for r in self.journal.unfinished(plan.name)
            if r.id != busy
        ]
        out["proxy"] = proxies.view(plan.name)  # its [proxy] served here: address, fingerprint, holds
        return out

    def active(self, plan: Plan, held: Held | None, lock: dict[str, Any] | None) -> dict[str, Any] | None:
        """The plan's rotation in progress, wherever it is held: who holds it, since when, where."""
        if held is not None:
            return {
                "id": held.id,
                "state": held.state,
                "operator": held.operator,
                "created_at": held.created_at,
                "expires_at": held.expires_at,
                "held_here": True,
            }
        if not lock:
            return None
        row = self.journal.get(lock["holder"])
        if row is None or row.state in FINISHED:
            return None
        return {
            "id": row.id,
            "kind": row.kind,
            "state": row.state,
            "operator": row.operator,
            "created_at": row.created_at,
            "held_here": False,
            "host": lock["host"],
            "pid": lock["pid"],
            "alive": lock["alive"],
        }

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
