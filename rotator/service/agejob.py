"""Key age: how long since the plan's key was last rotated, and the reminder.

The age comes from the journal: the last rotation of the plan that finished
with every target done, from the moment its key arrived.  A plan with no such
rotation has an unknown age (it was set up by hand, or rotated before rotator):
that is warned about once per service run, not at every check.

A warning goes to the log, to the `rotator_key_age_warning` gauge, to the plan's
``[[notify]]`` entries (`rotator.notify.notify_warning`, with a link to the page),
and, when the schedule names one, to a notification webhook: a Slack-style
incoming webhook gets ``{"text": "..."}`` POSTed to it.  The webhook URL is itself a credential
(anyone holding it can post), so it comes from an env var or file and is never
logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from rotator.logs import get_logger
from rotator.plugin import PluginError, SecretRef
from rotator.service.key_age import KeyAge, key_age
from rotator.transport import http_client

if TYPE_CHECKING:
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
    if ref is not None:  # the schedule's own Slack-style webhook, as before [[notify]] existed
        await notify(ref, f"rotator: {age.message}")
    if getattr(plan, "notify", None):  # the plan's [[notify]] entries: Slack, Teams, signed webhooks
        from rotator.notify import notify_warning

        await notify_warning(plan, age.message, link=service.link())
    return age
