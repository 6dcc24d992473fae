"""Helpers for a Python service that consumes a rotated secret.

Import this in a consumer to compute the fingerprint rotator reports, to
verify that a reload webhook really comes from rotator, and to ride out the
gap between a key reset and the reload (`RotatingKey`; the httpx and requests
adapters over it are in `rotator.consumer_http`)::

    from rotator.consumer import verify_webhook, InvalidSignature, fingerprint

The signature is HMAC-SHA256 over ``f"{timestamp}.".encode() + body`` with the
shared webhook key, sent as ``X-Rotator-Signature: v1=<hex>`` beside
``X-Rotator-Timestamp: <unix seconds>``.  A timestamp tolerance stops replays.
Only the standard library is used and nothing else of rotator is imported,
so the file can be copied into a service as it is (a test runs the copy with
site-packages off, and one checks the prefix below agrees with `rotator.secret`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

# The same as rotator.secret.FINGERPRINT_PREFIX (a test holds them equal); not imported
# from there so this file needs nothing but the standard library.
FINGERPRINT_PREFIX = "rotator-fp-v1:"

SIGNATURE_HEADER = "X-Rotator-Signature"
TIMESTAMP_HEADER = "X-Rotator-Timestamp"
DEFAULT_TOLERANCE = 300


class InvalidSignature(Exception):
    """The webhook is not from rotator, was altered, or is a replay."""


def fingerprint(key: str) -> str:
    """The fingerprint rotator reports for `key` (first 16 hex of SHA-256)."""
    return hashlib.sha256((FINGERPRINT_PREFIX + key).encode()).hexdigest()[:16]


def sign(hmac_key: bytes, timestamp: int, body: bytes) -> str:
    """The value of the signature header for `body` sent at `timestamp`."""
    mac = hmac.new(hmac_key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def verify_webhook(
    hmac_key: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check a webhook's signature and freshness; return its timestamp.

    Raises InvalidSignature when the signature is missing or wrong (compared in
    constant time) or the timestamp is further than `tolerance` seconds from now.
    """
    ts_text = _header(headers, TIMESTAMP_HEADER)
    sig = _header(headers, SIGNATURE_HEADER)
    if not ts_text or not sig:
        raise InvalidSignature("missing signature or timestamp header")
    current = time.time() if now is None else now
    try:
        ts = int(ts_text)
        skew = abs(current - ts)
    except (ValueError, OverflowError):  # not a number, or one too large for a time
        raise InvalidSignature("timestamp is not a Unix time") from None
    if skew > tolerance:
        raise InvalidSignature("timestamp outside tolerance (replay or clock skew)")
    expected = sign(hmac_key, ts, body)
    if not hmac.compare_digest(expected.encode(), sig.strip().encode()):
        raise InvalidSignature("signature does not match")
    return ts


# --- hold and retry: the key a consumer calls the API with, across a reset ---------------


class KeySourceError(Exception):
    """The key could not be read from its source (the message names the source, never a value)."""


class HoldTimeout(Exception):
    """The API refused the key and no new key appeared within the hold.

    Carries the refused status, the seconds waited and the refused key's
    fingerprint; never the key.  The adapters attach the refused response as
    ``response`` (None in the core).
    """

    def __init__(self, status: int, waited: float, refused_fingerprint: str, source: str) -> None:
        self.status = status
        self.waited = waited
        self.refused_fingerprint = refused_fingerprint
        self.source = source
        self.response: object | None = None
        super().__init__(
            f"the API refused key {refused_fingerprint} with {status} and {source} held no new key"
            f" after {waited:.1f} s; reload the consumer's key (or raise hold=)"
        )


_DOUBLE_QUOTE_DECODE = {"\\\\": "\\", "\\'": "'", '\\"': '"', "\\n": "\n", "\\r": "\r", "\\t": "\t"}
_DOUBLE_QUOTE_ESCAPES = re.compile(r"\\[\\'\"nrt]")


def read_env_value(text: str, variable: str) -> str | None:
    """The value of `variable` in dotenv `text` (the last binding wins), or None.

    Reads what rotator's env-file backend writes, with python-dotenv's rules for
    one-line values: ``export`` prefixes, ``'literal'`` (``\\\\`` and ``\\'``
    decoded), ``"escaped"``, and bare values ending at a `` #`` comment.
    """
    found: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[7:].lstrip()
        name, sep, value = line.partition("=")
        if not sep or name.strip().strip("'") != variable:
            continue
        value = value.lstrip()
        quoted = re.match(r"'((?:\\'|[^'])*)'" if value[:1] == "'" else r'"((?:\\"|[^"])*)"', value)
        if value[:1] == "'" and quoted:
            found = re.sub(r"\\[\\']", lambda m: m.group(0)[1], quoted.group(1))
        elif value[:1] == '"' and quoted:
            found = _DOUBLE_QUOTE_ESCAPES.sub(lambda m: _DOUBLE_QUOTE_DECODE[m.group(0)], quoted.group(1))
        else:
            found = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
    return found


class EnvFileKey:
    """Read `variable` from the dotenv file at `path`, re-reading only when the file changed.

    The change check is one ``stat`` (inode, mtime, ctime, size): rotator's
    env-file backend replaces the file atomically, so a new key is a new inode.
    About 2 µs a call, cheap enough to poll every 50 ms while a call is held.
    """

    def __init__(self, path: str | os.PathLike[str], variable: str) -> None:
        self.path = os.fspath(path)
        self.variable = variable
        self._stamp: tuple[int, int, int, int] | None = None
        self._value: str | None = None
        self._lock = threading.RLock()  # invalidate() may run in a signal handler that interrupted __call__

    def __repr__(self) -> str:
        return f"EnvFileKey({self.path!r}, {self.variable!r})"

    def __str__(self) -> str:
        return f"{self.variable} in {self.path}"

    def invalidate(self) -> None:
        """Make the next call read the file even if its stat looks unchanged."""
        with self._lock:
            self._stamp = None

    def __call__(self) -> str:
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
            with self._lock:
                if stamp == self._stamp and self._value is not None:
                    return self._value
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            raise KeySourceError(f"cannot read {self.path}: {reason}") from None
        value = read_env_value(text, self.variable)
        if not value:
            raise KeySourceError(f"{self.variable} is not set in {self.path}")
        with self._lock:
            self._stamp, self._value = stamp, value
        return value


@dataclass(frozen=True)
class HoldStats:
    """What the hold did: calls held (refused, then waited for a new key), the
    longest and total wait in seconds, retries sent, holds that timed out, and
    refused calls not retried because their body could not be sent again."""

    held: int = 0
    longest_hold: float = 0.0
    total_hold: float = 0.0
    retries: int = 0
    timeouts: int = 0
    not_replayable: int = 0


class RotatingKey:
    """The key a consumer calls the API with, and the hold-and-retry algorithm.

    After a refusal (401/403) with key K: re-read the source; a key other than K
    is returned at once (retry).  Else wait until the source holds a new key:
    polled every `poll` seconds (an env file is one ``stat``), or woken at once
    by `notify` (call it from a SIGHUP handler or the reload webhook).  After
    `hold` seconds, `HoldTimeout`.  The adapters in `rotator.consumer_http` (httpx,
    requests) send one retry at most; this class is theirs to share.

    `source` is an `EnvFileKey` or any callable returning the key (called at most
    once per `poll` while waiting, and on `notify`).  Thread-safe; the async wait
    never blocks the event loop (though `source` itself is called inline).
    """

    def __init__(self, source: Callable[[], str], *, hold: float = 10.0, poll: float | None = None) -> None:
        if hold < 0:
            raise ValueError("hold must be >= 0 seconds")
        self.source = source
        self.hold = hold
        self.poll = poll if poll is not None else (0.05 if isinstance(source, EnvFileKey) else 0.5)
        self._cond = threading.Condition(threading.RLock())  # RLock: notify() may run in a signal handler
        self._key: str | None = None
        self._read_at = -math.inf
        self._stats = HoldStats()
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    @classmethod
    def from_env_file(cls, path: str | os.PathLike[str], variable: str, *, hold: float = 10.0) -> RotatingKey:
        return cls(EnvFileKey(path, variable), hold=hold)

    def __repr__(self) -> str:
        with self._cond:
            fp = fingerprint(self._key) if self._key is not None else "unread"
        # A callable is named, not repr'd: a partial's or an object's repr could hold a value.
        source = repr(self.source) if isinstance(self.source, EnvFileKey) else self._describe() or "callable"
        return f"RotatingKey(source={source}, key={fp}, hold={self.hold:g})"

    # -- reading ------------------------------------------------------------
    def current(self) -> str:
        """The key to send now (read from the source on first use)."""
        with self._cond:
            if self._key is not None:
                return self._key
        return self._reread(strict=True)

    def _reread(self, *, strict: bool = False) -> str:
        try:
            key = self.source()
        except KeySourceError:
            if strict:
                raise
            key = None  # mid-rewrite by a non-atomic writer: keep the key we have
        except Exception as exc:  # noqa: BLE001 -- a user callable: say which source, not what it raised
            if strict:
                raise KeySourceError(f"the key source {self._describe()} raised {type(exc).__name__}") from None
            key = None
        with self._cond:
            self._read_at = time.monotonic()
            changed = bool(key) and key != self._key
            if key:
                self._key = key
            current = self._key
        if current is None:
            raise KeySourceError(f"the key source {self._describe()} returned no key")
        if changed:
            self._wake_all()  # every held call retries now, not at its next poll
        return current

    def _describe(self) -> str:
        return str(self.source) if isinstance(self.source, EnvFileKey) else getattr(self.source, "__qualname__", "")

    def _poll_due(self) -> bool:
        with self._cond:
            return time.monotonic() - self._read_at >= self.poll

    # -- the reload signal ----------------------------------------------------
    def notify(self) -> None:
        """The key may have changed: re-read now, waking every held call.

        Safe from a signal handler and from any thread or event loop."""
        if isinstance(self.source, EnvFileKey):
            self.source.invalidate()
        with self._cond:
            self._read_at = -math.inf
        self._wake_all()

    def _wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()
            waiters = list(self._async_waiters)
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing waits there any more
                loop.call_soon_threadsafe(_wake, fut)

    # -- after a refusal -------------------------------------------------------
    def after_refusal(self, refused: str, status: int) -> str:
        """The key to retry with after `refused` got `status`; waits up to `hold` (blocking)."""
        key = self._reread()
        if key != refused:
            return self._retrying()
        started = time.monotonic()
        deadline = started + self.hold
        while key == refused:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timed_out(refused, status, started)
            with self._cond:
                if not self._poll_due():
                    self._cond.wait(min(self.poll, remaining))
            key = self._reread() if self._poll_due() else self.current()
        return self._retrying(held=time.monotonic() - started)

    async def after_refusal_async(self, refused: str, status: int) -> str:
        """`after_refusal` for an event loop: the wait is an await, woken by `notify`."""
        key = self._reread()
        if key != refused:
            return self._retrying()
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        deadline = started + self.hold
        while key == refused:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timed_out(refused, status, started)
            fut: asyncio.Future[None] = loop.create_future()
            with self._cond:
                self._async_waiters.add((loop, fut))
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fut, min(self.poll, remaining))
            finally:
                with self._cond:
                    self._async_waiters.discard((loop, fut))
            key = self._reread() if self._poll_due() else self.current()
        return self._retrying(held=time.monotonic() - started)

    def _retrying(self, held: float | None = None) -> str:
        with self._cond:
            s = self._stats
            if held is None:
                self._stats = replace(s, retries=s.retries + 1)
            else:
                self._stats = replace(
                    s,
                    retries=s.retries + 1,
                    held=s.held + 1,
                    longest_hold=max(s.longest_hold, held),
                    total_hold=s.total_hold + held,
                )
            assert self._key is not None
            return self._key

    def _timed_out(self, refused: str, status: int, started: float) -> HoldTimeout:
        waited = time.monotonic() - started
        with self._cond:
            s = self._stats
            self._stats = replace(
                s,
                held=s.held + 1,
                timeouts=s.timeouts + 1,
                longest_hold=max(s.longest_hold, waited),
                total_hold=s.total_hold + waited,
            )
        return HoldTimeout(status, waited, fingerprint(refused), self._describe() or "the key source")

    def count_not_replayable(self) -> None:
        with self._cond:
            self._stats = replace(self._stats, not_replayable=self._stats.not_replayable + 1)

    def stats(self) -> HoldStats:
        """A snapshot of the counters (for a demo report or /metrics)."""
        with self._cond:
            return self._stats


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
