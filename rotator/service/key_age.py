"""Key age: how long since the plan's key was last rotated (pure: read from the journal).

The age comes from the journal: the last rotation of the plan that finished
with every target done, from the moment its key arrived.  A plan with no such
rotation has an unknown age (it was set up by hand, or rotated before rotator).
The job that warns and notifies about it is `agejob`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.journal import Journal
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
        }


def key_age(journal: Journal, plan: Plan, now: float | None = None) -> KeyAge:
    now = time.time() if now is None else now
    spec = plan.secret
    row = journal.last_success(plan.name, "rotate")
    base = KeyAge(plan.name, "ok", None, None, None, spec.max_age_days, spec.reminder_lead_days, "")
    if row is None:
        base.status = "unknown"
        base.message = (
            f"{plan.name}: key age unknown: no completed rotation in the journal; "
            f"rotate it with rotator (`rotator rotate {plan.path}`) to start tracking it"
        )
        return base
    rotated_at = row.key_received_at or row.finished_at or row.created_at
    age = max(now - rotated_at, 0.0)
    base.age_seconds, base.rotated_at, base.rotation_id = age, rotated_at, row.id
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
