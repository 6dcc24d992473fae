"""Slack incoming webhooks (https://api.slack.com/messaging/webhooks).

A JSON POST with ``text`` (the notification's plain form, also what phones and
screen readers show) and Block Kit ``blocks``: a header, the summary, the facts
as fields, the per-target lines, and a button to the page when there is one.
Slack answers ``200 ok``; a deleted webhook answers 404 or 410.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from rotator.notify.base import Message, NotifierSettings, Outcome, WebhookNotifier, WebhookUrlSettings
from rotator.secret import Secret

_EMOJI = {Outcome.SUCCESS: ":white_check_mark:", Outcome.FAILURE: ":rotating_light:", Outcome.WARNING: ":warning:"}
_MAX_TEXT = 2900  # a section's text is at most 3000 characters, a field's 2000


def _escape(text: str) -> str:
    """Slack's three control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackSettings(WebhookUrlSettings):
    type: str = "slack"


class SlackNotifier(WebhookNotifier):
    Settings: ClassVar[type[NotifierSettings]] = SlackSettings

    def payload(self, message: Message) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{_EMOJI[message.outcome]} {_escape(message.summary)[:_MAX_TEXT]}"},
            },
        ]
        if message.facts:
            fields = [{"type": "mrkdwn", "text": f"*{f.label}*\n{_escape(f.value)[:1900]}"} for f in message.facts]
            blocks += [{"type": "section", "fields": fields[i : i + 10]} for i in range(0, len(fields), 10)]
        if message.lines:
            text = "\n".join(f"• {_escape(line)}" for line in message.lines)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:_MAX_TEXT]}})
        if message.link:
            button = {"type": "button", "text": {"type": "plain_text", "text": "Open in rotator"}, "url": message.link}
            blocks.append({"type": "actions", "elements": [button]})
        return {"text": message.text(), "blocks": blocks}

    def request(self, message: Message, url: Secret) -> httpx.Request:
        return httpx.Request("POST", url.reveal(), json=self.payload(message))
