"""Notifications after a rotation, resume or sync: ``[[notify]]`` entries in a plan.

Built in: ``slack`` and ``teams`` (incoming webhooks) and ``webhook`` (signed
JSON for a receiver of your own), registered under the entry-point group
``rotator.notifiers`` exactly as a third party's notifier would be.  What is
sent is built once (`message.from_report`), scrubbed, and rendered by each
notifier; `send.notify_all` delivers them all at once with retries and never
fails the rotation.
"""

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
from rotator.notify.send import NotifyResult, NotifyStatus, notify_all, notify_warning

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
