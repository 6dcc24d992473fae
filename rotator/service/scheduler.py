"""The plans' `[[schedules]]` on APScheduler 3, with jobs kept in the journal's database.

Jobs are stored by reference (``rotator.service.scheduler:sync_job`` and its
keyword arguments: plan name, schedule index), so they survive a restart and
a service that was down catches up: `coalesce` folds every run it missed into
one, and `misfire_grace_time` (default: no limit) lets that one run however
late it is.  `max_instances = 1`: a sync still running when the next is due is
not doubled (and the journal lock keeps a sync off a plan that is being rotated).

On start the stored jobs are reconciled with the plans: a job whose schedule is
unchanged keeps its stored next run time (that is what makes catching up work),
a changed one is rescheduled, a job of a removed schedule is deleted.

Several replicas share the job store (one schedule for all, kept in the
database).  APScheduler 3 does not coordinate schedulers sharing a store:
each replica fires every due job.  So each run is *claimed* first: a row
(job id, scheduled time) in the journal's `job_runs` table, whose primary key
lets exactly one replica insert it; the others skip that tick.  The claim is
keyed on the scheduled time (the same on every replica, whatever their
clocks), is durable (a crashed replica cannot make a tick run twice), and
works on SQLite too.  An advisory lock held for the job's duration would not
do: a replica firing a moment after the first one finished would get it and
run the tick again.  What replicas write to the shared store per tick is the
same next run time, computed from the same trigger; a write that finds the
job gone (another replica's reconcile removed it) is ignored, and reconcile
itself runs on one replica at a time.

The job functions find the running service through `set_service`; they take
only picklable arguments, as a persistent job store needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rotator.logs import get_logger

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from rotator.plan import Plan, ScheduleSpec
    from rotator.service.core import Service

log = get_logger("rotator.service.scheduler")

JOB_PREFIX = "rotator/"
JOB_FUNCS = {
    "sync": "rotator.service.scheduler:sync_job",
    "age-check": "rotator.service.scheduler:age_check_job",
}

_service: Service | None = None
# The scheduled time of the run in progress (set by the executor, read by the jobs).
scheduled_for: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("scheduled_for", default=None)


def set_service(service: Service | None) -> None:
    global _service
    _service = service


def _current() -> Service:
    if _service is None:
        raise RuntimeError("no rotator service is running in this process")
    return _service


# -- job functions (module level: stored by reference) ---------------------
async def sync_job(plan_name: str, schedule_index: int = 0) -> str:
    """Copy the primary's key to every backend that drifted; journaled.  Returns the
    final state (done, partial, busy, failed, ...)."""
    from rotator.service.errors import ServiceError

    service = _current()
    if plan_name not in service.plans:
        log.warning("scheduled sync of a plan that is not loaded", plan=plan_name)
        return "unknown-plan"
    if service.draining:
        return "draining"
    when = scheduled_for.get()
    reason = "schedule"
    if when is not None:  # which tick, run by which replica: the journal says it
        from rotator.journal import replica_id, run_time_key

        reason = f"schedule {run_time_key(when)} on {replica_id()}"
    try:
        report = await service.sync(plan_name, trigger="schedule", reason=reason)
    except ServiceError as exc:
        if exc.details.get("skipped"):  # journaled as skipped, counted, not notified
            log.info("scheduled sync skipped: the plan is locked", plan=plan_name, why=str(exc))
            return "skipped"
        log.warning("scheduled sync failed", plan=plan_name, why=str(exc))
        return "failed"
    changed = [t.name for t in report.targets if t.kind == "backend" and t.status == "ok" and not t.primary]
    level = log.warning if report.state != "done" or changed else log.info
    level(
        "scheduled sync",
        plan=plan_name,
        state=report.state,
        rotation=report.id,
        repaired=changed or None,
        message=report.message,
    )
    return report.state


async def age_check_job(plan_name: str, schedule_index: int = 0) -> str:
    """Key age against max_age_days: gauge, log, optional notify webhook.  Returns the status."""
    from rotator.service.agejob import age_check

    service = _current()
    if plan_name not in service.plans:
        log.warning("scheduled age check of a plan that is not loaded", plan=plan_name)
        return "unknown-plan"
    age = await age_check(service, plan_name, schedule_index)
    return age.status


# -- wiring ----------------------------------------------------------------
@dataclass(frozen=True)
class JobSpec:
    id: str
    func: str
    cron: str | None
    kwargs: dict[str, Any]
    name: str
    every: int | None = None


# `every = N` ticks are counted from this instant, so they fall on the same
# times on every replica (and across restarts).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def job_specs(plans: list[Plan]) -> list[JobSpec]:
    out = []
    for plan in plans:
        for i, s in enumerate(plan.schedules):
            out.append(
                JobSpec(
                    id=f"{JOB_PREFIX}{plan.name}/{i}/{s.job}",
                    func=JOB_FUNCS[s.job],
                    cron=s.cron,
                    every=s.every,
                    kwargs={"plan_name": plan.name, "schedule_index": i},
                    name=f"{s.job} {plan.name} ({_when(s)})",
                )
            )
    return out


def _when(s: ScheduleSpec | JobSpec) -> str:
    return s.cron if s.cron is not None else f"every {s.every}s"


def make_trigger(spec: JobSpec, timezone: Any) -> Any:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if spec.cron is not None:
        return CronTrigger.from_crontab(spec.cron, timezone=timezone)
    return IntervalTrigger(seconds=spec.every or 60, start_date=EPOCH, timezone=timezone)


def make_scheduler(engine: Any, *, misfire_grace_time: int | None = None, timezone: Any = None) -> AsyncIOScheduler:
    """An AsyncIOScheduler whose jobs live in the journal's database (table
    apscheduler_jobs), each run claimed in `job_runs` so that one replica runs it
    (`job_claims`)."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from rotator.journal import ensure_tables, replica_id
    from rotator.service.job_claims import ClaimingExecutor, SharedJobStore

    store = SharedJobStore(engine=engine)
    ensure_tables(engine, store.jobs_t)  # before start(): replicas starting at once must not race on it
    executor = ClaimingExecutor(engine, replica_id(), prefix=JOB_PREFIX, scheduled_for=scheduled_for)
    options: dict[str, Any] = {
        "jobstores": {"default": store},
        "executors": {"default": executor},
        "job_defaults": {"coalesce": True, "max_instances": 1, "misfire_grace_time": misfire_grace_time},
    }
    if timezone is not None:
        options["timezone"] = timezone
    scheduler = AsyncIOScheduler(**options)
    scheduler.rotator_engine = engine  # reconcile takes a lock in it
    return scheduler


def reconcile(scheduler: AsyncIOScheduler, plans: list[Plan]) -> dict[str, str]:
    """Make the stored jobs match the plans' schedules.  Call between
    `start(paused=True)` and `resume()`.  Returns {job id: kept|added|rescheduled|removed}.
    Replicas reconcile one at a time (an advisory lock on PostgreSQL)."""
    from rotator.journal import exclusive

    engine = getattr(scheduler, "rotator_engine", None)
    with exclusive(engine, "scheduler-reconcile") if engine is not None else contextlib.nullcontext():
        return _reconcile(scheduler, plans)


def _reconcile(scheduler: AsyncIOScheduler, plans: list[Plan]) -> dict[str, str]:
    outcome: dict[str, str] = {}
    wanted = job_specs(plans)
    defaults = scheduler._job_defaults  # what new jobs get; a kept job is brought in line with it
    for spec in wanted:
        trigger = make_trigger(spec, scheduler.timezone)
        job = scheduler.get_job(spec.id)
        if job is not None and job.func_ref == spec.func and str(job.trigger) == str(trigger):
            changes: dict[str, Any] = {}
            if job.kwargs != spec.kwargs:
                changes["kwargs"] = spec.kwargs
            for key in ("coalesce", "max_instances", "misfire_grace_time"):
                if getattr(job, key) != defaults[key]:
                    changes[key] = defaults[key]
            if changes:
                scheduler.modify_job(spec.id, **changes)
            outcome[spec.id] = "kept"
            continue
        if job is not None:
            scheduler.remove_job(spec.id)
        scheduler.add_job(spec.func, trigger, id=spec.id, name=spec.name, kwargs=spec.kwargs)
        outcome[spec.id] = "rescheduled" if job is not None else "added"
    ids = {s.id for s in wanted}
    for job in scheduler.get_jobs():
        if job.id.startswith(JOB_PREFIX) and job.id not in ids:
            scheduler.remove_job(job.id)
            outcome[job.id] = "removed"
    return outcome


def describe_jobs(scheduler: AsyncIOScheduler) -> list[dict[str, Any]]:
    return [
        {
            "id": j.id,
            "name": j.name,
            "next_run_time": j.next_run_time.isoformat() if j.next_run_time else None,
        }
        for j in scheduler.get_jobs()
    ]


async def run_now(scheduler: AsyncIOScheduler, job_id: str) -> None:
    """Make a stored job due now (tests, and an operator's "run it now")."""
    from datetime import datetime

    scheduler.modify_job(job_id, next_run_time=datetime.now(scheduler.timezone))
    await asyncio.sleep(0)
