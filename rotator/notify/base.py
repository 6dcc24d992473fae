"""What a notifier implements, and what it is given.

A notifier is a class registered under the entry-point group
``rotator.notifiers`` (the built-ins ``slack``, ``teams`` and ``webhook`` too).
It declares a pydantic `Settings` model, so ``rotator check`` validates a
plan's ``[[notify]]`` entries with no network, and implements `send`: one
attempt at delivering one `Message`.  Most notifiers are one POST to a URL that
is itself a credential: `WebhookNotifier` does that part, they build the request.  Retries, backoff, timing and making sure nothing
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

from rotator.plugin import PluginError, SecretRef
from rotator.secret import Secret


class Outcome(StrEnum):
    """How a notification reads at a glance (its colour, its emoji)."""

    SUCCESS = "success"
    FAILURE = "failure"
    WARNING = "warning"


class NotifierSettings(BaseModel):
    """Keys every ``[[notify]]`` entry has."""

    model_config = ConfigDict(extra="forbid")
    type: str
    name: str = Field(default="", max_length=200, pattern=r"^[A-Za-z0-9_.:-]*$", description="default: the type")
    only_failures: bool = Field(default=False, description="stay quiet when everything went well")
    timeout: float = Field(default=10.0, gt=0, le=120, description="seconds per attempt")
    retries: int = Field(default=3, ge=0, le=10, description="attempts after the first")
    backoff: float = Field(default=1.0, ge=0, le=60, description="seconds before the first retry; doubles, jittered")

    @property
    def label(self) -> str:
        return self.name or self.type


class WebhookUrlSettings(NotifierSettings):
    """A notifier that POSTs to a URL.  The URL is a credential (anyone holding a
    Slack or Teams webhook URL can post to the channel): by env var or file, never inline."""

    url: SecretRef = Field(description="the incoming webhook's URL, by env or file")


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
    """Sends `Message`s to one destination.

    `send` makes one attempt; `rotator.notify.send.deliver` retries it (when it
    raises a retryable `SendError`), times it and catches whatever else it raises.
    """

    Settings: ClassVar[type[NotifierSettings]] = NotifierSettings

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.name: str = settings.label

    @abstractmethod
    async def send(self, message: Message, http: httpx.AsyncClient) -> str:
        """Deliver `message` once; return a short detail ("HTTP 200"), raise `SendError` if it did not go through."""


class WebhookNotifier(Notifier):
    """A notifier that is one POST to a URL from the plan: implement `request`."""

    Settings: ClassVar[type[NotifierSettings]] = WebhookUrlSettings
    settings: WebhookUrlSettings

    @abstractmethod
    def request(self, message: Message, url: Secret) -> httpx.Request:
        """The HTTP request that delivers `message` to `url` (built, not sent)."""

    async def send(self, message: Message, http: httpx.AsyncClient) -> str:
        try:
            url = self.settings.url.resolve()
        except PluginError as exc:  # the env var or file naming the URL
            raise SendError(f"url: {exc}", retryable=False) from None
        if not url.reveal().lower().startswith(("https://", "http://")):
            raise SendError(f"url: the value of {self.settings.url.describe()} is not an http(s) URL", retryable=False)
        request = self.request(message, url)
        request.extensions["timeout"] = httpx.Timeout(self.settings.timeout).as_dict()
        try:
            response = await http.send(request)
        except httpx.TimeoutException:
            raise SendError(f"timed out after {self.settings.timeout:g}s") from None
        except httpx.ConnectError:
            raise SendError("cannot connect (refused, unreachable or name not resolved)") from None
        except httpx.HTTPError as exc:  # never its text: it may hold the URL
            raise SendError(f"{type(exc).__name__} while sending") from None
        self.accepted(response)
        return f"HTTP {response.status_code}"

    def accepted(self, response: httpx.Response) -> None:
        """Raise `SendError` unless `response` means delivered (default: any 2xx)."""
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (401, 403, 404, 410):
            hint = "the webhook URL is wrong, revoked or deleted: make a new one"
        elif status == 400:
            hint = "the receiver refused the message's shape"
        elif 300 <= status < 400:
            hint = "the webhook URL redirects: use the address it redirects to"
        else:
            hint = "the receiver is failing or rate-limiting"
        raise SendError(f"HTTP {status}: {hint}", retryable=status >= 500 or status in (408, 425, 429))
