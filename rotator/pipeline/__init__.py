"""The rotation pipeline: each flow is the list of its steps, in the runbook's order.

A flow runs over one `RotationState` that `arm.run` readied: everything slow
(imports, clients, connections, preflights, the current values, the journal
entry, the plan's lock) happened there, before the operator reset the key.
Once the key arrives, the critical path is the probe, the primary write, then
every other write and every signal at once.  `arm.disarm` closes it all.

The steps are plain `async def run(state, ...)` functions in this package;
new flows (promote a standby, re-key, roll back) are new lists of them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.pipeline import (
    accept,
    alt_report,
    alternating,
    arm,
    drift,
    fan_out,
    fence,
    finish,
    leaked,
    probe,
    read_primary,
    slots,
    write_primary,
)
from rotator.pipeline import promote as promote_step  # the modules; `promote` and `rollback` below are the flows
from rotator.pipeline import rollback as rollback_step
from rotator.pipeline.alternating import IncidentChoice
from rotator.pipeline.ask import MAX_KEY_ATTEMPTS, Operator, ResetAsk, take_key
from rotator.pipeline.state import RotationState, gc_paused, in_window

if TYPE_CHECKING:
    from rotator.report import Report
    from rotator.reset_watch import ResetDetected
    from rotator.secret import Secret

__all__ = [
    "IncidentChoice",
    "Operator",
    "ResetAsk",
    "RotationState",
    "arm",
    "arm_alternating",
    "check_drift",
    "dry_run",
    "incident",
    "mistaken_reset",
    "promote",
    "rekey_standby",
    "resume",
    "revoke_now",
    "rollback",
    "rotate",
    "rotate_alternating",
    "sync",
]  # arm: .run, .disarm


@in_window
async def rotate(state: RotationState, secret: Secret) -> Report:
    """The key from the operator into every target.  A refused key writes nothing and
    leaves the state armed: the session may ask again."""
    if (refused := await probe.run(state, secret)) is not None:
        return refused  # nothing written
    await accept.run(state, secret)  # write-ahead: the journal has the key's fingerprint
    if (lost := await fence.before_primary(state)) is not None:
        return lost  # another rotation holds the plan now: nothing written
    if (failed := await write_primary.run(state, secret)) is not None:
        return failed  # the primary was not written, so nothing else was
    if (lost := await fence.before_fan_out(state, secret)) is not None:
        return lost  # the primary holds the key; the rest is left for `resume`
    await fan_out.run(state, secret)  # other backends at once; each consumer when its reads_from are written
    return await finish.run(state, secret)


@in_window
async def resume(state: RotationState, expected_fp: str | None, *, primary_unsure: bool = False) -> Report:
    """Finish a journaled rotation from the key in its primary."""
    secret = await read_primary.run(state, expected_fp, unsure=primary_unsure)
    await accept.run(state, secret)
    await read_primary.source(state, secret)
    if (lost := await fence.before_fan_out(state, secret)) is not None:
        return lost
    await fan_out.run(state, secret, skip_current=True)  # what already holds the key is not written again
    return await finish.run(state, secret)


@in_window
async def sync(state: RotationState) -> Report:
    """Copy the primary's key to every backend that drifted; signal only the consumers of what changed."""
    secret = read_primary.held_at_arm(state)
    await accept.run(state, secret)
    await read_primary.source(state, secret)
    if (lost := await fence.before_fan_out(state, secret)) is not None:
        return lost
    await fan_out.run(state, secret, skip_current=True, signal_unchanged=False)
    return await finish.run(state, secret)


async def check_drift(state: RotationState) -> Report:
    """`sync --check`: report which backends differ from the primary; write nothing."""
    return await drift.run(state, read_primary.held_at_arm(state))


async def dry_run(state: RotationState, secret: Secret) -> Report:
    """`rotate --dry-run`: probe the key, write nothing, close the journal entry."""
    return await finish.abandon(state, probe.dry_run_report(state, await probe.check(state, secret)))


# -- alternating plans (two apps; the standby key kept on the primary) -------------------------


async def arm_alternating(state: RotationState) -> slots.Alternating:
    """`arm.run`, then both slots read and both keys probed on every URL (`slots.arm`).
    Raises RotationError when a target or the standby location is not ready."""
    started = time.time()
    armed = await arm.run(state)
    if not armed.ok:
        raise RotationError("not armed: " + "; ".join(armed.problems()), Exit.PREFLIGHT_FAILED)
    return await slots.arm(state, started_wall=started)


async def promote(state: RotationState, alt: slots.Alternating) -> Report:
    """Every backend and consumer moves to the standby key; the previous active key becomes the standby.
    Never to an incident's recorded leaked key."""
    if (why := leaked.refusal(alt, "promote", str(state.plan.path))) is not None:
        raise RotationError(why, Exit.LEAKED_KEY)
    with gc_paused():
        return alt_report.described(await promote_step.run(state, alt), alt)


async def rekey_standby(state: RotationState, alt: slots.Alternating, operator: Operator) -> Report:
    """The standby app reset, its new key probed, written to the standby slot only, the previous one proven revoked."""
    return await alt_report.finish_rekeys(
        state, alt, None, [await alternating.rekey(state, alt, operator, mistaken=mistaken_reset)]
    )


async def rotate_alternating(
    state: RotationState, alt: slots.Alternating, operator: Operator, *, incident: bool = False
) -> Report:
    """Planned: promote, then re-key the retired app (one reset, 0 failed calls).  Without a valid
    standby: re-key it first, promote, re-key the retired app (`alternating.plan_line` says so first).
    After a promote whose re-key never happened (a crash), only the re-key is left.
    An open incident (`leaked.where`) is continued, never restarted."""
    rekeys: list[alternating.StandbyRow | Report] = []
    at = leaked.where(alt)
    if at is not None:
        alt.notes["leaked"] = leaked.leaked(alt)
        alt.notes["continued"] = True
    if at == "standby":  # the incident's promote moved every target: only the leaked app's reset is left
        promoted = await finish_promote(state, alt)
        if promoted is not None and promoted.exit_code != Exit.DONE:
            return await alt_report.finish_rekeys(state, alt, promoted, rekeys, incident=True)
        await leaked.awaiting_rekey(state, alt)
        await alternating.drain(state, alt)  # calls in flight on the leaked key end before it dies
        rekeys.append(await alternating.rekey(state, alt, operator, mistaken=mistaken_reset, incident=True))
        return await alt_report.finish_rekeys(state, alt, promoted, rekeys, incident=True)
    if incident or at == "active":
        incident = True
        await leaked.mark(state, alt)  # before anything moves
    elif alt.next() is slots.Next.REKEY:
        rekeys.append(await alternating.rekey(state, alt, operator, mistaken=mistaken_reset))
        return await alt_report.finish_rekeys(state, alt, None, rekeys)
    if not alt.standby_valid:
        first = await alternating.rekey(state, alt, operator, mistaken=mistaken_reset)
        rekeys.append(first)
        if not alternating.rekeyed(first):
            return await alt_report.finish_rekeys(state, alt, None, rekeys, incident=incident)
    promoted = await promote(state, alt)
    if promoted.exit_code != Exit.DONE:
        return await alt_report.finish_rekeys(state, alt, promoted, rekeys, incident=incident)
    if alt.behind:  # every target holds the promoted key now: earlier unfinished runs are moot
        await leaked.close_continued(state)
        alt.behind = []
    await leaked.awaiting_rekey(state, alt)  # killed from here on: the journal says the re-key is left
    await alternating.drain(state, alt)  # calls in flight on the retired key end before its reset is asked
    rekeys.append(await alternating.rekey(state, alt, operator, mistaken=mistaken_reset, incident=incident))
    return await alt_report.finish_rekeys(state, alt, promoted, rekeys, incident=incident)


async def finish_promote(state: RotationState, alt: slots.Alternating) -> Report | None:
    """An incident continued after its promote: every target brought to the active key (a promote
    killed mid fan-out is finished; consumers are signalled again: both keys still work), and the
    runs it continues closed.  None when nothing was behind."""
    if not alt.behind:
        return None
    secret = read_primary.held_at_arm(state)
    with gc_paused():
        promote_step.new_window(state)
        alt.marks["window_start"] = state.key_received_wall or time.time()
        await promote_step.accept_key(state, secret)
        await read_primary.source(state, secret)
        await fan_out.run(state, secret, skip_current=True)
        report = await finish.run(state, secret)
    if report.exit_code == Exit.DONE:
        await leaked.close_continued(state)
        alt.behind = []
    return alt_report.described(report, alt)


async def incident(
    state: RotationState, alt: slots.Alternating, operator: Operator, *, choice: IncidentChoice | None = None
) -> Report:
    """The active key leaked: its fingerprint and app recorded first, then promote (out of use
    within one window), then re-key the leaked app (the leaked key dies at that click), then the
    revocation proof.  Without a valid standby the operator must choose (`choice`): never a guess.
    An incident already recorded is continued."""
    if alt.standby_valid or leaked.where(alt) is not None:
        return await rotate_alternating(state, alt, operator, incident=True)
    if choice is None:
        raise RotationError(alternating.incident_choice_line(alt), Exit.PLAN_INVALID)
    if choice is IncidentChoice.STANDBY_FIRST:
        return await rotate_alternating(state, alt, operator, incident=True)
    await leaked.mark(state, alt)
    return await revoke_now(state, alt, operator)


async def revoke_now(state: RotationState, alt: slots.Alternating, operator: Operator) -> Report:
    """Incident without a standby, the operator's choice: the single-app flow on the leaked (active)
    app.  Its reset is watched while the key is awaited, so the report has the outage, the reset
    time and the operator's share, as a single-app rotation's has."""
    leaked_key = state.old_secret
    refused: str | None = None
    report: Report | None = None
    for n in range(1, MAX_KEY_ATTEMPTS + 1):
        ask = alternating.revoke_ask(alt, n, refused)
        secret, _ = await take_key(state, operator, ask, watch_app=alt.active_app, expected=True)
        if (refused := alternating.standby_key(alt, secret)) is not None:
            continue
        promote_step.new_window(state)  # the window runs from the key that is taken
        report = await rotate(state, secret)
        if report.exit_code != Exit.KEY_REFUSED:
            break
        refused = report.message
    if report is None:  # every paste was the standby's key
        report = finish.not_written(state, refused or "nothing was written")
    if report.exit_code not in (Exit.KEY_REFUSED, Exit.PROBE_UNAVAILABLE):
        await slots.refresh(state, alt)
        await leaked.clear_if_rekeyed(state, alt, what="revoke_now")
    await alt_report.revoked_info(state, alt, report, leaked_key)
    return await finish.close_journal(state, report, event=False)


async def mistaken_reset(
    state: RotationState, alt: slots.Alternating, secret: Secret, reset: ResetDetected | None
) -> Report:
    """The active app was reset by mistake (in place of the standby): its new key becomes the active
    key, exactly as a single-app rotation writes it, with the reset's outage on the report."""
    if (line := alternating.standby_key(alt, secret, reset_app=alt.active_app)) is not None:
        return finish.not_written(state, line)
    promote_step.new_window(state)
    if reset is not None and state.reset is None:
        state.reset = reset  # the outage and the operator's share are measured from it
    report = await rotate(state, secret)
    if report.exit_code in (Exit.KEY_REFUSED, Exit.PROBE_UNAVAILABLE):
        return report
    report.kind = state.kind
    await slots.refresh(state, alt)
    await leaked.clear_if_rekeyed(state, alt, what="active_reset")  # the record says whose key is active now
    alt_report.mistaken_info(state, alt, report, reset)
    return report


async def rollback(state: RotationState, alt: slots.Alternating) -> Report:
    """After a promote and before its re-key: swap back and fan the previous key out again."""
    if (why := leaked.refusal(alt, "roll back", str(state.plan.path))) is not None:
        raise RotationError(why, Exit.LEAKED_KEY)
    if (why := rollback_step.refusal(alt)) is not None:
        raise RotationError(why, Exit.PLAN_INVALID)
    with gc_paused():
        report = alt_report.described(await rollback_step.run(state, alt), alt)
    if report.exit_code == Exit.DONE:
        await leaked.close_rekey_left(state, rolled_back=True)  # the promote left un-re-keyed is undone
    return report
