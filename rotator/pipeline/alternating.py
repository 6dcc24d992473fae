"""The pieces the alternating flows in `pipeline/__init__.py` are made of.

The operator loop of a re-key (a refused paste asks again, up to five times;
the active app reset by mistake falls back to the mistaken-reset flow the
runbook hands it), the incident's "revoke now" choice, and what a flow says
before it starts.  The one report a flow ends with is `alt_report`'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.pipeline import rekey as rekey_step  # a module: no flow of this name
from rotator.pipeline import slots
from rotator.pipeline.ask import MAX_KEY_ATTEMPTS, ResetAsk, take_key
from rotator.pipeline.rekey import StandbyRow
from rotator.report import EmitStatus, KeyOutcome, Report, Step

if TYPE_CHECKING:
    from rotator.pipeline.ask import Operator
    from rotator.pipeline.slots import Alternating
    from rotator.pipeline.state import RotationState
    from rotator.reset_watch import ResetDetected
    from rotator.secret import Secret

__all__ = ["IncidentChoice", "Mistaken", "StandbyRow", "plan_line"]

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


def rekeyed(r: StandbyRow | Report) -> bool:
    return isinstance(r, StandbyRow) and r.written


class Mistaken(Protocol):
    """The flow that takes the active app's new key as the active key (`pipeline.mistaken_reset`)."""

    def __call__(
        self, state: RotationState, alt: Alternating, secret: Secret, reset: ResetDetected | None
    ) -> Awaitable[Report]: ...


async def rekey(
    state: RotationState, alt: Alternating, operator: Operator, *, mistaken: Mistaken, incident: bool = False
) -> StandbyRow | Report:
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
    last: StandbyRow | Report | None = None
    for attempt in range(1, MAX_KEY_ATTEMPTS + 1):
        ask = _standby_ask(alt, attempt, refused) if reset is None else _active_ask(alt, attempt, refused)
        secret, seen = await take_key(state, operator, ask, watch_app=watch if reset is None else None)
        reset = reset or seen
        if reset is None:
            out = await _store(state, alt, operator, secret)
            if out.outcome is KeyOutcome.REFUSED:
                refused, last = out.message, out
                continue
            if out.outcome is not KeyOutcome.ACTIVE_RESET:
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


async def _store(state: RotationState, alt: Alternating, operator: Operator, secret: Secret) -> StandbyRow:
    """The re-key step; a write that failed after the reset is held and retried (`_store_retrying`)."""
    out = await rekey_step.run(state, alt, secret)
    if out.outcome is KeyOutcome.FAILED:
        out = await _store_retrying(state, alt, operator, secret, out)
    return out


async def _store_retrying(
    state: RotationState, alt: Alternating, operator: Operator, secret: Secret, failed: StandbyRow
) -> StandbyRow:
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
        if out.outcome is not KeyOutcome.FAILED:
            return out
    out.message = (
        f"{app}'s new key ({fp}) was NOT stored: {out.message}; the standby slot still holds {app}'s previous key, "
        f"now revoked: once {state.primary.name} is writable, reset {app} again with `rotator rekey {state.plan.path}`"
    )
    state.event(Step.REKEY, "given_up", target=app, detail=out.message, fingerprint=fp)
    return out


def _standby_ask(alt: Alternating, attempt: int, refused: str | None) -> ResetAsk:
    app = alt.standby_app
    return ResetAsk(app, slots.SAFE, slots.dashboard_reset(app, slots.SAFE), "standby", attempt, refused)


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
