"""One-shot runs: arm → check → run → disarm, for runs that take no key (resume, sync, a drift check).

Every front end (the CLI's `resume` and `sync`, the service's API and scheduler) runs them
through `run`, so they are journaled the same way whoever started them: a drift check is
kind `check` (it writes nothing), a sync kind `sync`, and a resume records who started it
(`Step.RESUME`, "started") before it arms.  A target that is not ready raises `NotArmed`
(its `armed` lists the problems; nothing ran); a refused arm (the plan is locked) raises
`RotationError`.  Each front end maps those to its own edge (an exit code, an HTTP status).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from rotator import pipeline
from rotator.pipeline import arm
from rotator.pipeline.instructions import not_armed_message
from rotator.pipeline.session_types import NotArmed
from rotator.pipeline.state import RotationState
from rotator.report import PRIMARY_UNSURE, RunKind, Step

if TYPE_CHECKING:
    from rotator.journal import Journal
    from rotator.journal.store import RotationRow
    from rotator.plan import Plan
    from rotator.report import ProgressFn, Report


class OneShot(StrEnum):
    RESUME = "resume"  # finish a journaled rotation from the key in its primary
    SYNC = "sync"  # copy the primary's key wherever it differs
    CHECK = "check"  # report the drift only; write nothing


def state_for(
    what: OneShot,
    plan: Plan,
    journal: Journal,
    *,
    row: RotationRow | None = None,
    operator: str | None = None,
    reason: str = "",
    progress_fn: ProgressFn | None = None,
) -> RotationState:
    """The state a one-shot runs on: a resume continues its journal entry (`row`); a sync or a
    check opens its own, of its own kind."""
    if what is OneShot.RESUME:
        assert row is not None, "a resume continues a journal entry"
        state = RotationState(plan, journal, id=row.id, reason=reason or row.reason)
    else:
        kind = RunKind.CHECK if what is OneShot.CHECK else RunKind.SYNC
        state = RotationState(plan, journal, kind=kind, reason=reason)
    if operator is not None:
        state.operator = operator
    if progress_fn is not None:
        state.progress_fn = progress_fn
    return state


async def run(state: RotationState, what: OneShot, *, row: RotationRow | None = None, by: str = "") -> Report:
    """Arm `state`, run the one-shot, disarm (always).  `row`: the entry a resume finishes;
    `by`: who started it (journaled with the resume)."""
    if what is OneShot.RESUME:
        assert row is not None, "a resume continues a journal entry"
        await state.journal_call(state.journal.record, row.id, Step.RESUME, "started", detail=by)
    try:
        armed = await arm.run(state)
        if not armed.ok:
            raise NotArmed(not_armed_message(armed, what.value), armed)
        if what is OneShot.RESUME:
            assert row is not None
            return await pipeline.resume(state, row.new_fp, primary_unsure=row.state in PRIMARY_UNSURE)
        if what is OneShot.CHECK:
            return await pipeline.check_drift(state)
        return await pipeline.sync(state)
    finally:
        await arm.disarm(state)
