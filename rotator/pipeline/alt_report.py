"""The one report an alternating flow ends with, from what its steps returned: which app is
active, the promote's window, each re-key (its row and revocation proof), a mistaken reset's
figures, and for an incident how long the leaked key stayed in use after the command started
and whether it is proven revoked.  Journaled with the entry (`finish.close_journal`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from rotator.exitcodes import Exit
from rotator.pipeline import finish, leaked, slots
from rotator.pipeline.alternating import IncidentChoice
from rotator.pipeline.rekey import StandbyRow
from rotator.probe import ProbeOutcome, ProbeResult
from rotator.report import KeyOutcome, Report, RunState

if TYPE_CHECKING:
    from rotator.pipeline.slots import Alternating
    from rotator.pipeline.state import RotationState
    from rotator.reset_watch import ResetDetected
    from rotator.secret import Secret


def mistaken_info(state: RotationState, alt: Alternating, report: Report, reset: ResetDetected | None) -> None:
    """What a mistaken reset of the active app cost, on the report (its warning and figures)."""
    end = (state.key_received_wall or time.time()) + (report.window or 0.0)
    began = reset.after_wall if reset is not None and reset.after_wall is not None else None
    info: dict[str, Any] = {
        "app": alt.active_app,
        "detected_at": reset.wall if reset else None,
        "reset_after": began,
        "consumers_back_at": end,
        "failed_call_window_s": round(end - began, 4) if began is not None else None,
    }
    report.warnings.append(
        f"the active app ({alt.active_app}) was reset by mistake: consumers failed"
        + (f" for about {end - began:.2f}s" if began is not None else "")
        + f" until its new key was confirmed; {alt.standby_app} was not re-keyed: `rotator rekey` does that"
    )
    report.alternating = {**alt.as_dict(), "mistaken_reset": info}


async def revoked_info(state: RotationState, alt: Alternating, report: Report, leaked_key: Secret | None) -> None:
    """Revoke now's figures on the report: the leaked key and whether it is proven refused."""
    info: dict[str, Any] = {
        "leaked_fingerprint": leaked_key.fingerprint if leaked_key else None,
        "choice": IncidentChoice.REVOKE_NOW.value,
    }
    if leaked_key is not None:
        check = await slots.probe_all(alt, leaked_key)
        info["leaked_revoked"] = check.refused
        info["revoked_at"] = time.time() if check.refused else None
    report.alternating = {**alt.as_dict(), "incident": info}


def described(report: Report, alt: Alternating) -> Report:
    """A promote's (or roll back's) report, saying which app is active now."""
    end = (alt.marks.get("window_start") or 0.0) + (report.window or 0.0)
    if report.exit_code == Exit.DONE and report.state == RunState.DONE:
        a, s = alt.slots.active, alt.slots.standby
        report.message = (
            f"{alt.active_app} is active ({a.fingerprint if a else '?'}), {alt.standby_app} is the standby "
            f"({s.fingerprint if s else '?'}); every target holds the active key; window {report.window or 0:.3f}s"
        )
        alt.marks["promoted_at"] = end
    report.alternating = {**alt.as_dict(), "promote": {"window_s": report.window, "state": report.state}}
    return report


async def finish_rekeys(
    state: RotationState,
    alt: Alternating,
    promoted: Report | None,
    rekeys: list[StandbyRow | Report],
    *,
    incident: bool = False,
) -> Report:
    """One report for the whole flow, closed in the journal by `finish`.  It starts from the
    mistaken reset's report when there was one, else the promote's, else the re-key's row's
    (`finish.row_report`); its state, exit code and message are `_outcome`'s (and for an
    incident `_incident_outcome`'s), its extras `extras`': functions of the standby rows."""
    rows = [r for r in rekeys if isinstance(r, StandbyRow)]
    fallback = next((r for r in rekeys if isinstance(r, Report)), None)
    if fallback is not None:
        base = fallback
    else:
        base = promoted if promoted is not None else _rekey_report(state, rows[-1] if rows else None)
    not_rekeyed = fallback is not None and promoted is None and not incident
    run_state, code, message = _outcome(
        state, alt, base, promoted, rows, keyed=fallback is None, not_rekeyed=not_rekeyed
    )
    inc, revocation = None, base.revocation
    if incident:
        inc = _incident(alt, promoted, rows)
        code, message = _incident_outcome(state, inc, code, message)
        revocation = _leaked_check(alt, inc)  # `old_key_check` is the leaked key's, never another's
    if any(r.written for r in rows):
        await leaked.close_rekey_left(state)  # earlier runs that promoted and left this re-key
    report = dataclasses.replace(
        base,
        state=run_state,
        exit_code=code,
        message=message,
        revocation=revocation,
        alternating=extras(alt, base.alternating, promoted, rows, inc),
    )
    return await finish.close_journal(state, report, event=False)


def extras(
    alt: Alternating,
    base: dict[str, Any] | None,
    promoted: Report | None,
    rows: list[StandbyRow],
    incident: dict[str, Any] | None,
) -> dict[str, Any]:
    """The report's `alternating` extras: the slots as they are now, the promote's window, each
    standby row (`row_dict`), a mistaken reset's figures and an incident's."""
    info = dict(base or {})
    info.update(alt.as_dict())
    if promoted is not None:
        info["promote"] = {"window_s": promoted.window, "state": promoted.state}
    info["rekeys"] = [row_dict(r) for r in rows]
    if alt.notes.get("mistaken_reset"):
        info["mistaken_reset"] = alt.notes["mistaken_reset"]
    if incident is not None:
        info["incident"] = incident
    return info


def row_dict(row: StandbyRow) -> dict[str, object]:
    """One re-key as the report's `alternating.rekeys` lists it."""
    return {
        "outcome": row.outcome.value,
        "app": row.app,
        "message": row.message,
        "fingerprint": row.key,
        "previous_fingerprint": row.previous,
        "previous_revoked": row.revoked,
        "revoked_at": row.revoked_at,
        "seconds": round(row.finished or 0.0, 4),
    }


def _outcome(
    state: RotationState,
    alt: Alternating,
    base: Report,
    promoted: Report | None,
    rows: list[StandbyRow],
    *,
    keyed: bool,
    not_rekeyed: bool,
) -> tuple[str, int, str]:
    """The flow's state, exit code and message, from the report it starts from and the standby
    rows (nothing mutated).  A key the operator reset and that is not stored is never "done"; a
    refused or failed re-key is the flow's exit code; after a promote the message says both
    moves, and a promote whose re-key is not done is `rekey_left`, never "done".  `not_rekeyed`:
    a re-key that became the active app's single-app rotation (the standby was not re-keyed)."""
    run_state, code, message = base.state, base.exit_code, base.message
    if not_rekeyed and code == Exit.DONE:
        code, message = Exit.NOT_REKEYED, message + _not_rekeyed_line(state, alt)
    failed = next((r for r in rows if not r.written), None)
    if failed is not None and failed.outcome is KeyOutcome.FAILED:
        run_state = RunState.FAILED
    if not keyed:
        return run_state, int(code), message
    if failed is not None and code == Exit.DONE:
        code = failed.exit_code
        message = f"{message}; but {failed.app} was not re-keyed: {failed.message}" if promoted else failed.message
    elif promoted is not None and promoted.exit_code == Exit.DONE and rows:
        message = _both_moves(alt, promoted, rows[-1])
    if promoted is not None and run_state == RunState.DONE and not any(r.written for r in rows):
        run_state = RunState.REKEY_LEFT  # the promote is done, its re-key is not
    return run_state, int(code), message


def _not_rekeyed_line(state: RotationState, alt: Alternating) -> str:
    s = alt.slots.standby
    return (
        f"; {alt.standby_app} was NOT re-keyed: the standby slot "
        + (f"still holds {s.fingerprint}" if s else "is still empty")
        + f": `rotator rekey {state.plan.path}` resets {alt.standby_app}"
    )


def _both_moves(alt: Alternating, promoted: Report, last: StandbyRow) -> str:
    """After a promote and its re-key: which app is active, the promote's window, the re-key and its proof."""
    proof = {True: "its previous key proven revoked", False: "its previous key STILL WORKS", None: ""}[last.revoked]
    a = alt.slots.active
    return (
        f"{alt.active_app} is active ({a.fingerprint if a else '?'}), every target holds its key "
        f"(promote window {promoted.window or 0:.3f}s); {last.message}" + (f", {proof}" if proof else "")
    )


def _incident_outcome(state: RotationState, inc: dict[str, Any], code: int, message: str) -> tuple[int, str]:
    """An incident's exit code and message: how long the leaked key stayed in use, and whether it
    is proven revoked (an incident whose leaked key is not is never exit 0)."""
    if inc["leaked_in_use_s"] is not None:
        message += f"; the leaked key stayed in use {inc['leaked_in_use_s']:.3f}s after the command started"
    if inc["revoked"]:
        message += f", proven revoked {inc['revoked_after_s']:.1f}s after it"
    elif code == Exit.DONE:
        code = Exit.NOT_REKEYED
        message += (
            f"; the leaked key ({inc['leaked_app']}, {inc['leaked_fingerprint']}) is NOT proven revoked: "
            f"reset {inc['leaked_app']} (`rotator rotate {state.plan.path} --incident` continues incident "
            f"{inc['id']})"
        )
    return int(code), message


def _leaked_check(alt: Alternating, inc: dict[str, Any]) -> ProbeResult | None:
    """The leaked key's last probe as the report's old-key check (outcome ACCEPTED: proven revoked)."""
    check = alt.checks.get(inc["leaked_fingerprint"] or "")
    if check is None:
        return None
    if inc["revoked"]:
        return ProbeResult(ProbeOutcome.ACCEPTED, f"the leaked key ({check.fingerprint}) is refused: {check.problem()}")
    detail = check.problem() or "accepted on every URL"
    return ProbeResult(ProbeOutcome.REFUSED, f"the leaked key ({check.fingerprint}) still works: {detail}")


def _incident(alt: Alternating, promoted: Report | None, rows: list[StandbyRow]) -> dict[str, Any]:
    """The incident's figures, from its recorded leaked key: proven revoked only when the
    re-key that proved its previous key refused was the leaked key's."""
    promoted_at = alt.marks.get("promoted_at")
    lk = alt.notes.get("leaked")
    lk_fp = lk.fingerprint if lk is not None else (promoted.old_fingerprint if promoted else None)
    proof = next((r for r in reversed(rows) if r.written and r.revoked and r.previous == lk_fp), None)
    revoked_at = proof.revoked_at if proof is not None else None
    # A continued incident counts from when it was recorded; a new one from this command's start.
    started = lk.at if lk is not None and lk.at and alt.notes.get("continued") else alt.started_wall
    return {
        "id": lk.incident if lk is not None else None,
        "started_at": started,
        "leaked_fingerprint": lk_fp,
        "leaked_app": lk.app if lk is not None else (alt.standby_app if promoted else alt.active_app),
        "out_of_use_at": promoted_at,
        "leaked_in_use_s": round(promoted_at - started, 4) if promoted_at else None,
        "revoked": proof is not None,
        "revoked_at": revoked_at,
        "revoked_after_s": round(revoked_at - started, 4) if revoked_at else None,
        "mistaken_reset": alt.notes.get("mistaken_reset"),
    }


def _rekey_report(state: RotationState, r: StandbyRow | None) -> Report:
    """A re-key alone: its row's report (the row is listed when the write was tried)."""
    if r is None:
        return finish.row_report(
            state,
            None,
            run_state=RunState.FAILED,
            code=0,
            message="nothing to do",
            old_fp=None,
            new_fp=None,
            window=None,
        )
    refused = r.outcome in (KeyOutcome.REFUSED, KeyOutcome.ACTIVE_RESET)
    run_state = (
        RunState.DONE if r.written else (RunState.REFUSED if r.outcome is KeyOutcome.REFUSED else RunState.FAILED)
    )
    return finish.row_report(
        state,
        None if refused else r,
        run_state=run_state,
        code=0 if r.written else r.exit_code,
        message=r.message + (", its previous key proven revoked" if r.revoked else ""),
        old_fp=r.previous,
        new_fp=r.key,
        window=r.finished or 0.0,
    )
