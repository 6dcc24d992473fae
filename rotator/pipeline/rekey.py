"""Re-key the standby: the app no consumer uses gets a new key, written to the standby slot only.

Once the operator's key arrives, three probes run at once on every URL: the new
key (it must be accepted everywhere), the active key (refused means the operator
reset the active app by mistake: the caller falls back to taking that key as the
active one), and the previous standby key (it must now be refused: the proof the
reset revoked it, taken before anything is written, so a key from the wrong app
writes nothing).  A key equal to either slot's is refused at once: the reset did
not happen, or the wrong app's key was copied.  Then one check-and-set write of
the standby slot, read back.  Nothing else is written, nothing is signalled.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rotator.errors import Conflict, PluginError
from rotator.exitcodes import Exit
from rotator.pipeline import slot_record, slots, write
from rotator.report import EmitStatus, KeyOutcome, Step, TargetResult, TargetStatus

if TYPE_CHECKING:
    from rotator.pipeline.slots import Alternating, KeyCheck
    from rotator.pipeline.state import RotationState
    from rotator.plugin import Slots
    from rotator.secret import Secret


NOT_RESET = "the key was not reset"


@dataclass
class StandbyRow(TargetResult):
    """The standby write's target row (the primary's, as a rotation's targets have theirs), with
    what the re-key proved beside it: the key pasted, the standby's previous key and whether the
    API now refuses it.  `outcome` (the one key vocabulary): DONE (written, read back), REFUSED
    (nothing written: the operator may paste again), ACTIVE_RESET (the active app was reset
    instead: nothing written), FAILED (the write failed: `status` says conflict or failed).
    The flow's report (`alt_report`) is made from these rows."""

    app: str = ""
    key: str | None = None  # the pasted key's fingerprint (`fingerprint` is what was read back)
    previous: str | None = None  # the previous standby key's fingerprint
    revoked: bool | None = None  # the previous standby key proven refused (None: there was none)
    revoked_at: float | None = None  # time.time() of that proof
    outcome: KeyOutcome = KeyOutcome.DONE
    exit_code: int = 0
    message: str = ""  # what the flow says of it (`detail` is the write's own)

    @property
    def written(self) -> bool:
        return self.outcome is KeyOutcome.DONE


def same_key(alt: Alternating, state: RotationState, secret: Secret) -> str | None:
    """One line when `secret` is either slot's key (nothing may be written)."""
    for which, app, held in (
        ("active", alt.active_app, state.old_secret),
        ("standby", alt.standby_app, alt.slots.standby_secret),
    ):
        if held is not None and held == secret:
            return (
                f"{NOT_RESET}: this is the {which} slot's key ({app}, {secret.fingerprint}); reset "
                f"{alt.standby_app}'s key in the dashboard and paste the new one; nothing was written"
            )
    return None


async def run(state: RotationState, alt: Alternating, secret: Secret) -> StandbyRow:
    """Probe the three keys, then (only when they say so) write the standby: the row says what became of it."""
    t0 = time.perf_counter()
    app = alt.standby_app
    fp = secret.fingerprint
    row = _row(state, app, fp)
    if line := same_key(alt, state, secret):
        state.event(Step.REKEY, "refused", target=app, detail=line, fingerprint=fp)
        return _not_written(row, KeyOutcome.REFUSED, line, Exit.KEY_REFUSED)
    previous = alt.slots.standby_secret
    row.previous = previous.fingerprint if previous else None
    state.emit(Step.REKEY, app, EmitStatus.RUNNING, f"probing {fp} on {len(alt.probers)} URL(s)")
    new, active, prev = await asyncio.gather(
        slots.probe_all(alt, secret),
        _probe(alt, state.old_secret),
        _probe(alt, previous),
    )
    proven_at = time.time()
    state.event(Step.PROBE, "accepted" if new.ok else "refused", target=app, detail=new.problem(), fingerprint=fp)
    if _refused(state, alt, row, new, active, prev):
        return row
    row.revoked = prev.refused if prev is not None else None
    row.started = time.perf_counter() - t0
    await _write(state, alt, secret, row)
    row.finished = time.perf_counter() - t0
    if row.status != TargetStatus.OK:
        line = f"the standby slot of {row.name} was not written: {row.detail}"
        state.event(Step.REKEY, row.status, target=app, detail=line, fingerprint=fp)
        code = Exit.CONFLICT if row.status == TargetStatus.CONFLICT else Exit.ERROR
        row.outcome, row.message, row.exit_code = KeyOutcome.FAILED, line, int(code)
        return row
    row.revoked_at = proven_at if row.revoked else None
    await slots.refresh(state, alt)
    state.event(
        Step.REKEY,
        "ok",
        target=app,
        detail=f"standby {app}: {row.previous or 'empty'} -> {fp}; {alt.describe()}",
        fingerprint=fp,
        version=row.version,
        seconds=row.finished,
    )
    state.emit(Step.REKEY, app, EmitStatus.OK, f"standby {app} holds {fp}", row.finished)
    row.message = f"{app} re-keyed as the standby ({fp})"
    return row


def _row(state: RotationState, app: str, fp: str) -> StandbyRow:
    primary = state.primary
    return StandbyRow(primary.name, "backend", primary.settings.type, primary=True, app=app, key=fp)


def _not_written(row: StandbyRow, outcome: KeyOutcome, line: str, code: Exit) -> StandbyRow:
    row.outcome, row.message, row.exit_code = outcome, line, int(code)
    return row


async def _probe(alt: Alternating, key: Secret | None) -> KeyCheck | None:
    return await slots.probe_all(alt, key) if key is not None else None


def _refused(
    state: RotationState,
    alt: Alternating,
    row: StandbyRow,
    new: KeyCheck,
    active: KeyCheck | None,
    prev: KeyCheck | None,
) -> bool:
    """Whether the key must not be written (nothing is), said on `row`: the active app was reset
    instead, the API refused (or could not check) the key, or the standby's previous key still works."""
    app, fp = alt.standby_app, row.key
    if active is not None and active.refused:
        line = (
            f"the active app ({alt.active_app}) was reset, not {app}: its key ({active.fingerprint}) is refused "
            f"({active.problem()}); consumers are failing"
        )
        state.event(Step.REKEY, "active_reset", target=alt.active_app, detail=line, fingerprint=active.fingerprint)
        row.previous = None
        _not_written(row, KeyOutcome.ACTIVE_RESET, line, Exit.KEY_REFUSED)
        return True
    if not new.ok:
        unavailable = not new.refused
        line = (
            f"the API {'could not check' if unavailable else 'refused'} this key ({new.problem()}); nothing was written"
        )
        state.emit(Step.REKEY, app, EmitStatus.FAILED, line)
        state.event(Step.REKEY, "refused", target=app, detail=line, fingerprint=fp)
        row.previous = None
        _not_written(row, KeyOutcome.REFUSED, line, Exit.PROBE_UNAVAILABLE if unavailable else Exit.KEY_REFUSED)
        return True
    if prev is None:
        return False
    state.event(
        Step.REVOKED,
        "ok" if prev.refused else "still_works",
        target=app,
        detail=prev.problem() or "accepted on every URL",
        fingerprint=prev.fingerprint,
    )
    if prev.refused:
        return False
    line = (
        f"{NOT_RESET}: {app}'s previous key ({prev.fingerprint}) still works ({_status(prev)}), so this key "
        f"is from another app or {app} was not reset; nothing was written"
    )
    state.emit(Step.REKEY, app, EmitStatus.FAILED, line)
    row.revoked = False
    _not_written(row, KeyOutcome.REFUSED, line, Exit.KEY_REFUSED)
    return True


def _same_slots(a: Slots, b: Slots) -> bool:
    def fps(s: Slots) -> tuple[str | None, str | None, str | None, str | None]:
        return (
            s.active.fingerprint if s.active else None,
            s.standby.fingerprint if s.standby else None,
            s.token,
            str(s.leaked),
        )

    return fps(a) == fps(b)


def _status(kc: KeyCheck) -> str:
    return ", ".join(f"{r.outcome.value}" for r in kc.results.values())


async def _write(state: RotationState, alt: Alternating, secret: Secret, res: TargetResult) -> None:
    """`write_standby` (CAS on the slots' version), read back, on `res`; never raises."""
    primary = state.primary
    token = alt.token(slots.LastStep.REKEY)
    active_app = alt.active_app if alt.slots.active is None or alt.slots.active.app is None else None
    deadline = asyncio.get_running_loop().time() + state.plan.rotation.deadline
    a = alt.slots.active
    rec = slot_record.after_rekey(
        alt.slots, (alt.active_app, a.fingerprint) if a else None, (alt.standby_app, secret.fingerprint), token
    )
    await slot_record.journaled(state, rec, alt.slots, Step.REKEY.value)

    async def once() -> str | None:
        try:
            written = await primary.write_standby(
                secret, app=alt.standby_app, token=token, expected_version=alt.slots.version, active_app=active_app
            )
        except Conflict:
            # A concurrent writer changed the store (another field, another version) but not the slots:
            # the write is still the one meant; take the new version and try again.
            now = await primary.read_slots()
            if _same_slots(now, alt.slots):
                alt.slots = now
                raise PluginError(f"{primary.name}: changed by another writer (not the slots); retrying") from None
            raise
        back = await primary.read_slots()
        write.read_back(
            primary.name, "the standby", back.standby.fingerprint if back.standby else None, secret.fingerprint
        )
        return written.version or back.version

    res.version = await write.attempt_write(state, primary, res, once, deadline=deadline)
    if res.status is TargetStatus.OK:
        res.fingerprint = secret.fingerprint
