"""`rotator status PLAN --repair --active APP`: the operator states which app's key consumers use.

The slot record is never inferred.  When it is missing, unreadable or disagrees
(`slot_record.problem`), the operator says which app holds the active key; this
probes both keys on every URL (the active key must work: it is what consumers
use), then writes the record (the two values untouched) with check-and-set on
the version just read, journaled first under its own journal entry (kind
"repair").  An incident's leaked mark is kept when its key is still in a slot,
named after the app the statement gives that slot.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.pipeline import slot_record
from rotator.report import RunState, Step

if TYPE_CHECKING:
    from rotator.journal import Journal
    from rotator.plan import Plan

__all__ = ["repair"]


async def repair(plan: Plan, journal: Journal, active: str) -> dict[str, Any]:
    """Write the slot record the operator states; the record written (as `Recorded.as_dict`)."""
    from rotator.pipeline.attempts import reason
    from rotator.pipeline.slot_status import opened_primary
    from rotator.pipeline.slots import survey

    apps = {a.casefold(): a for a in plan.secret.apps}
    if active.casefold() not in apps:
        raise RotationError(
            f"--active {active}: not one of the plan's apps ({', '.join(plan.secret.apps)})", Exit.PLAN_INVALID
        )
    active_app = apps[active.casefold()]
    standby_app = next(a for a in plan.secret.apps if a != active_app)
    async with opened_primary(plan) as p:
        primary, stored, slots = p.backend, p.stored, p.slots
        if slots.active is None or stored.secret is None:
            raise RotationError(f"cannot repair: the primary ({primary.name}) holds no active key", Exit.PLAN_INVALID)
        alt = await survey(plan, primary, p.http, stored.secret, slots)
        if alt.active is not None and not alt.active.ok:
            raise RotationError(
                f"cannot repair: the active key ({slots.active.fingerprint}) does not work "
                f"({alt.active.problem()}), so it is not {active_app}'s key now; nothing written",
                Exit.KEY_REFUSED,
            )
        fps = {slots.active.fingerprint: active_app}
        if slots.standby is not None:
            fps[slots.standby.fingerprint] = standby_app
        lk = slots.leaked if slots.leaked and slots.leaked.get("fp") in fps else None
        if lk is not None:
            lk = {**lk, "app": fps[lk["fp"]]}
        rec = slot_record.Recorded(
            (active_app, slots.active.fingerprint),
            (standby_app, slots.standby.fingerprint) if slots.standby else None,
            lk,
            slot_record.new_token("repair", slots.token),
        )
        rid = journal.begin(
            kind="repair",
            plan=plan.name,
            plan_path=str(plan.path),
            reason=f"slot record stated by the operator: {active_app} active",
            operator="",
            old_fp=slots.active.fingerprint,
        )

        async def first(r: slot_record.Recorded) -> None:
            detail = slot_record.detail_of(r, slots, "repair")
            journal.record(rid, Step.SLOT_RECORD.value, "repair", detail=detail)

        try:
            await slot_record.store(primary, slots, rec, first)
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback
            journal.update(rid, state=RunState.FAILED.value, exit_code=int(Exit.CONFLICT), finished_at=time.time())
            raise RotationError(
                f"cannot repair: {primary.name}: {reason(exc)}; nothing written, run it again", Exit.CONFLICT
            ) from None
        journal.update(rid, state=RunState.DONE.value, exit_code=0, finished_at=time.time())
        out = rec.as_dict()
        out["standby_works"] = alt.standby.ok if alt.standby is not None else None
        return out
