"""A generic signed JSON webhook, for a receiver of your own (a pager, a ticket, a bot).

The body is the message's data (``schema``, ``event``, ``plan``, ``rotation_id``,
``outcome``, ``state``, ``exit_code``, ``message``, ``operator``, ``reason``, the
fingerprints, ``window_seconds``, ``outage_seconds``, ``targets``, ``link``), signed
exactly like the ``webhook`` consumer's reload notice: HMAC-SHA256 over
``"{timestamp}." + body`` in ``X-Rotator-Signature: v1=<hex>``, the time in
``X-Rotator-Timestamp``.  A receiver checks it with
``rotator.consumer.verify_webhook(key, headers, body)``, which also refuses replays.
"""

from __future__ import annotations

import json
import time
from typing import ClassVar

import httpx
from pydantic import Field

from rotator.consumer import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from rotator.notify.base import Message, NotifierSettings, SendError, WebhookNotifier, WebhookUrlSettings
from rotator.plugin import PluginError, SecretRef
from rotator.secret import Secret


class WebhookSettings(WebhookUrlSettings):
    type: str = "webhook"
    hmac_key: SecretRef = Field(description="shared signing key, by env or file")


class SignedWebhookNotifier(WebhookNotifier):
    Settings: ClassVar[type[NotifierSettings]] = WebhookSettings
    settings: WebhookSettings

    def request(self, message: Message, url: Secret) -> httpx.Request:
        try:
            key = self.settings.hmac_key.resolve()
        except PluginError as exc:
            raise SendError(f"hmac_key: {exc}", retryable=False) from None
        body = json.dumps(message.data, separators=(",", ":"), ensure_ascii=False).encode()
        ts = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(key.reveal().encode(), ts, body),
        }
        return httpx.Request("POST", url.reveal(), content=body, headers=headers)
