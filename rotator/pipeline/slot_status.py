"""An alternating plan's slots as `rotator status` and the service's page show them.

From the backends alone (the primary's slots, both keys probed on every URL) plus
the journal's unfinished entries: which app is active and which is the standby,
each key's fingerprint, age and whether it works now, whether a roll back is
possible, and what is left to do.  No lock is taken and nothing is written, so
it may run beside an armed rotation of the same plan.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rotator.errors import RotationError
from rotator.exitcodes import Exit

if TYPE_CHECKING:
    from rotator.journal import Journal
    from rotator.pipeline.slots import Alternating
    from rotator.plan import Plan

__all__ = ["left_lines", "status_data", "survey"]


async def survey(plan: Plan, journal: Journal | None = None) -> Alternating:
    """The slots and both keys' probes, from the primary (no lock).  The slot record is
    checked first, against the keys and `journal`'s last slot change (exit SLOT_RECORD)."""
    from rotator.pipeline import slot_record
    from rotator.pipeline.attempts import reason
    from rotator.pipeline.slots import survey as survey_slots
    from rotator.plugin import PluginContext
    from rotator.registry import backend_class

    ctx = PluginContext(max_threads=4)
    primary = backend_class(plan.primary.type)(plan.primary, ctx)
    try:
        timeout = primary.settings.timeout
        await asyncio.wait_for(primary.open(), timeout)
        stored = await asyncio.wait_for(primary.read(), timeout)
        slots = await asyncio.wait_for(primary.read_slots(), timeout)
        slot_record.check(plan, slots, journal)
        return await survey_slots(plan, primary, ctx.http, stored.secret, slots)
    except RotationError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        raise RotationError(f"{primary.name}: cannot read the slots: {reason(exc)}", Exit.PREFLIGHT_FAILED) from None
    finally:
        try:
            await asyncio.wait_for(primary.close(), 5)
        finally:
            await ctx.aclose()


def _age(set_at: str | None) -> float | None:
    if not set_at:
        return None
    try:
        return time.time() - datetime.fromisoformat(set_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def status_data(plan: Plan, alt: Alternating, journal: Journal | None) -> dict[str, Any]:
    from rotator.pipeline.rollback import refusal

    data: dict[str, Any] = {"plan": plan.name, "strategy": "alternating", "primary": plan.primary.name}
    data.update(alt.as_dict())
    for who in ("active", "standby"):
        data[who]["age_s"] = None if (age := _age(data[who]["set_at"])) is None else round(age, 1)
    from rotator.pipeline import leaked

    data["rollback_possible"] = refusal(alt) is None
    lk = leaked.leaked(alt)
    data["incident"] = {**lk.as_dict(), "where": leaked.where(alt)} if lk is not None else None
    unfinished = journal.unfinished(plan.name) if journal is not None else []
    from rotator.pipeline.slots import landed

    active = alt.slots.active.fingerprint if alt.slots.active else None
    data["unfinished"] = [
        {"id": r.id, "state": r.state, "resume": f"rotator resume {r.id}", "landed": landed(r.state, r.new_fp, active)}
        for r in unfinished
    ]
    data["left"] = left_lines(plan, alt, data["unfinished"])
    return data


def left_lines(plan: Plan, alt: Alternating, unfinished: list[dict[str, Any]]) -> list[str]:
    """What is left to do, from the slots (and the journal's unfinished entries)."""
    from rotator.pipeline import leaked
    from rotator.pipeline.slots import Next

    out = [
        f"rotation {u['id']} did not finish ({u['state']}): `{u['resume']}` finishes it"
        if u.get("landed", True)
        else f"rotation {u['id']} stopped before its slot write landed ({u['state']}; the primary holds the "
        "slots as before): nothing to resume; the next alternating command closes it"
        for u in unfinished
    ]
    if (line := leaked.continuing(alt)) is not None:
        out.append(f"incident open: {line}: `rotator rotate {plan.path} --incident` continues it")
    elif alt.next() is Next.REKEY:
        out.append(
            f"the promote is done but {alt.standby_app} was not re-keyed: `rotator rotate {plan.path}` (or "
            f"`rotator rekey {plan.path}`) resets {alt.standby_app}; `rotator rollback {plan.path}` undoes the promote"
        )
    elif alt.next() is Next.STANDBY_FIRST:
        out.append(f"{alt.standby_problem()}: `rotator rekey {plan.path}` seeds the standby ({alt.standby_app})")
    return out
