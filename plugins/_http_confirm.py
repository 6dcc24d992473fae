"""Shared by the webhook and signal consumers: URL checks and fingerprint polling.

The confirmation window (key written → every consumer reports its fingerprint)
is rotator's headline number, so polling is tight (50 ms) and each request is
bounded by the time left, never by a fixed timeout that could overrun the deadline.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
from collections.abc import Callable

import httpx

from rotator.plugin import Confirmation
from rotator.transport import Send

POLL_INTERVAL = 0.05
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")


def check_http_url(value: str) -> str:
    """A pydantic validator body: an absolute http(s) URL with a host."""
    if not re.match(r"^https?://", value, re.IGNORECASE):
        raise ValueError("must start with http:// or https://")
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if not url.host:
        raise ValueError("has no host")
    return value


@functools.lru_cache(maxsize=4096)
def display_url(value: str) -> str:
    """The URL for messages: no user info, query or fragment (they may carry tokens).

    Cached: parsing with httpx.URL costs ~0.1-0.2 ms, and every signal and confirm
    asked again on the event loop (0.4 s of a 1,000-target fan-out); arm's
    preflights fill the cache before the key."""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError):
        return "<invalid url>"
    return str(url.copy_with(username=None, password=None, query=None, fragment=None))


def describe_error(exc: BaseException) -> str:
    """One line for an httpx failure, e.g. 'connection refused' or 'timed out'."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:  # the OS's reason is deep in the chain
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host ({cause.strerror})"
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def as_fingerprint(value: object) -> str | None:
    """`value` if it looks like a fingerprint; anything else is not echoed anywhere
    (a confused consumer might report the key itself)."""
    return value if isinstance(value, str) and _FINGERPRINT.match(value) else None


async def poll_fingerprint(
    send: Send,
    url: str,
    fingerprint: str,
    deadline: float,
    *,
    request_timeout: float,
    headers: Callable[[], dict[str, str]] | None = None,
    interval: float = POLL_INTERVAL,
) -> Confirmation:
    """GET `url` until its JSON ``{"fingerprint": ...}`` equals `fingerprint` or loop
    time passes `deadline`.  Tries at least once; errors along the way are kept
    for the detail, not raised, since a reloading consumer may briefly refuse."""
    loop = asyncio.get_running_loop()
    shown = display_url(url)
    last_reported: str | None = None
    last_problem = "no answer"
    attempts = 0
    while True:
        remaining = deadline - loop.time()
        if attempts and remaining <= 0:
            break
        attempts += 1
        try:
            response = await send(
                "GET",
                url,
                headers=headers() if headers else None,
                timeout=max(0.05, min(request_timeout, remaining)),
            )
            if 200 <= response.status_code < 300:
                body = response.json()
                raw = body.get("fingerprint") if isinstance(body, dict) else None
                reported = as_fingerprint(raw)
                if reported == fingerprint:
                    return Confirmation(True, reported, f"{shown} reports {reported}")
                if reported is not None:
                    last_reported = reported
                    last_problem = f"still reports {reported}"
                else:
                    last_problem = (
                        "answered without a fingerprint" if raw is None else "answered a malformed fingerprint"
                    )
            else:
                last_problem = f"answered HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last_problem = describe_error(exc)
        except ValueError:
            last_problem = "answered with something that is not JSON"
        sleep_for = min(interval, deadline - loop.time())
        if sleep_for > 0:
            await asyncio.sleep(sleep_for)
    return Confirmation(
        False,
        last_reported,
        f"{shown} did not report {fingerprint} before the deadline ({attempts} polls; last: {last_problem})",
    )
