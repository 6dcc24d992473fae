"""Promote: the standby key becomes the active key, on the primary and then everywhere.

The primary's slots swap in one check-and-set write (on the version `read_slots`
gave at arm), read back; from then on the primary's `read()` is the promoted
key, so the rest is exactly a rotation's: the journal's `fanning_out` (a promote
killed midway is finished by `rotator resume ID` from the primary), then
`fan_out` to every other backend and consumer, signal and confirm.  Both keys
work throughout, so no consumer call fails whatever its timing.

`swap` is shared with the roll back (a second swap, with its own token).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rotator.pipeline import accept, fan_out, finish, slot_record, slots, write, write_primary
from rotator.report import GOOD, EmitStatus, Step
from rotator.secret import scrub

if TYPE_CHECKING:
    from rotator.pipeline.slots import Alternating
    from rotator.pipeline.state import RotationState
    from rotator.report import Report, TargetResult
    from rotator.secret import Secret


def new_window(state: RotationState) -> None:
    """Start a window's clock afresh (a flow may open several: promote, then a single-style write)."""
    state.key_received = state.key_received_wall = None
    state.revocation = None
    state.key_arrived()


async def accept_key(state: RotationState, secret: Secret) -> None:
    """`accept.run` for a key that is not replacing a revoked one: the previous active key
    stays valid (it becomes the standby), so no "old key revoked" check starts."""
    old, state.old_secret = state.old_secret, None
    try:
        await accept.run(state, secret)
    finally:
        state.old_secret = old


async def swap(state: RotationState, alt: Alternating, step: Step, token: str) -> TargetResult:
    """Swap the primary's slots (CAS on `alt.slots.version`), read back; the result is on the primary's row."""
    primary = state.primary
    res = state.results[primary.name]
    expected_fp = alt.slots.standby.fingerprint if alt.slots.standby else None
    expected_version = alt.slots.version
    res.started = state.since_key()
    state.emit(step, primary.name, EmitStatus.RUNNING)

    async def once() -> tuple[str | None, str]:
        written = await primary.swap_slots(token=token, expected_version=expected_version)
        back = await primary.read()
        write.read_back(primary.name, "the active key", back.secret.fingerprint if back.secret else None, expected_fp)
        return written.version or back.version, written.detail

    if (done := await write.attempt_write(state, primary, res, once)) is not None:
        res.version, res.fingerprint, res.detail = done[0], expected_fp, scrub(done[1]) or "swapped"
    res.finished = state.since_key()
    state.emit(step, primary.name, EmitStatus.of(res.status in GOOD), res.detail, res.seconds)
    return res


async def run(state: RotationState, alt: Alternating, *, step: Step = Step.PROMOTE) -> Report:
    """Swap, then fan the new active key out; the report is the journal entry's.
    `step` is ROLLBACK for the swap back (the same moves, journaled as such)."""
    secret = alt.slots.standby_secret
    assert secret is not None, "promote needs a standby"
    before = alt.describe()
    new_window(state)
    alt.marks["window_start"] = state.key_received_wall or time.time()
    await accept_key(state, secret)
    started = time.time()
    token = alt.token(slots.LastStep.ROLLBACK if step is Step.ROLLBACK else slots.LastStep.PROMOTE)
    await slot_record.journaled(state, slot_record.after_swap(alt.slots, token), alt.slots, step.value)
    res = await swap(state, alt, step, token)
    state.steps[step.value] = res.seconds or 0.0
    if res.status not in GOOD:
        state.event(step, res.status, target=res.name, detail=f"{before}; {res.detail}", fingerprint=secret.fingerprint)
        return await finish.primary_failed(state, secret)
    a, s = alt.slots.active, alt.slots.standby
    after = f"active {alt.standby_app} ({s.fingerprint if s else '?'}), standby {alt.active_app} ({a.fingerprint if a else '?'})"
    state.event(
        step,
        "ok",
        target=res.name,
        detail=f"{before} -> {after} at {started:.3f}",
        fingerprint=secret.fingerprint,
        version=res.version,
    )
    await write_primary.landed(state)  # resumable from here: the primary holds the promoted key
    await fan_out.run(state, secret)
    report = await finish.run(state, secret)
    await slots.refresh(state, alt)  # what the next step (re-key, a single-style write) checks-and-sets on
    return report
