"""An incident's leaked key: recorded before anything moves, honoured by every flow until re-keyed.

`mark` writes the leaked key's app and fingerprint (and the incident's journal
id) into the primary's slot record, journaled first, before the promote.  From
then on the record says what is left, whatever happened to the process that
wrote it: `where` tells whether the leaked key is still the active key (the
promote is left) or the standby (only the leaked app's reset is left).  A
promote or roll back to the leaked key is refused (`refusal`), a re-run of
`rotate` / `rotate --incident` / the service's arm continues the incident
(`continuing`), and the mark is cleared only by the write that re-keys the
leaked app (`rotator.backend_rules.standby_change`) or replaces its active key
(`clear_if_rekeyed`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rotator.journal.store import event_row
from rotator.pipeline import slot_record
from rotator.report import RESUMABLE, RunState, Step

if TYPE_CHECKING:
    from rotator.pipeline.slots import Alternating
    from rotator.pipeline.state import RotationState

__all__ = ["Leaked", "clear_if_rekeyed", "continuing", "leaked", "mark", "refusal"]


@dataclass(frozen=True)
class Leaked:
    app: str
    fingerprint: str
    incident: str  # the journal id of the run that recorded it
    at: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"app": self.app, "fp": self.fingerprint, "incident": self.incident, "at": self.at}


def leaked(alt: Alternating) -> Leaked | None:
    raw = alt.slots.leaked
    if not raw or not isinstance(raw.get("fp"), str):
        return None
    at = raw.get("at")
    when = float(at) if isinstance(at, float | int) else None
    return Leaked(str(raw.get("app") or "?"), raw["fp"], str(raw.get("incident") or "?"), when)


def where(alt: Alternating) -> str | None:
    """ "active" (the promote is left), "standby" (the leaked app's reset is left), or None."""
    lk = leaked(alt)
    if lk is None:
        return None
    a, s = alt.slots.active, alt.slots.standby
    if a is not None and a.fingerprint == lk.fingerprint:
        return "active"
    if s is not None and s.fingerprint == lk.fingerprint:
        return "standby"
    return None


def refusal(alt: Alternating, what: str, plan: str = "PLAN") -> str | None:
    """Why `what` (promote, roll back) would put the leaked key back in use; None when it would not."""
    lk = leaked(alt)
    if lk is None or where(alt) != "standby":
        return None
    return (
        f"cannot {what}: the standby key ({lk.app}, {lk.fingerprint}) is the key leaked in incident {lk.incident}; "
        f"it is never put back in use: reset {lk.app} to finish the incident (`rotator rotate {plan} --incident`)"
    )


def continuing(alt: Alternating) -> str | None:
    """The line a re-run says when an incident is open; None when none is."""
    lk = leaked(alt)
    if lk is None:
        return None
    if where(alt) == "standby":
        return (
            f"continuing incident {lk.incident}: the leaked key ({lk.app}, {lk.fingerprint}) is out of use "
            f"(the standby); only {lk.app}'s reset is left: the leaked key dies at that click"
        )
    if where(alt) == "active":
        return (
            f"continuing incident {lk.incident}: the leaked key ({lk.app}, {lk.fingerprint}) is still the active "
            f"key; promoting {alt.standby_app}, then reset {lk.app}"
        )
    return None


async def mark(state: RotationState, alt: Alternating) -> Leaked:
    """Record the active key as leaked (primary's record and journal) before anything moves.
    An incident already open is kept as it is (a re-run continues it)."""
    from rotator.pipeline import slots

    carried = bool(alt.slots.leaked and alt.slots.leaked.get("carried"))
    if (lk := leaked(alt)) is not None and not carried:
        alt.notes["leaked"] = lk
        return lk
    a = alt.slots.active
    assert a is not None, "an alternating plan at arm holds an active key"
    if lk is None:
        lk = Leaked(alt.active_app, a.fingerprint, state.id, round(time.time(), 3))
    s = alt.slots.standby
    rec = slot_record.Recorded(
        (alt.active_app, a.fingerprint),
        (alt.standby_app, s.fingerprint) if s is not None else None,
        lk.as_dict(),
        slot_record.new_token("keep", alt.slots.token),
    )
    state.emit(Step.SLOTS, alt.active_app, "running", f"recording the leaked key ({lk.fingerprint}) first")
    await slot_record.store_in_flow(state, alt.slots, rec, "leaked")
    await slots.refresh(state, alt)
    state.emit(Step.SLOTS, alt.active_app, "ok", f"leaked key {lk.fingerprint} recorded (incident {lk.incident})")
    alt.notes["leaked"] = lk
    return lk


async def clear_if_rekeyed(state: RotationState, alt: Alternating, *, what: str) -> None:
    """After the active value was replaced single-app style (revoke now, a mistaken reset):
    write the record that says which app holds it (and drop the leaked mark if it was that app's)."""
    from rotator.pipeline import slots

    a, s = alt.slots.active, alt.slots.standby
    if a is None:
        return
    lk = leaked(alt)
    keep = lk.as_dict() if lk is not None and lk.fingerprint in {x.fingerprint for x in (a, s) if x} else None
    rec = slot_record.Recorded(
        (alt.active_app, a.fingerprint),
        (alt.standby_app, s.fingerprint) if s is not None else None,
        keep,
        slot_record.new_token("keep", alt.slots.token),
    )
    await slot_record.store_in_flow(state, alt.slots, rec, what)
    await slots.refresh(state, alt)


async def close_continued(state: RotationState) -> None:
    """The plan's earlier unfinished runs, now finished by this one: closed as aborted, each
    with an event naming the run that continued it (`rotator resume` no longer offers them)."""
    rows = await state.journal_call(state.journal.unfinished, state.plan.name)
    for row in rows:
        if row.id == state.id:
            continue
        await state.journal_call(
            state.journal.record, row.id, Step.REPORT.value, "continued", detail=f"continued by rotation {state.id}"
        )
        await state.journal_call(state.journal.update, row.id, state=RunState.ABORTED.value, finished_at=time.time())


async def awaiting_rekey(state: RotationState, alt: Alternating) -> None:
    """After a promote, before its re-key: the entry is `rekey_left` (with an event saying so), so a
    process killed from here on leaves it unfinished, and `resume` and `status` say what is left."""
    detail = f"promote done ({alt.describe()}); left: reset {alt.standby_app} (re-key the standby)"
    event = event_row(state.id, Step.REKEY.value, "waiting", target=alt.standby_app, detail=detail)
    await state.journal_call(state.journal.update, state.id, state=RunState.REKEY_LEFT.value, with_events=[event])


async def close_rekey_left(state: RotationState, *, rolled_back: bool = False) -> None:
    """The plan's earlier runs left at `rekey_left`, now that this run re-keyed the standby (they are
    done) or rolled their promote back (aborted), each with an event naming this run."""
    rows = await state.journal_call(state.journal.history, state.plan.name, 50)
    for row in rows:
        if row.id == state.id or row.state != RunState.REKEY_LEFT.value:
            continue
        what = "its promote was rolled back" if rolled_back else "the re-key left was done"
        end = RunState.ABORTED if rolled_back else RunState.DONE
        await state.journal_call(
            state.journal.record, row.id, Step.REPORT.value, "continued", detail=f"{what} by rotation {state.id}"
        )
        await state.journal_call(state.journal.update, row.id, state=end.value, finished_at=time.time())


async def close_stale(state: RotationState, alt: Alternating) -> list[str]:
    """This plan's runs still journaled as armed, now that this run holds the plan's lock: their
    process is gone.  Closed as aborted, each with an event naming this run; their ids."""
    from rotator.pipeline.slots import landed

    rows = await state.journal_call(state.journal.history, state.plan.name, 50)
    a = alt.slots.active
    active = a.fingerprint if a is not None else None
    stale = [
        r
        for r in rows
        if r.id != state.id
        and (r.state == RunState.ARMED.value or (r.state in RESUMABLE and not landed(r.state, r.new_fp, active)))
    ]
    for row in stale:
        why = "its process ended while armed" if row.state == RunState.ARMED.value else "its slot write never landed"
        await state.journal_call(
            state.journal.record, row.id, Step.REPORT.value, "stale", detail=f"closed by rotation {state.id}: {why}"
        )
        await state.journal_call(state.journal.update, row.id, state=RunState.ABORTED.value, finished_at=time.time())
    return [r.id for r in stale]
