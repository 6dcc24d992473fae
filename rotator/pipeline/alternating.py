"""The pieces the alternating flows in `pipeline/__init__.py` are made of.

The operator loop of a re-key (a refused paste asks again, up to five times;
the active app reset by mistake falls back to taking its new key as the active
key, single-app style), the incident's "revoke now" choice, what a flow says
before it starts, and the one report a flow ends with: which app is active,
the promote's window, each re-key and its revocation proof, and for an incident
how long the leaked key stayed in use after the command started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.pipeline import finish, leaked, slots
from rotator.pipeline import rekey as rekey_step  # a module: no flow of this name
from rotator.pipeline.ask import MAX_KEY_ATTEMPTS, ResetAsk, take_key
from rotator.pipeline.rekey import Outcome, Rekeyed
from rotator.probe import ProbeOutcome, ProbeResult
from rotator.report import EmitStatus, Report, RunState, Step

if TYPE_CHECKING:
    from rotator.pipeline.ask import Operator
    from rotator.pipeline.slots import Alternating
    from rotator.pipeline.state import RotationState
    from rotator.reset_watch import ResetDetected
    from rotator.secret import Secret

__all__ = ["IncidentChoice", "Mistaken", "Rekeyed", "plan_line"]

SINGLE_WHY = "the key in use dies at once: consumers fail until rotator writes its new key (single-app flow)"


class IncidentChoice(StrEnum):
    REVOKE_NOW = "revoke-now"  # the single-app flow: the leaked key dies at once, with its outage
    STANDBY_FIRST = "standby-first"  # 0 failed calls; the leaked key stays valid until its app is re-keyed


def plan_line(alt: Alternating, *, incident: bool = False, choice: IncidentChoice | None = None) -> str:
    """What the flow will do, said before it starts."""
    active, standby = alt.active_app, alt.standby_app
    if (problem := alt.standby_problem()) is not None:
        if incident and choice is None:
            return incident_choice_line(alt)
        if incident and choice is IncidentChoice.REVOKE_NOW:
            return f"incident, revoke now: reset {active}; {SINGLE_WHY}"
        return (
            f"{problem}: re-keying the standby ({standby}) first, then promoting it, then re-keying the retired "
            f"app ({active}): two resets, 0 failed calls"
            + (f"; the leaked key of {active} stays valid until then" if incident else "")
        )
    if incident:
        return (
            f"incident: promoting {standby} now (the leaked key of {active} goes out of use within one window), "
            f"then reset {active}: the leaked key dies at that click"
        )
    if alt.next() is slots.Next.REKEY:
        return (
            f"a promote is done ({active} active) but {standby} was not re-keyed since: only the re-key is left "
            f"(`rotator rollback` would still undo the promote)"
        )
    return f"planned rotation: promoting {standby} (its key works on every URL), then reset {active}: 0 failed calls"


def incident_choice_line(alt: Alternating) -> str:
    return (
        f"incident without a valid standby ({alt.standby_problem()}): choose --revoke-now (reset {alt.active_app} "
        f"now: the leaked key dies at once, consumers fail until its new key is written) or --standby-first "
        f"(reset {alt.standby_app} first: 0 failed calls, the leaked key stays valid until {alt.active_app} is "
        "re-keyed after the promote)"
    )


async def drain(state: RotationState, alt: Alternating) -> None:
    """After a promote, before asking for the retired app's reset: `[rotation] drain` seconds from the
    promote's confirmation.  A consumer reports the new key as soon as it reloads, but a call it sent
    just before still carries the retired key, and the API checks that key when the call arrives;
    a reset clicked in between would refuse it (issue 23: one failed call at high load)."""
    promoted_at = alt.marks.get("promoted_at")
    if promoted_at is None:
        return
    wait = state.plan.rotation.drain - (time.time() - promoted_at)
    if wait <= 0:
        return
    state.emit(
        Step.REKEY,
        alt.standby_app,
        "draining",
        f"waiting {wait:.1f}s for calls already in flight on {alt.standby_app}'s key to end before asking its reset",
    )
    await asyncio.sleep(wait)


def rekeyed(r: Rekeyed | Report) -> bool:
    return isinstance(r, Rekeyed) and r.outcome is Outcome.DONE


class Mistaken(Protocol):
    """The flow that takes the active app's new key as the active key (`pipeline.mistaken_reset`)."""

    def __call__(
        self, state: RotationState, alt: Alternating, secret: Secret, reset: ResetDetected | None
    ) -> Awaitable[Report]: ...


async def rekey(
    state: RotationState, alt: Alternating, operator: Operator, *, mistaken: Mistaken, incident: bool = False
) -> Rekeyed | Report:
    """Ask for the standby app's reset until a key is written (or five pastes were refused).
    A Report when the active app was reset by mistake and its new key became the active key
    (`mistaken`: the flow the runbook lists for it; a step never calls up into the runbook).
    In an incident the standby is the leaked app: after a mistaken reset (its key taken as the
    active one, the slot record kept true) the ask for the leaked app goes on."""
    if alt.behind:
        raise RotationError(slots.behind_line(alt), Exit.PARTIAL)
    app, refused = alt.standby_app, None
    watch = alt.active_app if alt.active is not None and alt.active.ok else None
    reset: ResetDetected | None = None
    last: Rekeyed | Report | None = None
    for attempt in range(1, MAX_KEY_ATTEMPTS + 1):
        if reset is None:
            ask = ResetAsk(app, slots.SAFE, slots.dashboard_reset(app, slots.SAFE), "standby", attempt, refused)
        else:
            ask = _active_ask(alt, attempt, refused)
        secret, seen = await take_key(state, operator, ask, watch_app=watch if reset is None else None)
        reset = reset or seen
        if reset is None:
            out = await rekey_step.run(state, alt, secret)
            if out.outcome is Outcome.FAILED:
                out = await _store_retrying(state, alt, operator, secret, out)
            if out.outcome is Outcome.REFUSED:
                refused, last = out.message, out
                continue
            if out.outcome is not Outcome.ACTIVE_RESET:
                return out
            operator.notice(f"{out.message}: taking this key as {alt.active_app}'s new key (single-app style)")
        last = await mistaken(state, alt, secret, reset)
        if last.exit_code == Exit.KEY_REFUSED:
            refused = last.message
            continue
        if not incident or last.exit_code != Exit.DONE:
            return last
        # The leaked key still works: keep asking for its app (the report keeps the mistake).
        alt.notes["mistaken_reset"] = (last.alternating or {}).get("mistaken_reset")
        operator.notice(f"{alt.active_app}'s new key is in use; the leaked key ({app}) STILL WORKS: reset {app} now")
        reset, watch, refused = None, None, None
    assert last is not None
    return last


async def _store_retrying(
    state: RotationState, alt: Alternating, operator: Operator, secret: Secret, failed: Rekeyed
) -> Rekeyed:
    """A standby write that failed after the reset: the key is held here and the write retried
    (the session stays open), saying plainly that it is not stored yet; given up after the
    plan's deadline, with the command that re-keys the standby again."""
    app, fp = failed.app, secret.fingerprint
    loop_deadline = time.monotonic() + max(state.plan.rotation.deadline, 10.0)
    delay, out = 1.0, failed
    while time.monotonic() < loop_deadline:
        operator.notice(
            f"{app}'s new key ({fp}) is NOT stored yet ({out.message}); it is held here and the write is retried "
            f"in {delay:.0f}s: keep this session open"
        )
        state.emit(Step.REKEY, app, EmitStatus.WARNING, f"standby write failed; retrying in {delay:.0f}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 8.0)
        try:
            await slots.refresh(state, alt)
        except RotationError as exc:  # the primary cannot even be read (sealed, unreachable): later
            out.message = str(exc)
            continue
        out = await rekey_step.run(state, alt, secret)
        if out.outcome is not Outcome.FAILED:
            return out
    out.message = (
        f"{app}'s new key ({fp}) was NOT stored: {out.message}; the standby slot still holds {app}'s previous key, "
        f"now revoked: once {state.primary.name} is writable, reset {app} again with `rotator rekey {state.plan.path}`"
    )
    state.event(Step.REKEY, "given_up", target=app, detail=out.message, fingerprint=fp)
    return out


def _active_ask(alt: Alternating, attempt: int, refused: str | None) -> ResetAsk:
    app = alt.active_app
    why = "it was reset already: paste its new key"
    return ResetAsk(app, why, slots.dashboard_reset(app, why), "active", attempt, refused)


def revoke_ask(alt: Alternating, attempt: int, refused: str | None) -> ResetAsk:
    """Revoke now: reset the leaked (active) app, its key dies at once."""
    app = alt.active_app
    return ResetAsk(app, SINGLE_WHY, slots.dashboard_reset(app, SINGLE_WHY), "active", attempt, refused)


def standby_key(alt: Alternating, secret: Secret, *, reset_app: str | None = None) -> str | None:
    """The refusal when `secret` is the standby slot's key (the wrong app's key was copied)."""
    if alt.slots.standby_secret is None or alt.slots.standby_secret != secret:
        return None
    if reset_app is None:
        return f"{rekey_step.NOT_RESET}: this is the standby's key ({alt.standby_app}); nothing was written"
    return (
        f"{rekey_step.NOT_RESET}: this is the standby's key ({alt.standby_app}); paste the new key of "
        f"{reset_app}, the app that was reset; nothing was written"
    )


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
    rekeys: list[Rekeyed | Report],
    *,
    incident: bool = False,
) -> Report:
    """One report for the whole flow (journaled with the entry): the mistaken reset's report when
    there was one, else the promote's, else the re-key's; then what the re-keys and, for an
    incident, the leaked key's proof change of its outcome."""
    fallback = next((r for r in rekeys if isinstance(r, Report)), None)
    done = [r for r in rekeys if isinstance(r, Rekeyed)]
    if fallback is not None:
        report = _not_rekeyed(state, alt, fallback) if promoted is None and not incident else fallback
    else:
        report = promoted if promoted is not None else _rekey_report(state, alt, done[-1] if done else None)
    _rekeys_outcome(alt, report, promoted, done, keyed=fallback is None)
    await _rekey_left(state, report, promoted, done, keyed=fallback is None)
    info = dict(report.alternating or {})
    info.update(alt.as_dict())
    if promoted is not None:
        info["promote"] = {"window_s": promoted.window, "state": promoted.state}
    info["rekeys"] = [r.as_dict() for r in done]
    if alt.notes.get("mistaken_reset"):
        info["mistaken_reset"] = alt.notes["mistaken_reset"]
    if incident:
        info["incident"] = _incident_outcome(state, alt, report, promoted, done)
    report.alternating = info
    return await finish.close_journal(state, report, event=False)


async def _rekey_left(
    state: RotationState, report: Report, promoted: Report | None, done: list[Rekeyed], *, keyed: bool
) -> None:
    """A re-key done closes the earlier runs that promoted and left it; a promote whose re-key is
    not done is `rekey_left`, never "done"."""
    if any(r.outcome is Outcome.DONE for r in done):
        await leaked.close_rekey_left(state)  # earlier runs that promoted and left this re-key
    elif keyed and promoted is not None and report.state == RunState.DONE:
        report.state = RunState.REKEY_LEFT  # the promote is done, its re-key is not: never "done"


def _not_rekeyed(state: RotationState, alt: Alternating, report: Report) -> Report:
    """A re-key that became the active app's single-app rotation: the standby was not re-keyed."""
    if report.exit_code != Exit.DONE:
        return report
    report.exit_code = Exit.NOT_REKEYED
    s = alt.slots.standby
    report.message += (
        f"; {alt.standby_app} was NOT re-keyed: the standby slot "
        + (f"still holds {s.fingerprint}" if s else "is still empty")
        + f": `rotator rekey {state.plan.path}` resets {alt.standby_app}"
    )
    return report


def _rekeys_outcome(
    alt: Alternating, report: Report, promoted: Report | None, done: list[Rekeyed], *, keyed: bool
) -> None:
    """A key the operator reset and that is not stored is never "done"; a refused or failed
    re-key is the flow's exit code; after a promote, the message says both moves."""
    failed = next((r for r in done if r.outcome is not Outcome.DONE), None)
    if failed is not None and failed.outcome is Outcome.FAILED:
        report.state = RunState.FAILED
    if not keyed:
        return
    if failed is not None and report.exit_code == Exit.DONE:
        report.exit_code = failed.code
        report.message = (
            f"{report.message}; but {failed.app} was not re-keyed: {failed.message}" if promoted else failed.message
        )
    elif promoted is not None and promoted.exit_code == Exit.DONE and done:
        last = done[-1]
        proof = {True: "its previous key proven revoked", False: "its previous key STILL WORKS", None: ""}[last.revoked]
        a = alt.slots.active
        report.message = (
            f"{alt.active_app} is active ({a.fingerprint if a else '?'}), every target holds its key "
            f"(promote window {promoted.window or 0:.3f}s); {last.message}" + (f", {proof}" if proof else "")
        )


def _incident_outcome(
    state: RotationState, alt: Alternating, report: Report, promoted: Report | None, done: list[Rekeyed]
) -> dict[str, Any]:
    """The incident's figures; the report's old-key check is the leaked key's, and an incident
    whose leaked key is not proven revoked is never exit 0."""
    inc = _incident(alt, promoted, done)
    report.revocation = _leaked_check(alt, inc)  # `old_key_check` is the leaked key's, never another's
    if inc["leaked_in_use_s"] is not None:
        report.message += f"; the leaked key stayed in use {inc['leaked_in_use_s']:.3f}s after the command started"
    if inc["revoked"]:
        report.message += f", proven revoked {inc['revoked_after_s']:.1f}s after it"
    elif report.exit_code == Exit.DONE:
        report.exit_code = Exit.NOT_REKEYED
        report.message += (
            f"; the leaked key ({inc['leaked_app']}, {inc['leaked_fingerprint']}) is NOT proven revoked: "
            f"reset {inc['leaked_app']} (`rotator rotate {state.plan.path} --incident` continues incident "
            f"{inc['id']})"
        )
    return inc


def _leaked_check(alt: Alternating, inc: dict[str, Any]) -> ProbeResult | None:
    """The leaked key's last probe as the report's old-key check (outcome ACCEPTED: proven revoked)."""
    check = alt.checks.get(inc["leaked_fingerprint"] or "")
    if check is None:
        return None
    if inc["revoked"]:
        return ProbeResult(ProbeOutcome.ACCEPTED, f"the leaked key ({check.fingerprint}) is refused: {check.problem()}")
    detail = check.problem() or "accepted on every URL"
    return ProbeResult(ProbeOutcome.REFUSED, f"the leaked key ({check.fingerprint}) still works: {detail}")


def _incident(alt: Alternating, promoted: Report | None, done: list[Rekeyed]) -> dict[str, Any]:
    """The incident's figures, from its recorded leaked key: proven revoked only when the
    re-key that proved its previous key refused was the leaked key's."""
    promoted_at = alt.marks.get("promoted_at")
    lk = alt.notes.get("leaked")
    lk_fp = lk.fingerprint if lk is not None else (promoted.old_fingerprint if promoted else None)
    proof = next((r for r in reversed(done) if r.outcome is Outcome.DONE and r.revoked and r.previous == lk_fp), None)
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


def _rekey_report(state: RotationState, alt: Alternating, r: Rekeyed | None) -> Report:
    ok = r is not None and r.outcome is Outcome.DONE
    return Report(
        id=state.id,
        kind=state.kind,
        plan=state.plan.name,
        state=RunState.DONE if ok else (RunState.REFUSED if r and r.outcome is Outcome.REFUSED else RunState.FAILED),
        exit_code=0 if ok or r is None else r.code,
        reason=state.reason,
        operator=state.operator,
        old_fingerprint=r.previous if r else None,
        new_fingerprint=r.fingerprint if r else None,
        window=r.seconds if r else None,
        targets=[r.row] if r is not None and r.row is not None else [],
        message=(r.message + (", its previous key proven revoked" if r.revoked else "")) if r else "nothing to do",
    )
