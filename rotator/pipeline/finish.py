"""Finish: the report of a rotation, and the journal entry closed with it.

Also the reports of attempts that wrote nothing (a refused key, a dry run, a
primary that was not written) and the closing of their entries.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from rotator.exitcodes import Exit
from rotator.logs import get_logger
from rotator.pipeline import outage
from rotator.probe import ProbeOutcome
from rotator.report import BAD, Report, RunKind, RunState, Step, TargetStatus, unlabelled

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.probe import ProbeResult
    from rotator.report import TargetResult
    from rotator.secret import Secret

JOURNAL_RETRY_FOR = 10.0  # seconds the final record of a run that wrote its key is retried
log = get_logger("rotator.rotate")
NOT_REVOKED = "the OLD key still works against the API: it has NOT been revoked"


async def run(state: RotationState, secret: Secret) -> Report:
    """Wait for the old-key check, report every target, close the journal entry."""
    revocation = await state.revocation if state.revocation else None
    await outage.settle(state)
    out = report(state, secret, revocation)
    outage.measure(state, out)
    return await close_journal(state, out)


def report(state: RotationState, secret: Secret, revocation: ProbeResult | None = None) -> Report:
    results = state.results.values()
    ends = [r.finished for r in results if r.finished is not None]
    window = max(ends) if ends else state.since_key()
    bad = [r for r in results if r.status in BAD]
    warnings = state.warnings
    if revocation is not None:
        if revocation.outcome is ProbeOutcome.REFUSED:
            warnings.append(NOT_REVOKED)
        elif revocation.outcome is not ProbeOutcome.ACCEPTED:
            warnings.append(f"could not check that the old key is revoked: {revocation.detail}")
    drift = repaired(state, secret) if state.kind == RunKind.SYNC else None
    return Report(
        id=state.id,
        kind=state.kind,
        plan=state.plan.name,
        state=RunState.PARTIAL if bad else RunState.DONE,
        exit_code=int(Exit.PARTIAL if bad else Exit.DONE),
        reason=state.reason,
        operator=state.operator,
        old_fingerprint=state.armed.old_fingerprint if state.armed else None,
        new_fingerprint=secret.fingerprint,
        window=window,
        steps=state.steps,
        probe=state.probe,
        revocation=revocation,
        targets=list(results),
        warnings=warnings,
        message=_message(state, bad, window),
        drift=drift,
    )


def _message(state: RotationState, bad: list[TargetResult], window: float) -> str:
    """The outcome line: a sync's (no new key), or a rotation's, naming what is not finished."""
    names = ", ".join(f"{r.name} ({r.status})" for r in bad)
    if state.kind == RunKind.SYNC:  # a sync copies what the primary holds: there is no new key
        written = sum(1 for r in state.results.values() if r.kind == "backend" and r.status == TargetStatus.OK)
        if bad:
            return f"not every target has the primary's key: {names}; run `rotator sync` again"
        return f"every backend matches the primary ({written} written)"
    if bad:
        return f"the primary holds the new key; not finished: {names}; run `rotator resume {state.id}`"
    return f"every target holds the new key; window {window:.3f}s"


def repaired(state: RotationState, secret: Secret) -> list[dict[str, object]]:
    """A sync's repairs: each backend it wrote (it differed from the primary), with its
    fingerprint before and after and what the backend recorded of the change it undid."""
    armed = state.armed
    out: list[dict[str, object]] = []
    for r in state.results.values():
        if r.kind != "backend" or r.primary or r.status != TargetStatus.OK:
            continue
        seen = armed.changed.get(r.name, {}) if armed else {}
        out.append(
            {
                "backend": r.name,
                "type": r.type,
                "before": armed.current.get(r.name) if armed else None,
                "after": r.fingerprint or secret.fingerprint,
                "version_before": seen.get("version"),
                "changed_at": seen.get("changed_at"),
                "changed_by": seen.get("changed_by"),
                "version_after": r.version,
            }
        )
    return out


async def primary_failed(state: RotationState, secret: Secret) -> Report:
    """The primary was not written: nothing else is; journal why."""
    if state.revocation is not None:
        state.revocation.cancel()
    primary = state.results[state.plan.primary.name]
    out = report(state, secret)
    outage.measure(state, out)
    conflict = primary.status == TargetStatus.CONFLICT
    out.state = RunState.CONFLICT if conflict else RunState.FAILED
    out.exit_code = int(Exit.CONFLICT if conflict else Exit.PRIMARY_FAILED)
    out.message = (
        f"the primary ({primary.name}) was not written: {unlabelled(primary.name, primary.detail)}; "
        "nothing else was written"
    )
    if not conflict:
        # The key may already be reset: it is on the operator's screen only.  Fix the primary, paste it again.
        out.message += f"; fix {primary.name} and run `rotator rotate` again with the same new key"
    return await close_journal(state, out)


def not_written(
    state: RotationState,
    message: str,
    *,
    run_state: str = RunState.REFUSED,
    code: Exit = Exit.KEY_REFUSED,
    probe: ProbeResult | None = None,
) -> Report:
    """The report of an attempt that wrote nothing (a refused or rejected key, a dry run)."""
    old_fp = state.armed.old_fingerprint if state.armed else None
    return _of_run(state, run_state, code, message, old_fingerprint=old_fp, probe=probe)


def row_report(
    state: RotationState,
    row: TargetResult | None,
    *,
    run_state: str,
    code: int,
    message: str,
    old_fp: str | None,
    new_fp: str | None,
    window: float | None,
) -> Report:
    """The report of a run whose one write is `row` (a re-key's standby write; None: nothing was tried)."""
    targets = [row] if row is not None else []
    return _of_run(
        state, run_state, code, message, old_fingerprint=old_fp, new_fingerprint=new_fp, window=window, targets=targets
    )


def _of_run(state: RotationState, run_state: str, code: int, message: str, **fields: Any) -> Report:
    """A report of this run (its id, kind, plan, reason and operator) in `run_state` with `code`."""
    return Report(
        id=state.id,
        kind=state.kind,
        plan=state.plan.name,
        state=run_state,
        exit_code=int(code),
        reason=state.reason,
        operator=state.operator,
        message=message,
        **fields,
    )


async def abandon(state: RotationState, report: Report) -> Report:
    """Close the journal entry of a rotation that wrote nothing (no report event: no window)."""
    return await close_journal(state, report, event=False)


async def close_journal(state: RotationState, report: Report, *, event: bool = True) -> Report:
    """Record `report` as the entry's final state (and, by default, as its last event).

    Once the primary holds the key (`key_journaled`), a journal that cannot be written
    never turns the run into a failure: the record is retried for `JOURNAL_RETRY_FOR`
    seconds, then the report says what the targets hold and that the journal still
    shows the run unfinished, which `rotator resume` (Resume on the page) records."""
    state.report = report
    if state.incident and report.incident is None:
        mark_incident(state, report)
    if event:
        state.event(Step.REPORT, report.state, detail=report.message, seconds=report.window)
    try:
        await _final_record(state, report)
    except sa.exc.DBAPIError as exc:
        if not state.key_journaled:
            raise
        log.error("journal not written at the end; the report says so", rotation=state.id, error=type(exc).__name__)
        report.warnings.append(
            f"the journal could not be written ({type(exc).__name__}, retried for {JOURNAL_RETRY_FOR:.0f}s): "
            f"it still shows this run unfinished; once the database is back, Resume on the page "
            f"(or `rotator resume {state.id}`) records it, writing nothing that already holds the key"
        )
        report.journal_written = False
    return report


async def _final_record(state: RotationState, report: Report) -> None:
    await state.journal_update(
        retry_for=JOURNAL_RETRY_FOR if state.key_journaled else 0.0,
        state=report.state,
        exit_code=report.exit_code,
        finished_at=time.time(),
        window_s=report.window,
        outage_s=report.outage,
        operator_s=report.operator_share,
        reset_at=report.reset["at"] if report.reset else None,
        refused_keys=len(report.refused_keys),
        report=report.as_dict(),
    )


def mark_incident(state: RotationState, report: Report) -> None:
    """`rotate --incident` of a single-app plan: the report and the journal say it was an incident,
    which key leaked, and whether the API proved it dead (the old-key check, always run then)."""
    check = report.revocation
    # old_key_revoked's answer: ACCEPTED means the check passed (the API refused the old key).
    revoked = None if check is None else {ProbeOutcome.ACCEPTED: True, ProbeOutcome.REFUSED: False}.get(check.outcome)
    leaked = report.old_fingerprint
    if report.new_fingerprint is None:
        line = f"incident: nothing was written; the leaked key ({leaked}) is still the one in use"
    elif revoked:
        line = f"incident: the leaked key ({leaked}) is proven revoked (the API refuses it)"
    elif revoked is False:
        line = f"incident: the leaked key ({leaked}) STILL WORKS: reset the app key in the dashboard now"
    else:
        why = check.detail if check is not None else "no probe in the plan"
        line = f"incident: the leaked key ({leaked}) is NOT proven revoked ({why}): check the dashboard"
    report.incident = {"leaked_fingerprint": leaked, "revoked": revoked, "detail": line}
    status = "not_written" if report.new_fingerprint is None else ("unknown" if revoked is None else "revoked")
    if revoked is False:
        status = "not_revoked"
    state.event(Step.INCIDENT, status, detail=line, fingerprint=leaked)
