"""Key age: how long since the plan's key was last rotated, and the reminder.

The age comes from the journal: the last rotation of the plan that finished
with every target done, from the moment its key arrived.  A plan with no such
rotation has an unknown age (it was set up by hand, or rotated before rotator):
that is warned about once per service run, not at every check.

A warning goes to the log, to the `rotator_key_age_warning` gauge, and, when the
schedule names one, to a notification webhook: a Slack-style incoming webhook
gets ``{"text": "..."}`` POSTed to it.  The webhook URL is itself a credential
(anyone holding it can post), so it comes from an env var or file and is never
logged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from rotator.logs import get_logger
from rotator.plugin import PluginError, SecretRef

if TYPE_CHECKING:
    from rotator.journal import Journal
    from rotator.plan import Plan
    from rotator.service.core import Service

log = get_logger("rotator.service.age")
DAY = 86400.0
NOTIFY_TIMEOUT = 10.0


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


async def notify(ref: SecretRef, text: str, *, client: httpx.AsyncClient | None = None) -> bool:
    """POST ``{"text": text}`` to the webhook URL named by `ref`.  Never raises; never
    logs the URL (it is a credential)."""
    try:
        url = ref.resolve().reveal()
    except PluginError as exc:
        log.warning("notify webhook not sent", why=str(exc))
        return False
    if not url.startswith(("https://", "http://")):
        log.warning("notify webhook not sent", why=f"the value of {ref.describe()} is not an http(s) URL")
        return False
    own = client is None
    http = client or httpx.AsyncClient(timeout=NOTIFY_TIMEOUT)
    try:
        resp = await http.post(url, json={"text": text})
        if resp.status_code >= 300:
            log.warning("notify webhook refused", status=resp.status_code, webhook=ref.describe())
            return False
        return True
    except httpx.HTTPError as exc:
        log.warning("notify webhook failed", error=type(exc).__name__, webhook=ref.describe())
        return False
    finally:
        if own:
            await http.aclose()


async def age_check(service: Service, plan_name: str, schedule_index: int | None = None) -> KeyAge:
    """The age-check job: gauge always; log and notify when due, overdue, or (once) unknown."""
    plan = service.plans.get(plan_name)
    if plan is None:
        raise LookupError(f"no plan named {plan_name!r} is loaded")
    import asyncio

    age = await asyncio.to_thread(key_age, service.journal, plan)
    service.metrics.set_key_age(plan.name, age.age_seconds, age.warn)
    if not age.warn:
        log.info("key age", plan=plan.name, age_days=age.as_dict()["age_days"])
        return age
    if age.status == "unknown":
        if plan.name in service.age_unknown_warned:
            return age
        service.age_unknown_warned.add(plan.name)
    log.warning(age.message, plan=plan.name, status=age.status)
    ref = None
    if schedule_index is not None and 0 <= schedule_index < len(plan.schedules):
        ref = plan.schedules[schedule_index].notify
    if ref is not None:
        await notify(ref, f"rotator: {age.message}")
    return age
