"""What a notifier implements, and what it is given.

A notifier is a class registered under the entry-point group
``rotator.notifiers`` (the built-ins ``slack``, ``teams`` and ``webhook`` too).
It declares a pydantic `Settings` model, so ``rotator check`` validates a
plan's ``[[notify]]`` entries with no network, and implements `send`: one HTTP
request for one `Message`.  Retries, backoff, timing and making sure nothing
it raises reaches the rotation are `rotator.notify.send`'s job, not each
notifier's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field

from rotator.plugin import SecretRef
from rotator.secret import Secret


class Outcome(StrEnum):
    """How a notification reads at a glance (its colour, its emoji)."""

    SUCCESS = "success"
    FAILURE = "failure"
    WARNING = "warning"


class NotifierSettings(BaseModel):
    """Keys every ``[[notify]]`` entry has.

    The URL is a credential (anyone holding a Slack or Teams webhook URL can
    post to the channel), so it is named by env var or file, never inline.
    """

    model_config = ConfigDict(extra="forbid")
    type: str
    name: str = Field(default="", max_length=200, pattern=r"^[A-Za-z0-9_.:-]*$", description="default: the type")
    url: SecretRef = Field(description="the incoming webhook's URL, by env or file")
    only_failures: bool = Field(default=False, description="stay quiet when everything went well")
    timeout: float = Field(default=10.0, gt=0, le=120, description="seconds per attempt")
    retries: int = Field(default=3, ge=0, le=10, description="attempts after the first")
    backoff: float = Field(default=1.0, ge=0, le=60, description="seconds before the first retry; doubles, jittered")

    @property
    def label(self) -> str:
        return self.name or self.type


@dataclass(frozen=True)
class Fact:
    label: str
    value: str


@dataclass(frozen=True)
class Message:
    """One notification, already scrubbed: every notifier renders the same content.

    `data` is the machine-readable form (the generic webhook's body).
    """

    title: str
    outcome: Outcome
    summary: str
    facts: tuple[Fact, ...] = ()
    lines: tuple[str, ...] = ()  # per-target problems, warnings
    link: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """Plain text: title, summary, facts, lines, link."""
        out = [self.title, self.summary]
        out += [f"{f.label}: {f.value}" for f in self.facts]
        out += [f"- {line}" for line in self.lines]
        if self.link:
            out.append(self.link)
        return "\n".join(out)


class SendError(Exception):
    """A notification that did not go through; the message names no URL.

    `retryable`: a timeout, a refused connection, a 5xx or a 429 may pass; a
    404 (wrong or deleted webhook) or a 400 will not.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Notifier(ABC):
    """Sends `Message`s to one destination."""

    Settings: ClassVar[type[NotifierSettings]] = NotifierSettings

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.name: str = settings.label

    @abstractmethod
    def request(self, message: Message, url: Secret) -> httpx.Request:
        """The HTTP request that delivers `message` to `url` (built, not sent)."""

    def accepted(self, response: httpx.Response) -> None:
        """Raise `SendError` unless `response` means delivered (default: any 2xx)."""
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (401, 403, 404, 410):
            hint = "the webhook URL is wrong, revoked or deleted: make a new one"
        elif status == 400:
            hint = "the receiver refused the message's shape"
        else:
            hint = "the receiver is failing or rate-limiting"
        raise SendError(f"HTTP {status}: {hint}", retryable=status >= 500 or status in (408, 425, 429))
