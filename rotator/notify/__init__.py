"""Notifications after a rotation, resume or sync: ``[[notify]]`` entries in a plan.

Built in: ``slack`` and ``teams`` (incoming webhooks) and ``webhook`` (signed
JSON for a receiver of your own), registered under the entry-point group
``rotator.notifiers`` exactly as a third party's notifier would be.  What is
sent is built once (`message.from_report`), scrubbed, and rendered by each
notifier; `send.notify_all` delivers them all at once with retries and never
fails the rotation.

`send` (and with it structlog and the retry machinery) is imported on first use
(PEP 562): `rotator check` imports this package for `NotifierSettings` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rotator.notify.base import (
    Fact,
    Message,
    Notifier,
    NotifierSettings,
    Outcome,
    SendError,
    WebhookNotifier,
    WebhookUrlSettings,
)

if TYPE_CHECKING:
    from rotator.notify.send import NotifyResult, NotifyStatus, notify_all, notify_warning

_FROM_SEND = {"NotifyResult", "NotifyStatus", "notify_all", "notify_warning"}


def __getattr__(name: str) -> Any:
    if name not in _FROM_SEND:
        raise AttributeError(f"module 'rotator.notify' has no attribute {name!r}")
    from rotator.notify import send

    value = getattr(send, name)
    globals()[name] = value
    return value


__all__ = [
    "Fact",
    "Message",
    "Notifier",
    "NotifierSettings",
    "NotifyResult",
    "NotifyStatus",
    "Outcome",
    "SendError",
    "WebhookNotifier",
    "WebhookUrlSettings",
    "notify_all",
    "notify_warning",
]
