"""Runs that take no key, from the page, the API and the scheduler: resume, sync, the drift
check (on `pipeline.oneshot`, as the CLI runs them) and an alternating plan's slots.

A one-shot is journaled the same way whoever started it: a drift check is kind `check`, a
resume records who started it before it arms.  It is told to the plan's ``[[notify]]``
entries when it is news (`notify.policy.is_news`: it failed or wrote something).  A sync that
could not run at all (a target not ready, the journal unreachable) is told as a failed sync:
the schedule runs it with nobody watching.  A sync skipped because the plan is locked (a
rotation armed) is journaled as skipped and is not news.  A resume or a check that could not
run is answered to whoever asked.

Each run is the service's task, not the request's: shutdown waits for it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.pipeline import oneshot
from rotator.pipeline.oneshot import OneShot
from rotator.pipeline.session_types import NotArmed
from rotator.report import REKEY_LEFT_LINE, RESUMABLE, Report, RunState
from rotator.service.errors import NoSuch, Refused, Stopped, Unreachable
from rotator.service.views import preflight

if TYPE_CHECKING:
    from rotator.journal import RotationRow
    from rotator.pipeline.state import RotationState
    from rotator.plan import Plan
    from rotator.service.context import ServiceContext
    from rotator.service.rotations import Rotations

# An alternating plan's refusals before anything is asked: the slot record cannot be trusted,
# or the step would put an incident's leaked key back in use (the line says how to go on).
REFUSED_ALTERNATING = (Exit.SLOT_RECORD, Exit.LEAKED_KEY)


async def resume(ctx: ServiceContext, rotations: Rotations, rid: str, *, operator: str, reason: str = "") -> Report:
    """`rotator resume ID` from the page: finish a partial or interrupted rotation from the
    key in its primary."""
    ctx.refuse_if_draining()
    row = await asyncio.to_thread(ctx.journal.get, rid)
    if row is None:
        raise NoSuch(f"no rotation {rid} in the journal")
    if row.state == RunState.REKEY_LEFT:  # the operator's reset is left: the plan's next arm asks for it
        raise Refused(f"rotation {row.id}: {REKEY_LEFT_LINE.format(plan=row.plan_path)}", left="rekey")
    if row.state not in RESUMABLE:
        why = "is done" if row.state == RunState.DONE else f"never wrote the primary ({row.state}): arm it again"
        raise Refused(f"rotation {row.id} {why}")
    if (held := rotations.held.get(row.id)) is not None and not held.done:
        raise Refused(f"rotation {row.id} is still running here")
    plan = ctx.plan(row.plan)
    return await asyncio.shield(ctx.spawn(_resume(ctx, plan, row, operator, reason)))


async def _resume(ctx: ServiceContext, plan: Plan, row: RotationRow, operator: str, reason: str) -> Report:
    state = oneshot.state_for(OneShot.RESUME, plan, ctx.journal, row=row, operator=operator, reason=reason)
    by = f"by {operator}" + (f": {reason}" if reason else "")
    try:
        report = await oneshot.run(state, OneShot.RESUME, row=row, by=by)
    except (NotArmed, RotationError) as exc:
        raise _stopped(state, exc) from None
    ctx.metrics.observe_report(report)
    ctx.tell(plan, report)
    return report


async def sync(
    ctx: ServiceContext,
    plan_name: str,
    *,
    check_only: bool = False,
    trigger: str = "api",
    reason: str | None = None,
    operator: str | None = None,
) -> Report:
    """A journaled sync (or drift check) of one plan."""
    ctx.refuse_if_draining()
    plan = ctx.plan(plan_name)
    what = OneShot.CHECK if check_only else OneShot.SYNC
    who = operator or f"rotator serve ({trigger})"
    return await asyncio.shield(ctx.spawn(_sync(ctx, plan, what, reason or trigger, who)))


async def _sync(ctx: ServiceContext, plan: Plan, what: OneShot, reason: str, operator: str) -> Report:
    state = oneshot.state_for(what, plan, ctx.journal, operator=operator, reason=reason)
    try:
        report = await oneshot.run(state, what)
    except (NotArmed, RotationError) as exc:
        if isinstance(exc, RotationError) and exc.details.get("skipped"):
            # The plan is locked (a rotation armed): skipped, journaled as such; not news.
            ctx.metrics.observe_skipped(plan.name, state.kind)
            raise Stopped(str(exc), exit_code=exc.exit_code, **exc.details) from None
        ctx.metrics.runs.labels(plan.name, state.kind, RunState.FAILED).inc()
        if what is OneShot.SYNC:  # a sync that could not run is a failure worth telling
            ctx.tell(plan, _not_run(state, exc))
        raise _stopped(state, exc) from None
    finally:
        if state.armed is not None:
            ctx.metrics.observe_arm(plan.name, state.kind, state.armed.seconds)
    ctx.metrics.observe_report(report)
    ctx.tell(plan, report)
    return report


def _stopped(state: RotationState, exc: NotArmed | RotationError) -> Stopped:
    """A one-shot that did not run, in the service's words: its exit code, and the preflight
    of a target not ready."""
    if isinstance(exc, NotArmed):
        return Stopped(str(exc), exit_code=exc.exit_code, preflight=preflight(state))
    return Stopped(str(exc), exit_code=exc.exit_code, **exc.details)


def _not_run(state: RotationState, exc: NotArmed | RotationError) -> Report:
    """The report of a run that could not run: failed, with its exit code and its one line."""
    return Report(
        id=state.id or "",
        kind=state.kind,
        plan=state.plan.name,
        state=RunState.FAILED,
        exit_code=int(exc.exit_code),
        reason=state.reason,
        operator=state.operator,
        message=str(exc),
    )


async def slots(ctx: ServiceContext, plan_name: str) -> dict[str, Any]:
    """An alternating plan's slots, as `rotator status --json` prints them (from the backends)."""
    from rotator.pipeline.slot_status import status_data, survey

    plan = ctx.plan(plan_name)
    if not plan.alternating:
        raise NoSuch(f"{plan.name} is a single-app plan: it has no slots")
    try:
        alt = await survey(plan, ctx.journal)
    except RotationError as exc:
        if exc.exit_code in REFUSED_ALTERNATING:
            raise Stopped(str(exc), exit_code=exc.exit_code) from None
        raise Unreachable(str(exc)) from None
    return await asyncio.to_thread(status_data, plan, alt, ctx.journal)


__all__ = ["REFUSED_ALTERNATING", "resume", "slots", "sync"]
