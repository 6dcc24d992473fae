"""Key age: how long since the plan's key was set (`key_age`: the journal, an adoption,
else the primary's own record), and the reminders.

One reminder per threshold crossed: 14, 7 and 1 days before `max_age_days` (and
the plan's `reminder_lead_days`), then one a day while overdue; while the age is
unknown, one a week.  Each is claimed in the journal (`job_runs`, keyed on the
threshold's instant and what the age counts from) before it is sent, so two
replicas, a restart, or two age-check schedules never send it twice, and a new
rotation starts the thresholds afresh.

A warning goes to the log, to the `rotator_key_age_warning` gauge, to the plan's
``[[notify]]`` entries (`rotator.notify.notify_warning`, with a link to the page),
and, when the schedule names one, to a notification webhook: a Slack-style
incoming webhook gets ``{"text": "..."}`` POSTed to it.  The webhook URL is itself a credential
(anyone holding it can post), so it comes from an env var or file and is never
logged.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from rotator.key_age import DAY, KeyAge, key_age_with
from rotator.logs import get_logger
from rotator.plugin import PluginError, SecretRef
from rotator.transport import http_client

if TYPE_CHECKING:
    from rotator.key_record import PrimaryRecord
    from rotator.plan import Plan
    from rotator.service.core import Service

log = get_logger("rotator.service.age")
NOTIFY_TIMEOUT = 10.0


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
    http = client or http_client(timeout=NOTIFY_TIMEOUT, trust_env=True)
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


REMINDER_DAYS = (14, 7, 1)  # days before max_age_days a reminder goes out; then one a day while overdue
PRIMARY_READ_TIMEOUT = 10.0  # seconds to read the primary's own record of its value's date


def thresholds(age: KeyAge) -> list[int]:
    """Days before max_age_days at which a reminder is due (plus the plan's reminder_lead_days)."""
    if age.max_age_days is None:
        return []
    days = set(REMINDER_DAYS) | ({age.reminder_lead_days} if age.reminder_lead_days > 0 else set())
    return sorted((d for d in days if d < age.max_age_days), reverse=True)


def due_reminder(age: KeyAge) -> tuple[str, datetime] | None:
    """The latest reminder threshold the key has crossed, and when it crossed it (the same
    instant on every replica, so claimed once in all), or None when none is due yet.
    Only the latest: a service that was down for weeks sends one reminder, not a backlog."""
    if age.rotated_at is None or age.age_seconds is None or age.max_age_days is None:
        return None
    now = age.rotated_at + age.age_seconds
    limit = age.rotated_at + age.max_age_days * DAY
    if now >= limit:
        k = int((now - limit) // DAY)
        return f"overdue, day {k + 1}", datetime.fromtimestamp(limit + k * DAY, UTC)
    crossed = [d for d in thresholds(age) if limit - d * DAY <= now]
    if not crossed:
        return None
    d = min(crossed)
    return f"{d} day{'s' if d != 1 else ''} before max_age_days", datetime.fromtimestamp(limit - d * DAY, UTC)


def _claim_key(plan: str, age: KeyAge, now: float) -> tuple[str, datetime, str] | None:
    """(claim id, instant, label) of the reminder due now; None when none is."""
    if age.status == "unknown":  # at most once a week, across replicas and restarts
        week = int(now // (7 * DAY))
        return f"rotator-reminder/{plan}/unknown", datetime.fromtimestamp(week * 7 * DAY, UTC), "age unknown"
    due = due_reminder(age)
    if due is None:
        return None
    label, when = due
    return f"rotator-reminder/{plan}/{age.basis}", when, label


async def refresh_primary_record(service: Service, plan: Plan) -> PrimaryRecord | None:
    """The primary's own date for its value (cached on the service): read only while the journal
    has no rotation or adoption of the plan; the cached one (or None) when it cannot be read."""
    from rotator.key_record import read_primary_record

    cache = service.primary_records
    try:
        record = await asyncio.wait_for(read_primary_record(plan), PRIMARY_READ_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - the age stays what the journal says
        log.info("primary's record not read", plan=plan.name, error=type(exc).__name__)
        return cache.get(plan.name)
    cache[plan.name] = record
    return record


async def current_age(service: Service, plan: Plan) -> KeyAge:
    """The plan's key age from its one source of truth (`key_age`), reading the primary's
    record when the journal has nothing."""
    age = await asyncio.to_thread(key_age_with, service.journal, plan, service.primary_records.get(plan.name))
    if age.source in (None, "primary"):
        record = await refresh_primary_record(service, plan)
        age = await asyncio.to_thread(key_age_with, service.journal, plan, record)
    return age


async def age_check(service: Service, plan_name: str, schedule_index: int | None = None) -> KeyAge:
    """The age-check job: gauge always; one reminder per threshold crossed (14, 7 and 1 days
    before max_age_days, then daily while overdue; weekly while the age is unknown), claimed
    in the journal so that replicas and restarts never send it twice."""
    plan = service.plans.get(plan_name)
    if plan is None:
        raise LookupError(f"no plan named {plan_name!r} is loaded")
    from rotator.journal import claim_run

    age = await current_age(service, plan)
    service.metrics.set_key_age(plan.name, age.age_seconds, age.warn, age.max_age_days)
    now = time.time()
    due = _claim_key(plan.name, age, now)
    if due is None:
        log.info("key age", plan=plan.name, age_days=age.as_dict()["age_days"], status=age.status)
        return age
    claim, when, label = due
    if not await asyncio.to_thread(claim_run, service.journal.engine, claim, when):
        log.info("key-age reminder already sent", plan=plan.name, reminder=label)
        return age
    log.warning(age.message, plan=plan.name, status=age.status, reminder=label)
    await send_reminder(service, plan, age, schedule_index)
    return age


async def send_reminder(service: Service, plan: Plan, age: KeyAge, schedule_index: int | None) -> None:
    """One reminder through one path: the plan's ``[[notify]]`` entries, and the schedule's own
    webhook only when it is not one of them (the same channel twice is one reminder)."""
    ref = None
    if schedule_index is not None and 0 <= schedule_index < len(plan.schedules):
        ref = plan.schedules[schedule_index].notify
    entries = list(getattr(plan, "notify", []) or [])
    if ref is not None and not _same_channel(ref, entries):
        await notify(ref, f"rotator: {age.message}")
    if entries:
        from rotator.notify import notify_warning

        await notify_warning(plan, age.message, link=service.link())


def _same_channel(ref: SecretRef, entries: list[Any]) -> bool:
    try:
        url = ref.resolve().reveal()
    except PluginError:
        return False
    for e in entries:
        try:
            if e.url.resolve().reveal() == url:
                return True
        except (PluginError, AttributeError):
            continue
    return False
