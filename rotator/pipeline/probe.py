"""Probe: ask the API whether the new key works, before anything is written.

A refused key (or one the probe could not check, without --accept-unprobed)
returns the report of an attempt that wrote nothing; the state stays armed, so
the session may ask for the key again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotator.exitcodes import Exit
from rotator.pipeline import finish
from rotator.probe import ProbeOutcome, ProbeResult
from rotator.report import EmitStatus, RunState, Step

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.report import Report
    from rotator.secret import Secret

_STATUS = {"accepted": "ok", "refused": "failed", "unavailable": "failed"}
UNPROBED = "WRITTEN WITHOUT A SUCCESSFUL PROBE (--accept-unprobed): the key was not verified"
SAME_KEY = "the new key is the same as the one in the primary: a re-sync (--resync), not a rotation"
NOT_RESET = (
    "the key was not reset: this is the key the primary already holds; nothing was written "
    "(reset it on the dashboard and paste the new key, or pass --resync to copy this one everywhere)"
)


async def check(state: RotationState, secret: Secret) -> ProbeResult:
    """One probe of `secret` (journaled, shown); SKIPPED when the plan has no probe."""
    state.key_arrived()
    if state.prober is None:
        return ProbeResult(ProbeOutcome.SKIPPED, "no probe in the plan")
    state.emit(Step.PROBE, "", EmitStatus.RUNNING)
    result = await state.prober.probe(secret)
    state.emit(
        Step.PROBE,
        "",
        _STATUS.get(result.outcome.value, EmitStatus.SKIPPED),
        f"{result.outcome.value}: {result.detail}",
        result.seconds,
    )
    for w in result.warnings:
        state.emit(Step.PROBE, "", EmitStatus.WARNING, w)
    state.event(
        Step.PROBE, result.outcome.value, detail=result.detail, fingerprint=secret.fingerprint, seconds=result.seconds
    )
    return result


async def run(state: RotationState, secret: Secret) -> Report | None:
    """Probe the key; None if it may be written, else the report of an attempt that wrote nothing."""
    assert state.armed is not None and state.armed.ok, "arm first"
    state.key_arrived()
    state.warnings = []
    if state.old_secret is not None and state.old_secret == secret and not state.resync:
        # During a leak, "done" here would report success while the leaked key stays live.
        return finish.not_written(state, NOT_RESET, code=Exit.KEY_NOT_RESET)
    start = state.since_key()
    result = await check(state, secret)
    state.probe = result
    state.steps = {"probe": state.since_key() - start}
    if result.outcome is ProbeOutcome.REFUSED:
        return finish.not_written(
            state, f"the API refused this key ({result.detail}); nothing was written", probe=result
        )
    if result.outcome is ProbeOutcome.UNAVAILABLE and not state.accept_unprobed:
        return finish.not_written(
            state,
            f"the probe could not check the key ({result.detail}); nothing was written "
            "(--accept-unprobed writes it anyway, during an API outage)",
            run_state=RunState.UNAVAILABLE,
            code=Exit.PROBE_UNAVAILABLE,
            probe=result,
        )
    state.warnings = list(result.warnings)
    if result.outcome is ProbeOutcome.UNAVAILABLE:
        state.warnings.append(UNPROBED)
        state.emit(Step.PROBE, "", EmitStatus.WARNING, UNPROBED)
    if state.old_secret is not None and state.old_secret == secret:
        state.warnings.append(SAME_KEY)
        state.emit(Step.KEY, "", EmitStatus.WARNING, SAME_KEY)
    return None


def dry_run_report(state: RotationState, result: ProbeResult) -> Report:
    """`rotate --dry-run`: arm and probe only."""
    # The state (dry_run) says what it was: the message says only what was done.
    report = finish.not_written(state, f"arm and probe only; probe {result.outcome.value} ({result.detail})")
    report.state, report.probe = RunState.DRY_RUN, result
    report.exit_code = {
        "accepted": 0,
        "skipped": 0,
        "refused": int(Exit.KEY_REFUSED),
        "unavailable": int(Exit.PROBE_UNAVAILABLE),
    }[result.outcome.value]
    return report
