"""Microsoft Teams incoming webhooks: a Workflows "post to a channel when a
webhook request is received" URL, or a classic Office 365 connector URL.

Both take a message carrying an Adaptive Card
(https://learn.microsoft.com/en-us/connectors/teams/#microsoft-teams-webhook):
a title, the summary, the facts as a FactSet, the per-target lines, and an
"Open in rotator" action when there is a link.  Workflows answer 202, the
classic connector 200.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from rotator.notify.base import Message, NotifierSettings, Outcome, WebhookNotifier, WebhookUrlSettings
from rotator.secret import Secret

_COLOR = {Outcome.SUCCESS: "Good", Outcome.FAILURE: "Attention", Outcome.WARNING: "Warning"}


class TeamsSettings(WebhookUrlSettings):
    type: str = "teams"


class TeamsNotifier(WebhookNotifier):
    Settings: ClassVar[type[NotifierSettings]] = TeamsSettings

    def card(self, message: Message) -> dict[str, Any]:
        body: list[dict[str, Any]] = [
            {
                "type": "TextBlock",
                "text": message.title,
                "weight": "Bolder",
                "size": "Medium",
                "color": _COLOR[message.outcome],
                "wrap": True,
            },
            {"type": "TextBlock", "text": message.summary, "wrap": True},
        ]
        if message.facts:
            body.append({"type": "FactSet", "facts": [{"title": f.label, "value": f.value} for f in message.facts]})
        body += [{"type": "TextBlock", "text": f"- {line}", "wrap": True, "spacing": "None"} for line in message.lines]
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": body,
        }
        if message.link:
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in rotator", "url": message.link}]
        return card

    def payload(self, message: Message) -> dict[str, Any]:
        return {
            "type": "message",
            "summary": message.title,
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": self.card(message),
                }
            ],
        }

    def request(self, message: Message, url: Secret) -> httpx.Request:
        return httpx.Request("POST", url.reveal(), json=self.payload(message))
