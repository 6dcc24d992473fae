"""Delivering notifications: every ``[[notify]]`` entry at once, each retried with
backoff, none able to fail (or hold up beyond `DEADLINE`) the rotation it reports.

Runs after the report is final, outside the window.  A notification that does
not go through is logged and returned as a failed `NotifyResult`, with a reason
that never names the URL (a webhook URL is a credential).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from rotator.logs import get_logger
from rotator.notify import message as messages
from rotator.notify.base import Message, Notifier, NotifierSettings, Outcome, SendError
from rotator.transport import http_client

if TYPE_CHECKING:
    from rotator.plan import Plan

log = get_logger("rotator.notify")
DEADLINE = 60.0  # seconds after which a notification makes no new attempt (the service sends in the background)
# The CLI waits at most this long after the outcome for its notifications (its exit and --json wait
# for them); one still unanswered then is abandoned: reported as `abandoned`, no further attempt.
CLI_WAIT = 5.0


class NotifyStatus(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # only_failures, and everything went well
    ABANDONED = "abandoned"  # no answer within the caller's wait (the CLI's `CLI_WAIT`): not retried


@dataclass
class NotifyResult:
    name: str
    type: str
    status: NotifyStatus
    attempts: int = 0
    seconds: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status not in (NotifyStatus.FAILED, NotifyStatus.ABANDONED)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "status": self.status.value,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 4),
            "detail": self.detail,
        }


async def deliver(notifier: Notifier, message: Message, client: httpx.AsyncClient) -> NotifyResult:
    """Send `message` through `notifier`, retrying what may pass.  Never raises."""
    s: NotifierSettings = notifier.settings
    result = NotifyResult(notifier.name, s.type, NotifyStatus.FAILED)
    started = time.monotonic()
    try:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(s.retries + 1) | stop_after_delay(DEADLINE),
            wait=wait_exponential(multiplier=s.backoff, max=s.backoff * 8) + wait_random(0, s.backoff / 2),
            retry=retry_if_exception(lambda e: isinstance(e, SendError) and e.retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                result.attempts += 1
                detail = await notifier.send(message, client)
        result.status, result.detail = NotifyStatus.SENT, messages.clean(detail)
    except SendError as exc:
        tries = f" after {result.attempts} attempts" if result.attempts > 1 else ""
        result.detail = messages.clean(f"{exc}{tries}")
    except Exception as exc:  # noqa: BLE001 - a notifier's bug must not fail the rotation
        result.detail = f"{type(exc).__name__} (details withheld: may hold the URL)"
    result.seconds = time.monotonic() - started
    if result.ok:
        log.info("notification sent", notifier=result.name, attempts=result.attempts)
    else:
        log.warning("notification failed", notifier=result.name, why=result.detail, attempts=result.attempts)
    return result


async def send_all(
    plan: Plan, message: Message, *, client: httpx.AsyncClient | None = None, wait: float | None = None
) -> list[NotifyResult]:
    """`message` to every ``[[notify]]`` entry of `plan`, concurrently; one result each, in plan order.
    `wait`: seconds to wait in all; a notification still unanswered then is abandoned (cancelled,
    reported `abandoned`: the receiver may or may not have got it)."""
    from rotator.registry import UnknownPlugin, notifier_class  # the registry imports notify.base

    entries: list[NotifierSettings] = list(getattr(plan, "notify", []))
    if not entries:
        return []
    notifiers: list[Notifier | NotifyResult] = []
    for s in entries:
        if s.only_failures and message.outcome is Outcome.SUCCESS:
            notifiers.append(NotifyResult(s.label, s.type, NotifyStatus.SKIPPED, detail="only_failures"))
            continue
        try:
            notifiers.append(notifier_class(s.type)(s))
        except UnknownPlugin as exc:
            notifiers.append(NotifyResult(s.label, s.type, NotifyStatus.FAILED, detail=messages.clean(exc)))
        except Exception as exc:  # noqa: BLE001 - a third party's notifier that cannot start
            detail = f"{type(exc).__name__} while starting the notifier (details withheld)"
            notifiers.append(NotifyResult(s.label, s.type, NotifyStatus.FAILED, detail=detail))
    own = client is None
    http = client or http_client(timeout=5.0, trust_env=True)  # httpx's default timeout, as before
    started = time.monotonic()
    tasks = [
        asyncio.ensure_future(deliver(n, message, http) if isinstance(n, Notifier) else _done(n)) for n in notifiers
    ]
    try:
        await asyncio.wait(tasks, timeout=wait)
        out = []
        for n, t in zip(notifiers, tasks, strict=True):
            if t.done():
                out.append(t.result())
                continue
            t.cancel()
            assert isinstance(n, Notifier)
            detail = f"no answer within {wait:.0f}s: abandoned, not retried (the receiver may or may not have got it)"
            log.warning("notification abandoned", notifier=n.name, wait=wait)
            out.append(
                NotifyResult(
                    n.name, n.settings.type, NotifyStatus.ABANDONED, seconds=time.monotonic() - started, detail=detail
                )
            )
        return out
    finally:
        for t in tasks:
            t.cancel()
        if own:
            await http.aclose()


async def _done(result: NotifyResult) -> NotifyResult:
    return result


async def notify_all(
    plan: Plan, report_dict: Mapping[str, Any], *, link: str | None = None, wait: float | None = None
) -> list[NotifyResult]:
    """Tell every ``[[notify]]`` entry how a rotation, resume or sync went.  Never raises.

    `report_dict` is ``Report.as_dict()``; `link` is the page's view of the
    rotation when the service runs.
    """
    try:
        message = messages.from_report(plan.name, report_dict, link=link)
    except Exception as exc:  # noqa: BLE001 - an odd report must not fail the rotation
        log.warning("notifications not sent", why=f"{type(exc).__name__} while building the message")
        return [
            NotifyResult(s.label, s.type, NotifyStatus.FAILED, detail="the report could not be read")
            for s in getattr(plan, "notify", [])
        ]
    return await send_all(plan, message, wait=wait)


async def notify_warning(plan: Plan, text: str, *, link: str | None = None) -> list[NotifyResult]:
    """A warning that is not one rotation's (the key-age reminder) to every ``[[notify]]`` entry."""
    return await send_all(plan, messages.warning(plan.name, text, link=link))
