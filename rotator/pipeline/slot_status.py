"""An alternating plan's slots as `rotator status` and the service's page show them.

From the backends alone (the primary's slots, both keys probed on every URL) plus
the journal's unfinished entries: which app is active and which is the standby,
each key's fingerprint, age and whether it works now, whether a roll back is
possible, and what is left to do.  No lock is taken and nothing is written, so
it may run beside an armed rotation of the same plan.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.key_record import SLOT_RECORD
from rotator.key_state import KeyState

if TYPE_CHECKING:
    import httpx

    from rotator.journal import Journal
    from rotator.pipeline.slots import Alternating, Slots
    from rotator.plan import Plan
    from rotator.plugin import Backend, Stored

__all__ = ["left_lines", "status_data", "survey"]

HISTORY_LOOKUP = 50  # journal rows searched for the run that stored a slot's key


@dataclass
class OpenedPrimary:
    """The plan's primary, opened, with what it holds now: its key and both slots."""

    backend: Backend
    http: httpx.AsyncClient
    stored: Stored
    slots: Slots


@contextlib.asynccontextmanager
async def opened_primary(plan: Plan) -> AsyncIterator[OpenedPrimary]:
    """Open the primary, read its key and slots (each within its timeout), and close it after."""
    from rotator.plugin import PluginContext
    from rotator.registry import backend_class

    ctx = PluginContext(max_threads=4)
    primary = backend_class(plan.primary.type)(plan.primary, ctx)
    try:
        timeout = primary.settings.timeout
        await asyncio.wait_for(primary.open(), timeout)
        stored = await asyncio.wait_for(primary.read(), timeout)
        slots = await asyncio.wait_for(primary.read_slots(), timeout)
        yield OpenedPrimary(primary, ctx.http, stored, slots)
    finally:
        try:
            await asyncio.wait_for(primary.close(), 5)
        finally:
            await ctx.aclose()


async def survey(plan: Plan, journal: Journal | None = None) -> Alternating:
    """The slots and both keys' probes, from the primary (no lock).  The slot record is
    checked first, against the keys and `journal`'s last slot change (exit SLOT_RECORD)."""
    from rotator.pipeline import slot_record
    from rotator.pipeline.attempts import reason
    from rotator.pipeline.slots import survey as survey_slots

    try:
        async with opened_primary(plan) as p:
            slot_record.check(plan, p.slots, journal)
            return await survey_slots(plan, p.backend, p.http, p.stored.secret, p.slots)
    except RotationError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        raise RotationError(
            f"{plan.primary.name}: cannot read the slots: {reason(exc)}", Exit.PREFLIGHT_FAILED
        ) from None


def _age(set_at: str | None) -> float | None:
    if not set_at:
        return None
    try:
        return time.time() - datetime.fromisoformat(set_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _stored_by_run(journal: Journal, plan: Plan, fp: str) -> tuple[float | None, str]:
    """A slot the record does not date (a `--revoke-now` writes the active value as a single-app
    rotation does): the age from the journal row of the run that stored this key."""
    for row in journal.history(plan.name, limit=HISTORY_LOOKUP):
        if row.new_fp == fp and row.kind != "sync" and row.state == "done":
            at = row.key_received_at or row.finished_at
            if at is not None:
                return max(time.time() - at, 0.0), f"the rotation that stored it ({row.id})"
    return None, ""


def status_data(plan: Plan, alt: Alternating, journal: Journal | None) -> dict[str, Any]:
    from rotator.pipeline.rollback import refusal

    data: dict[str, Any] = {"plan": plan.name, "strategy": "alternating", "primary": plan.primary.name}
    data.update(alt.as_dict())
    for who in ("active", "standby"):
        age, source = _age(data[who]["set_at"]), SLOT_RECORD
        if age is None and data[who]["fingerprint"] and journal is not None:
            age, source = _stored_by_run(journal, plan, data[who]["fingerprint"])
        data[who]["age_s"] = None if age is None else round(age, 1)
        data[who]["age_from"] = source if age is not None else None
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
    if alt.standby is not None and alt.standby.state is KeyState.UNCHECKED:
        # Only what the slots themselves say: the API did not say the standby is bad, so no re-key advice.
        unprobed = replace(alt, standby=None)
        data["standby_problem"] = unprobed.standby_problem()
        data["next"] = f"{unprobed.next().value} (if the standby key works: it could not be checked)"
        data["left"] = left_lines(plan, unprobed, data["unfinished"])
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
