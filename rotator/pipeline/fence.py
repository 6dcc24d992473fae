"""The plan lock, re-validated before each durable step of a run.

A PostgreSQL restart ends the session holding the plan's advisory lock; another
replica may then take the plan.  So before the primary is written, and again
before the fan-out, the run checks that it still holds the plan
(`Journal.verify_lock`: re-taken when nobody took it meanwhile).  A run that lost
it stops and says so (exit `LOCK_LOST`): before the primary, nothing was written;
after it, the targets not yet written are left as they are and the journal entry
stays resumable.  A database that cannot be reached at that moment cannot hand
the lock to anyone either: before the primary the run stops (nothing written),
after it the fan-out goes on (the primary already holds the key) with a warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.journal import LockLost
from rotator.logs import get_logger
from rotator.pipeline import finish
from rotator.report import RunState, TargetStatus

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.report import Report
    from rotator.secret import Secret

log = get_logger("rotator.fence")


async def _lost(state: RotationState) -> LockLost | None:
    """None while this run still holds its plan; the `LockLost` when it does not."""
    if not state.locked or not state.id:
        return None
    try:
        await state.journal_call(state.journal.verify_lock, state.plan.name, state.id)
    except LockLost as exc:
        log.error("plan lock lost", rotation=state.id, why=exc.why)
        return exc
    return None


async def before_primary(state: RotationState) -> Report | None:
    """None to go on; else the (journaled) report of a run that wrote nothing."""
    try:
        lost = await _lost(state)
    except sa.exc.DBAPIError as exc:
        raise RotationError(
            f"the journal's database cannot be reached to check the plan's lock ({type(exc).__name__}): "
            "nothing was written; arm again once it is back",
            Exit.JOURNAL,
        ) from None
    if lost is None:
        return None
    message = f"{lost}; nothing was written: arm the plan again once the other rotation is over"
    report = finish.not_written(state, message, run_state=RunState.ABORTED, code=Exit.LOCK_LOST)
    return await finish.abandon(state, report)


async def before_fan_out(state: RotationState, secret: Secret) -> Report | None:
    """After the primary holds the key: None to go on; else the report of a run that
    stopped there (every other target left as it is, the entry resumable)."""
    try:
        lost = await _lost(state)
    except sa.exc.DBAPIError as exc:
        state.warnings.append(
            f"could not re-check the plan's lock (the journal's database: {type(exc).__name__}); "
            "the primary holds the key, so the other targets were written anyway"
        )
        return None
    if lost is None:
        return None
    primary = state.plan.primary.name
    rest = (
        "the other targets were NOT written: the next sync repairs them"
        if state.kind == "sync"
        else "the primary holds the new key, the other targets were NOT written: once the plan is free, "
        f"`rotator resume {state.id}` (or Resume on the page) finishes it"
    )
    for res in state.results.values():
        if res.name != primary and res.status == TargetStatus.PENDING:
            res.status = TargetStatus.SKIPPED
            res.detail = "not written: this run lost the plan's lock"
    out = finish.report(state, secret)
    out.state = RunState.PARTIAL
    out.exit_code = int(Exit.LOCK_LOST)
    out.message = f"{lost}; {rest}"
    return await finish.close_journal(state, out)


async def before_ask(state: RotationState) -> None:
    """Before an operator is asked to reset a key: raise RotationError when this run lost its
    plan (a database that cannot be reached cannot hand the plan to anyone: the ask goes on)."""
    try:
        lost = await _lost(state)
    except sa.exc.DBAPIError:
        return
    if lost is not None:
        raise RotationError(f"{lost}: stopped before asking for a reset", Exit.LOCK_LOST, lost.as_dict())
