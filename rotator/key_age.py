"""Key age: how long since the plan's key was set, from one source of truth.

In order: the journal's last rotation of the plan that finished with every
target done (from the moment its key arrived), or an explicit `rotator adopt`
record (kind ``adopt``: an existing key's age, given or read from the primary),
whichever is newer; else the primary's own record of its current value
(`primary_set_at`: Vault KV v2 `created_time`, the AWS version's `CreatedDate`,
an alternating slot's stored time), read by the service (`key_record`); else
unknown.  `status`, the page, /metrics and the reminders all read it here.
The job that warns and notifies about it is `agejob`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.journal import Journal
    from rotator.key_record import PrimaryRecord
    from rotator.plan import Plan

DAY = 86400.0


@dataclass
class KeyAge:
    plan: str
    status: str  # ok | due | overdue | unknown
    age_seconds: float | None
    rotated_at: float | None
    rotation_id: str | None
    max_age_days: int | None
    reminder_lead_days: int
    message: str
    source: str | None = None  # journal | adopted | primary (its own record) | None: unknown
    basis: str | None = None  # what the age is counted from: a rotation id, or the primary's record
    counted_from: str = ""  # the same in words, as status and the page say it ("" when unknown)

    @property
    def warn(self) -> bool:
        return self.status in ("due", "overdue", "unknown")

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
            "age_days": None if self.age_seconds is None else round(self.age_seconds / DAY, 2),
            "rotated_at": self.rotated_at,
            "rotation_id": self.rotation_id,
            "max_age_days": self.max_age_days,
            "reminder_lead_days": self.reminder_lead_days,
            "message": self.message,
            "source": self.source,
            "from": self.counted_from or None,
        }


def _set_at(row: Any) -> float:
    return float(row.key_received_at or row.finished_at or row.created_at)


def key_age(
    journal: Journal | None,
    plan: Plan,
    now: float | None = None,
    primary_set_at: float | None = None,
    primary_from: str = "the primary's own record",
) -> KeyAge:
    """`primary_from`: which record of the primary `primary_set_at` comes from (`key_record`)."""
    now = time.time() if now is None else now
    spec = plan.secret
    found = () if journal is None else (journal.last_success(plan.name, k) for k in ("rotate", "adopt"))
    rows = [r for r in found if r]
    base = KeyAge(plan.name, "ok", None, None, None, spec.max_age_days, spec.reminder_lead_days, "")
    row = max(rows, key=_set_at) if rows else None
    if row is not None:
        rotated_at = _set_at(row)
        base.rotation_id, base.basis = row.id, row.id
        base.source = "adopted" if row.kind == "adopt" else "journal"
        base.counted_from = f"rotator adopt ({row.id})" if row.kind == "adopt" else f"its last rotation ({row.id})"
    elif primary_set_at is not None:
        rotated_at = primary_set_at
        base.source, base.basis = "primary", f"primary@{primary_set_at:.0f}"
        base.counted_from = primary_from
    else:
        base.status = "unknown"
        base.message = (
            f"{plan.name}: key age unknown: no completed rotation in the journal and the primary records no date; "
            f"`rotator adopt {plan.path} --set-at DATE` records it, or rotate it (`rotator rotate {plan.path}`)"
        )
        return base
    age = max(now - rotated_at, 0.0)
    base.age_seconds, base.rotated_at = age, rotated_at
    days = age / DAY
    if spec.max_age_days is None:
        base.message = f"{plan.name}: key is {days:.1f} days old (no max_age_days set)"
        return base
    left = spec.max_age_days - days
    if left < 0:
        base.status = "overdue"
        base.message = (
            f"{plan.name}: the key is {days:.0f} days old, {-left:.0f} days past max_age_days = "
            f"{spec.max_age_days}: rotate it now (`rotator rotate {plan.path}`)"
        )
    elif left <= spec.reminder_lead_days:
        base.status = "due"
        base.message = (
            f"{plan.name}: the key is {days:.0f} days old and reaches max_age_days = {spec.max_age_days} "
            f"in {left:.0f} days: plan its rotation (`rotator rotate {plan.path}`)"
        )
    else:
        base.message = f"{plan.name}: the key is {days:.0f} days old; max {spec.max_age_days}"
    return base


def key_age_with(journal: Journal | None, plan: Plan, record: PrimaryRecord | None, now: float | None = None) -> KeyAge:
    """`key_age` with the primary's record (`key_record`), as the service and `rotator status` read it."""
    if record is None or record.set_at is None:
        return key_age(journal, plan, now)
    return key_age(journal, plan, now, record.set_at, record.source)
