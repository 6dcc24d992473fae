"""A rotation this replica does not hold, answered from the journal.

With several replicas (or `rotator rotate` beside the service), an armed rotation lives in
the process that armed it: its clients, connections and the plan's lock are there.  Another
replica says who holds it (`where`, `active`), refuses its key with that name (`not_here`),
and closes it by asking its holder through the journal (`close_elsewhere`): the holder's
keeper reads the request within `KEEP_WARM_EVERY` seconds.  A rotation left by a process
that is gone is closed here, in the journal.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rotator.logs import get_logger
from rotator.pipeline.ask import KEEP_WARM_EVERY
from rotator.report import FINISHED, RunState, Step
from rotator.service.errors import NoSuch, Refused, ServiceError

if TYPE_CHECKING:
    from rotator.journal import Journal, RotationRow
    from rotator.service.sessions import Held

log = get_logger("rotator.service")


@dataclass(frozen=True)
class Closed:
    """What a close did: closed (here, or in the journal for a holder that is gone), or
    `requested` of the live process that holds it."""

    id: str
    requested: bool = False
    message: str | None = None
    lock: dict[str, Any] | None = None
    rotation: dict[str, Any] | None = None  # closed here: the held rotation's summary

    def as_dict(self) -> dict[str, Any]:
        if self.requested:
            return {"id": self.id, "requested": True, "message": self.message, "lock": self.lock}
        if self.rotation is not None:
            return {**self.rotation, "closed": True}
        return {"id": self.id, "closed": True, "message": self.message}


def where(journal: Journal, row: RotationRow) -> dict[str, Any]:
    """The plan lock's holder, if it is this rotation: host, pid, since, alive."""
    info = journal.lock_info(row.plan)
    return info if info is not None and info["holder"] == row.id else {}


def not_here(journal: Journal, rid: str) -> ServiceError:
    """Why a rotation this replica does not hold cannot be acted on here."""
    row = journal.get(rid)
    if row is None:
        return NoSuch(f"no rotation {rid} in this service (see /api/history)")
    if row.state in FINISHED:
        return Refused(f"rotation {row.id} is {row.state}; arm the plan again")
    at = where(journal, row)
    if at.get("alive"):
        return Refused(
            f"rotation {row.id} is held by another replica (pid {at['pid']} on {at['host']}, "
            "which armed it): send its key to that replica",
            lock=at,
        )
    return Refused(
        f"rotation {row.id} ({row.state}) was left by a replica that is gone: "
        + ("arm the plan again" if row.state == "armed" else f"`rotator resume {row.id}` finishes it"),
        lock=at or None,
    )


def active(journal: Journal, held: Held | None, lock: dict[str, Any] | None) -> dict[str, Any] | None:
    """The plan's rotation in progress, wherever it is held: who holds it, since when, where."""
    if held is not None:
        return {
            "id": held.id,
            "state": held.state,
            "operator": held.operator,
            "created_at": held.created_at,
            "expires_at": held.expires_at,
            "held_here": True,
        }
    if not lock:
        return None
    row = journal.get(lock["holder"])
    if row is None or row.state in FINISHED:
        return None
    return {
        "id": row.id,
        "kind": row.kind,
        "state": row.state,
        "operator": row.operator,
        "created_at": row.created_at,
        "held_here": False,
        "host": lock["host"],
        "pid": lock["pid"],
        "alive": lock["alive"],
    }


async def close_elsewhere(journal: Journal, rid: str, who: str) -> Closed:
    """Close an armed rotation this replica does not hold: ask its live holder through the
    journal, or close it in the journal when its holder is gone.  One that has a key is never
    closed (`rotator resume` finishes it)."""
    row = await asyncio.to_thread(journal.get, rid)
    if row is None:
        raise NoSuch(f"no rotation {rid} in this service (see /api/history)")
    if row.state in FINISHED:
        raise Refused(f"rotation {row.id} is already {row.state}")
    if row.state != RunState.ARMED:
        raise Refused(f"rotation {row.id} is {row.state}: it has a key; `rotator resume {row.id}` finishes it")
    at = await asyncio.to_thread(where, journal, row)
    if at.get("alive"):
        detail = f"closed by {who}"
        await asyncio.to_thread(journal.record, row.id, Step.CLOSE, "requested", detail=detail)
        log.info("close requested", rotation=row.id, holder_pid=at.get("pid"), by=who)
        message = (
            f"asked pid {at['pid']} on {at['host']} (which holds it) to close rotation "
            f"{row.id}: it closes within {KEEP_WARM_EVERY:.0f} s"
        )
        return Closed(row.id, requested=True, message=message, lock=at)

    def abort() -> None:
        journal.record(row.id, Step.CLOSE, "done", detail=f"closed by {who}: its holder is gone")
        journal.update(row.id, state=RunState.ABORTED, finished_at=time.time())
        if at:
            journal.release(row.plan, row.id)

    await asyncio.to_thread(abort)
    return Closed(row.id, message=f"rotation {row.id} closed (its holder was gone)")


__all__ = ["Closed", "active", "close_elsewhere", "not_here", "where"]
