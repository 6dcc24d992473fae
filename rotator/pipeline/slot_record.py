"""The slot record: which app's key is in which slot, kept in the primary and in the journal.

The primary stores it beside the two keys (the slot metadata: apps, fingerprints,
the token of the write that set them, an open incident's leaked key).  Before
each slot write, the same record is journaled (`Step.SLOT_RECORD`, with the record
it replaces), so one can be checked against the other.  Every alternating command
reads both first (`problem`): when the primary's record is missing, unreadable,
does not describe the keys it holds, or disagrees with the journal's last slot
change, the command stops before asking for any reset and says how to repair.
Nothing is inferred from position or habit; the repair is the operator's
statement (`rotator status PLAN --repair --active APP`, `repair`), probed and
written with check-and-set.

A first use (no record, an empty standby, nothing in the journal) is not a
disagreement: the plan's first app is the one whose key the primary holds (the
plan says so, `[secret] apps`), and the first re-key writes the record.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.pipeline.attempts import TOKEN_NAMESPACE, retryable
from rotator.report import Step

if TYPE_CHECKING:
    from rotator.journal import Journal
    from rotator.pipeline.state import RotationState
    from rotator.plan import Plan
    from rotator.plugin import Backend, Slot, Slots

__all__ = ["Recorded", "check", "journaled", "problem", "record_of", "repair_line", "store", "store_in_flow"]


@dataclass(frozen=True)
class Recorded:
    """One slot record (never a key): (app, fingerprint) of each slot, the leaked key, the token."""

    active: tuple[str, str] | None
    standby: tuple[str, str] | None
    leaked: dict[str, Any] | None = None
    token: str | None = None

    def as_dict(self) -> dict[str, Any]:
        def one(s: tuple[str, str] | None) -> dict[str, str] | None:
            return {"app": s[0], "fp": s[1]} if s else None

        return {"token": self.token, "active": one(self.active), "standby": one(self.standby), "leaked": self.leaked}

    @classmethod
    def from_dict(cls, d: Any) -> Recorded | None:
        if not isinstance(d, dict):
            return None

        def one(s: Any) -> tuple[str, str] | None:
            return (str(s.get("app")), str(s.get("fp"))) if isinstance(s, dict) else None

        leaked = d.get("leaked")
        return cls(
            one(d.get("active")), one(d.get("standby")), leaked if isinstance(leaked, dict) else None, d.get("token")
        )

    def same_keys(self, other: Recorded) -> bool:
        """Same apps on the same fingerprints (app names compared case-insensitively)."""

        def norm(s: tuple[str, str] | None) -> tuple[str, str] | None:
            return (s[0].casefold(), s[1]) if s else None

        return norm(self.active) == norm(other.active) and norm(self.standby) == norm(other.standby)

    def describe(self) -> str:
        def one(s: tuple[str, str] | None) -> str:
            return f"{s[0]} ({s[1]})" if s else "empty"

        return f"active {one(self.active)}, standby {one(self.standby)}"


def record_of(slots: Slots) -> Recorded:
    """What the primary's record says (slots whose app it does not name are left out)."""

    def one(s: Slot | None) -> tuple[str, str] | None:
        return (s.app, s.fingerprint) if s is not None and s.app else None

    return Recorded(one(slots.active), one(slots.standby), slots.leaked, slots.token)


@dataclass
class JournalRecord:
    """The journal's last slot change of a plan: the record written, the one it replaced."""

    rotation_id: str
    at: float
    record: Recorded
    previous: Recorded | None


def last_journaled(journal: Journal | None, plan: str) -> JournalRecord | None:
    """The plan's last slot change in this journal (None: a new machine's journal, not a disagreement)."""
    if journal is None:
        return None
    row = journal.last_event(plan, Step.SLOT_RECORD.value)
    if row is None:
        return None
    try:
        data = json.loads(row.get("detail") or "")
    except ValueError:
        data = None
    rec = Recorded.from_dict(data.get("record") if isinstance(data, dict) else None)
    if rec is None:
        return None
    prev = Recorded.from_dict(data.get("previous")) if isinstance(data, dict) else None
    return JournalRecord(str(row["rotation_id"]), float(row["ts"]), rec, prev)


def repair_line(plan: Plan) -> str:
    apps = " or ".join(plan.secret.apps)
    return (
        f"say which app's key consumers use now: `rotator status {plan.path} --repair --active APP` "
        f"(APP: {apps}; it probes both keys and rewrites the record)"
    )


def problem(plan: Plan, slots: Slots, journaled: JournalRecord | None) -> str | None:
    """Why the slot record cannot be trusted (one line with the repair), or None."""
    why = _why(plan, slots, journaled)
    return None if why is None else f"slot record: {why}; nothing was asked or written; {repair_line(plan)}"


def _why(plan: Plan, slots: Slots, journaled: JournalRecord | None) -> str | None:
    primary = plan.primary.name
    if slots.record == "unreadable":
        return f"the primary ({primary}) holds slot metadata that is not rotator's (unreadable JSON or format)"
    if slots.record == "missing":
        if slots.standby is None and journaled is None:
            return None  # first use: the plan's first app holds the active key (the plan says so)
        held = f"a standby key ({slots.standby.fingerprint}) but" if slots.standby else "no standby key and"
        seen = (
            f", and the journal's last slot change (rotation {journaled.rotation_id}) recorded "
            f"{journaled.record.describe()}"
            if journaled
            else ""
        )
        return f"the primary ({primary}) holds {held} no slot metadata{seen}"
    known = {a.casefold() for a in plan.secret.apps}
    for who, slot in (("active", slots.active), ("standby", slots.standby)):
        if slot is None:
            continue
        if slot.app is None:
            return (
                f"the primary's {who} key ({slot.fingerprint}) is not the key its slot metadata describes "
                "(changed outside rotator, or the metadata was edited)"
            )
        if slot.app.casefold() not in known:
            return f"the slot metadata names {slot.app} for the {who} key, not one of the plan's apps"
    if slots.active and slots.standby and slots.active.fingerprint == slots.standby.fingerprint:
        return (
            f"both slots hold the same key ({slots.active.fingerprint}): one key is one app's, so the standby's app "
            "is unknown; remove the standby value from the primary, then repair, then `rotator rekey`"
        )
    if slots.active and slots.standby and slots.active.app and slots.standby.app:
        if slots.active.app.casefold() == slots.standby.app.casefold():
            return f"the slot metadata names {slots.active.app} for both slots"
    if journaled is not None:
        mine = record_of(slots)
        if not mine.same_keys(journaled.record) and not (
            journaled.previous is not None and mine.same_keys(journaled.previous)
        ):
            return (
                f"the primary records {mine.describe()}, but the journal's last slot change (rotation "
                f"{journaled.rotation_id}) recorded {journaled.record.describe()}"
            )
    return None


def check(plan: Plan, slots: Slots, journal: Journal | None) -> None:
    """RotationError (exit SLOT_RECORD) when the record cannot be trusted."""
    if (line := problem(plan, slots, last_journaled(journal, plan.name))) is not None:
        raise RotationError(line, Exit.SLOT_RECORD)


def after_swap(slots: Slots, token: str) -> Recorded:
    """The record a promote (or roll back) stores: the two slots swapped, the leaked mark kept."""
    mine = record_of(slots)
    return Recorded(mine.standby, mine.active, slots.leaked, token)


def after_rekey(slots: Slots, active: tuple[str, str] | None, standby: tuple[str, str], token: str) -> Recorded:
    """The record a re-key stores: the standby's new key; the leaked mark dropped when it is that app's."""
    leaked = slots.leaked
    if leaked is not None and str(leaked.get("app", "")).casefold() == standby[0].casefold():
        leaked = None
    return Recorded(active, standby, leaked, token)


def detail_of(new: Recorded, before: Slots, what: str) -> str:
    """The journal event's detail: the record about to be written and the one it replaces."""
    return json.dumps({"record": new.as_dict(), "previous": record_of(before).as_dict(), "what": what})


async def journaled(state: RotationState, new: Recorded, before: Slots, what: str) -> None:
    """The record a slot write is about to store, in the journal first (awaited: durable)."""
    detail = detail_of(new, before, what)
    await state.journal_call(state.journal.record, state.id, Step.SLOT_RECORD.value, what, detail=detail)


def new_token(prefix: str, seed: str | None) -> str:
    """A record write's token.  `prefix` "keep" keeps the last step the slots record
    (marking a leaked key is not a slot change: a promote stays rollback-able)."""
    if prefix == "keep":
        prefix = (seed or "").partition(":")[0] or "record"
    return f"{prefix}:{uuid.uuid5(TOKEN_NAMESPACE, f'{seed}/{prefix}/{time.time()}')}"


async def store(
    primary: Backend,
    slots: Slots,
    rec: Recorded,
    journal_first: Callable[[Recorded], Awaitable[None]],
) -> None:
    """Journal `rec`, then write it to the primary with check-and-set on `slots.version`
    (retried while the backend says a retry may help).  Raises PluginError/Conflict."""
    await journal_first(rec)
    assert rec.active is not None and rec.token is not None
    fps = (slots.active.fingerprint if slots.active else None, slots.standby.fingerprint if slots.standby else None)
    tries = max(1, primary.settings.retries + 1)
    for n in range(tries):
        try:
            await asyncio.wait_for(
                primary.write_slot_record(
                    active_app=rec.active[0],
                    standby_app=rec.standby[0] if rec.standby else None,
                    fingerprints=fps,
                    leaked=rec.leaked,
                    token=rec.token,
                    expected_version=slots.version,
                ),
                primary.settings.timeout,
            )
            return
        except Exception as exc:
            if n + 1 >= tries or not retryable(exc):
                raise
            await asyncio.sleep(min(0.2 * 2**n, 2.0))


async def store_in_flow(state: RotationState, slots: Slots, rec: Recorded, what: str) -> None:
    """`store` inside a rotation: journaled under its entry, then the primary; re-read after."""

    async def first(r: Recorded) -> None:
        await journaled(state, r, slots, what)

    await store(state.primary, slots, rec, first)
