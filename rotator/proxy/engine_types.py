"""The proxy's vocabularies and its request/answer records (no I/O)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

REPLAYED_HEADER = "X-Rotator-Replayed"
PROXY_HEADER = "X-Rotator-Proxy"


class ProxyKeyState(enum.StrEnum):
    """What the proxy knows of its key.

    ``live``: in use.  ``suspect``: a request was refused with 401 and one probe
    is asking whether the key itself is dead.  ``dead``: the probe was refused;
    every request is held until a new key arrives.  ``none``: no key yet."""

    NONE = "none"
    LIVE = "live"
    SUSPECT = "suspect"
    DEAD = "dead"


class Bound(enum.StrEnum):
    """Which holding bound a 503 answer hit."""

    DEADLINE = "deadline"
    REQUESTS = "requests"
    BYTES = "bytes"
    BODY = "body"  # the key is dead and the body is too large to hold


class ReplayResult(enum.StrEnum):
    OK = "ok"  # answered other than 401
    REFUSED = "refused"  # refused again: goes back as that 401, marked


class Verdict(enum.StrEnum):
    """A probe's answer about one key."""

    LIVE = "live"
    DEAD = "dead"
    UNKNOWN = "unknown"  # unreachable, 5xx, timeout: the 401s go back unchanged


@dataclass(frozen=True)
class Outgoing:
    """A request as the proxy forwards it: the body whole (buffered) or None (streamed, never held)."""

    method: str
    path: str  # path and query, as the client sent them
    headers: tuple[tuple[str, str], ...]
    body: bytes | None

    @property
    def size(self) -> int:
        return len(self.body) if self.body is not None else 0


@dataclass
class Answer:
    """What goes back to the client."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
