"""The service's state: the plans, the journal, the metrics, and the rotations
armed in memory waiting for a key.

An armed rotation is a `Rotation` after `arm()`: clients built, connections
open, preflights passed, the plan's journal lock held.  It waits here for the
key (pasted into the page or POSTed to the API); a key the probe refuses keeps
it armed so the operator can paste again; one that gets no key within
`arm_timeout` seconds is closed (journaled as aborted).  While it waits, the
probe's connection is kept warm and the journal lock's lease renewed.

Every rotation and sync runs as a task owned by this object, not by the HTTP
request that started it: a client that disconnects does not stop a rotation
half-way, and shutdown can wait for what is in flight.

With several replicas, an armed rotation lives in the replica that armed it
(its clients, connections and the plan's lock are there): another replica
answers for it from the journal, and refuses its key with the name of the
replica that holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from rotator import pipeline
from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.journal import Journal, LockHeld, RotationRow
from rotator.logs import REDACTED, get_logger
from rotator.pipeline import arm, finish
from rotator.pipeline.state import RotationState
from rotator.plan import Plan
from rotator.report import BAD, FINISHED, Progress, Report
from rotator.secret import KeyRejected, clean_paste, live_values
from rotator.service.metrics import Metrics

log = get_logger("rotator.service")

ARM_TIMEOUT = 900.0  # seconds an armed rotation waits for its key
MAX_KEY_ATTEMPTS = 5  # refused keys before an armed rotation is closed
KEEP_WARM_EVERY = 15.0  # seconds between probe keep-alives and lock renewals while armed
KEEP_FINISHED = 600.0  # seconds a finished or closed rotation stays in memory (then: the journal)
INSTRUCTION = [
    "Every target is ready. Now reset the key; the old key stops working at once, so the window starts now.",
    "Adjutor dashboard → Business → Apps → View details → Reset app key",
    "Copy the new key the dashboard shows.",
    "Paste it into the key field here and press Enter.",
]


class ApiError(Exception):
    """A request that cannot be served; becomes an HTTP error with a one-line message."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def scrub(obj: Any) -> Any:
    """Last net under every response and event: no live secret value leaves the process.

    Reports and events carry fingerprints, never keys; this catches a plugin
    detail that echoes one by mistake."""
    text = json.dumps(obj, default=str)
    for s in live_values():
        if len(s) >= 8 and s in text:
            text = text.replace(json.dumps(s)[1:-1], REDACTED).replace(s, REDACTED)
    return json.loads(text)


@dataclass
class Held:
    """An armed rotation and what its watchers need: the events so far, the report."""

    rot: RotationState
    plan: Plan
    operator: str
    created_at: float
    expires_at: float
    state: str = "arming"  # arming | armed | rotating | finished | closed
    events: list[dict[str, Any]] = field(default_factory=list)
    report: Report | None = None
    last_refusal: dict[str, Any] | None = None
    attempts: int = 0
    closed_reason: str = ""
    task: asyncio.Task[Report] | None = None
    keeper: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def id(self) -> str:
        return self.rot.id

    @property
    def done(self) -> bool:
        return self.state in ("finished", "closed")

    def push(self, kind: str, data: dict[str, Any]) -> None:
        item = {"seq": len(self.events) + 1, "type": kind, "t": time.time(), **data}
        self.events.append(scrub(item))
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def follow(self, after: int = 0, heartbeat: float = 15.0) -> AsyncIterator[dict[str, Any] | None]:
        """Every event after `after`, then new ones as they come, until the rotation is
        finished or closed.  Yields None as a heartbeat when nothing happened."""
        i = after
        while True:
            while i < len(self.events):
                i += 1
                yield self.events[i - 1]
            if self.done:
                return
            wake = self._wake
            try:
                await asyncio.wait_for(wake.wait(), heartbeat)
            except TimeoutError:
                yield None

    def summary(self) -> dict[str, Any]:
        armed = self.rot.armed
        return scrub(
            {
                "id": self.id,
                "plan": self.plan.name,
                "state": self.state,
                "operator": self.operator,
                "created_at": self.created_at,
                "expires_at": self.expires_at if not self.done else None,
                "attempts": self.attempts,
                "old_fingerprint": armed.old_fingerprint if armed else None,
                "old_version": armed.old_version if armed else None,
                "preflight": preflight(self.rot),
                "instruction": INSTRUCTION,
                "last_refusal": self.last_refusal,
                "closed_reason": self.closed_reason or None,
                "report": self.report.as_dict() if self.report else None,
            }
        )


def preflight(rot: RotationState) -> list[dict[str, Any]]:
    """One entry per backend and consumer: ok (true/false/null = unverified), detail."""
    if rot.armed is None:
        return []
    out = []
    kinds = {b.name: ("backend", b.type, b.primary) for b in rot.plan.backends}
    kinds.update({c.name: ("consumer", c.type, False) for c in rot.plan.consumers})
    for name, check in rot.armed.checks.items():
        kind, type_, primary = kinds.get(name, ("?", "?", False))
        out.append(
            {
                "target": name,
                "kind": kind,
                "type": type_,
                "primary": primary,
                "ok": check.ok,
                "detail": check.detail,
                "warnings": list(check.warnings),
                "fingerprint": rot.armed.current.get(name),
            }
        )
    order = {b.name: i for i, b in enumerate(rot.plan.backends)}
    order.update({c.name: 1000 + i for i, c in enumerate(rot.plan.consumers)})
    return sorted(out, key=lambda e: order.get(e["target"], 10_000))


def row_dict(row: RotationRow, with_report: bool = False) -> dict[str, Any]:
    d = {k: v for k, v in row.__dict__.items() if k != "report"}
    if with_report:
        d["report"] = row.report
    return d


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
        self.started_at = time.time()
        self.age_unknown_warned: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()  # rotations and syncs in flight
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

    # -- journal off the event loop -------------------------------------
    async def _j(self, fn: Any, *args: Any, **kw: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kw)

    # -- arm -------------------------------------------------------------
    async def arm(self, plan_name: str, *, operator: str, reason: str = "") -> Held:
        self._refuse_if_draining()
        plan = self.plan(plan_name)
        for h in self.held.values():
            if h.plan.name == plan.name and not h.done:
                raise ApiError(409, f"{plan.name} is already armed (rotation {h.id})", rotation=h.id)
        now = time.time()
        holder: list[Held] = []

        def progress(p: Progress) -> None:
            if holder:
                holder[0].push("progress", asdict(p))

        rot = RotationState(plan, self.journal, reason=reason or "web", operator=operator, progress_fn=progress)
        held = Held(rot, plan, operator, now, now + self.arm_timeout)
        holder.append(held)
        try:
            armed = await arm.run(rot)
        except RotationError as exc:
            await arm.disarm(rot)
            raise ApiError(409 if exc.exit_code == Exit.BUSY else 500, str(exc), **exc.details) from None
        except BaseException:
            await arm.disarm(rot)
            raise
        self.metrics.observe_arm(plan.name, "rotate", armed.seconds)
        if not armed.ok:
            await arm.disarm(rot)
            raise ApiError(
                409,
                "not armed: " + "; ".join(armed.problems()) + " — fix these before resetting the key",
                preflight=preflight(rot),
            )
        held.state = "armed"
        self.held[held.id] = held
        held.push("armed", {"state": "armed", "preflight": preflight(rot), "expires_at": held.expires_at})
        held.keeper = asyncio.ensure_future(self._keep_armed(held))
        self.metrics.armed.set(sum(1 for h in self.held.values() if h.state == "armed"))
        log.info("armed", plan=plan.name, rotation=held.id, operator=operator)
        return held

    async def _keep_armed(self, held: Held) -> None:
        """While it waits for its key: keep the probe's connection warm, renew the
        lock's lease, and close the rotation when no key came in time."""
        rot = held.rot
        while held.state == "armed":
            wait = min(self.keep_warm_every, held.expires_at - time.time())
            if wait <= 0:
                await self.close(held.id, f"no key within {self.arm_timeout:.0f}s of arming")
                return
            await asyncio.sleep(wait)
            if held.state != "armed":
                return
            try:
                await arm.keep_warm(rot)  # the probe's connection, the lock's lease
            except LockHeld as exc:
                # Our hold on the plan ended (database connection lost) and someone
                # else has it now: this rotation must not take a key.
                log.error("plan lock lost", rotation=held.id, holder=exc.holder)
                await self.close(held.id, f"lost the plan's lock: {exc}")
                return
            except Exception as exc:  # noqa: BLE001 - keeping warm is best effort
                log.warning("keep-warm failed", rotation=held.id, error=type(exc).__name__)

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
        if held.state == "rotating":
            raise ApiError(409, f"rotation {rid} is already writing a key")
        if held.state != "armed":
            raise ApiError(409, f"rotation {rid} is {held.state}; arm the plan again")
        rot = held.rot
        rot.key_arrived()  # the window starts when the key reaches us, as with the CLI
        held.attempts += 1
        try:
            clean = clean_paste(raw, held.plan.secret.key_pattern)
        except KeyRejected as exc:
            return self._refused(held, f"the pasted key was rejected: {exc}; nothing was written")
        finally:
            del raw
        held.push("key", {"fingerprint": clean.secret.fingerprint, "warnings": clean.warnings})
        held.state = "rotating"
        task = asyncio.ensure_future(self._rotate(held, clean.secret))
        del clean
        held.task = task
        self._track(task)
        report = await asyncio.shield(task)
        body = {"rotation": held.summary(), "report": scrub(report.as_dict())}
        if report.state in ("refused", "unavailable"):
            return 422, body
        return 200, body

    def _refused(self, held: Held, message: str, report: Report | None = None) -> tuple[int, dict[str, Any]]:
        held.last_refusal = scrub(
            {"message": message, "probe": report.probe.as_dict() if report and report.probe else None}
        )
        held.push("refused", {"message": message, "attempts_left": MAX_KEY_ATTEMPTS - held.attempts})
        if held.attempts >= MAX_KEY_ATTEMPTS:
            self._spawn_close(held, f"{MAX_KEY_ATTEMPTS} keys refused")
            message += f"; {MAX_KEY_ATTEMPTS} keys refused, the rotation is closed: arm again"
        return 422, {"error": message, "rotation": held.summary()}

    async def _rotate(self, held: Held, secret: Any) -> Report:
        rot = held.rot
        try:
            report = await pipeline.rotate(rot, secret)
        except asyncio.CancelledError:
            # Shutdown ran out of time: leave the journal entry as it is (resumable)
            # and the process exit releases the rest.
            raise
        except Exception as exc:  # noqa: BLE001 - reported in one line; the journal says how far it got
            held.state, held.closed_reason = "closed", f"internal error ({type(exc).__name__})"
            log.error("rotation failed", rotation=held.id, error=type(exc).__name__)
            # close() leaves a rotation whose key was journaled resumable (`rotator resume`).
            held.push("closed", {"reason": held.closed_reason, "resume": f"rotator resume {rot.id}"})
            await self._release(held)
            raise ApiError(500, f"the rotation failed ({type(exc).__name__}); see `rotator show {rot.id}`") from None
        finally:
            del secret
        if report.state in ("refused", "unavailable"):
            held.state = "armed"
            self._refused(held, report.message, report)
            return report
        held.report = report
        held.state = "finished"
        self.metrics.observe_report(report)
        held.push("report", {"report": report.as_dict()})
        log.info("rotation finished", plan=held.plan.name, rotation=held.id, state=report.state)
        await self._release(held)
        return report

    async def _release(self, held: Held) -> None:
        if held.keeper is not None and held.keeper is not asyncio.current_task():
            held.keeper.cancel()
        await arm.disarm(held.rot)  # also drops its copy of the old key
        self.metrics.armed.set(sum(1 for h in self.held.values() if h.state == "armed"))
        asyncio.get_running_loop().call_later(KEEP_FINISHED, self.held.pop, held.id, None)

    def _spawn_close(self, held: Held, why: str) -> None:
        task = asyncio.ensure_future(self.close(held.id, why))
        self._track(task)

    async def close(self, rid: str, why: str) -> None:
        """Close an armed rotation that will get no key (journaled as aborted, or as
        refused when its last key was refused)."""
        held = self.held.get(rid)
        if held is None or held.state != "armed":
            return
        held.state = "closed"
        held.closed_reason = why
        rot = held.rot
        if held.last_refusal is not None and rot.report is None:
            with contextlib.suppress(Exception):
                await finish.abandon(rot, finish.not_written(rot, held.last_refusal["message"]))
        await self._release(held)
        held.push("closed", {"reason": why})
        log.info("armed rotation closed", rotation=rid, why=why)

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
        rot = RotationState(plan, self.journal, kind="sync", reason=reason, operator=f"rotator serve ({trigger})")
        try:
            armed = await arm.run(rot)
            self.metrics.observe_arm(plan.name, "sync", armed.seconds)
            if not armed.ok:
                raise ApiError(409, "cannot sync: " + "; ".join(armed.problems()), preflight=preflight(rot))
            report = await (pipeline.check_drift(rot) if check_only else pipeline.sync(rot))
        except RotationError as exc:
            raise ApiError(409 if exc.exit_code == Exit.BUSY else 500, str(exc), **exc.details) from None
        finally:
            await arm.disarm(rot)
        self.metrics.observe_report(report)
        return report

    # -- reading ---------------------------------------------------------
    def plan_state(self, plan: Plan) -> dict[str, Any]:
        from rotator.service.agejob import key_age

        age = key_age(self.journal, plan)
        rows = self.journal.history(plan.name, 50)
        last_rot = next((r for r in rows if r.kind == "rotate" and r.state not in ("aborted",)), None)
        last_sync = next((r for r in rows if r.kind == "sync"), None)
        fp, fp_from = None, None
        for r in rows:
            if r.state in ("done", "partial", "drift") and (r.new_fp or r.old_fp):
                fp, fp_from = (r.new_fp or r.old_fp), r.id
                break
        drift: dict[str, bool] = {}
        for r in rows:
            if r.state in ("done", "partial", "drift") and r.report and r.report.get("targets"):
                for t in r.report["targets"]:
                    if t.get("kind") == "backend" and not t.get("primary"):
                        drift[t["name"]] = t.get("status") in BAD
                break
        armed = next((h.id for h in self.held.values() if h.plan.name == plan.name and h.state == "armed"), None)
        return {
            "name": plan.name,
            "description": plan.secret.description,
            "path": str(plan.path),
            "primary": plan.primary.name,
            "backends": [{"name": b.name, "type": b.type, "primary": b.primary} for b in plan.backends],
            "consumers": [{"name": c.name, "type": c.type} for c in plan.consumers],
            "schedules": [
                {"job": s.job, "cron": s.cron, "every": s.every, "when": s.when, "notify": s.notify is not None}
                for s in plan.schedules
            ],
            "fingerprint": fp,
            "fingerprint_from": fp_from,
            "key_age": age.as_dict(),
            "last_rotation": _brief(last_rot),
            "last_sync": _brief(last_sync),
            "drift": drift,
            "drifted": sorted(n for n, d in drift.items() if d),
            "armed_rotation": armed,
            "lock": self.journal.lock_info(plan.name),  # held by any replica: who, since when
            "probe": plan.probe.enabled,
        }

    # -- shutdown --------------------------------------------------------
    def begin_drain(self) -> None:
        """Stop taking new work; close rotations still waiting for a key."""
        if self.draining:
            return
        self.draining = True
        log.info("shutting down: no new rotations; waiting for those in flight")
        for h in list(self.held.values()):
            if h.state == "armed":
                self._spawn_close(h, "the service is shutting down")

    async def drain(self, timeout: float) -> list[str]:
        """Wait (at most `timeout`) for rotations and syncs in flight.  Returns the ids
        of rotations still writing when time ran out: their journal entries stay as
        they are (primary written or fanning out), so `rotator resume ID` finishes them."""
        self.begin_drain()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=max(timeout, 0.0))
        left = [h.id for h in self.held.values() if h.state == "rotating"]
        for rid in left:
            log.warning("rotation still in flight at shutdown; resumable", rotation=rid, resume=f"rotator resume {rid}")
        for h in list(self.held.values()):
            if h.state == "armed":
                await self.close(h.id, "the service is shutting down")
        return left


def _brief(row: RotationRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "id": row.id,
        "state": row.state,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
        "window_seconds": row.window_s,
        "fingerprint": row.new_fp or row.old_fp,
        "operator": row.operator,
    }
