"""The demo consumer's caller: ``GET {api}/v2/decisioning/models`` every `interval` seconds
on the key the service runs on now, over one keep-alive connection, and what those calls saw.

A failed call is counted by status, and the newest `FAILURES_KEPT` are kept with the key
they carried; the time of the first failure and of the first success after it give the
outage this service saw.  The counters are guarded by the service's lock.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult

from rotator.consumer import HoldTimeout, RotatingKey
from rotator.secret import Secret

FAILURES_KEPT = 50  # failed calls kept in /stats' `failures` (the newest)


class Caller:
    """The caller thread and its counters (read and written under `lock`, the service's)."""

    def __init__(
        self,
        api: SplitResult,
        path: str,
        *,
        interval: float,
        timeout: float,
        lock: threading.Lock,
        key: Callable[[], Secret],
        rotating: RotatingKey | None,
    ) -> None:
        self._api = api
        self._path = path
        self.interval = interval
        self.timeout = timeout
        self.lock = lock
        self._key = key  # the key the service runs on now (called under `lock`)
        self._rotating = rotating
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.calls = 0
        self.ok = 0
        self.failed = 0
        self.failed_by_status: dict[str, int] = {}
        self.last_error: int | str | None = None
        self.last_error_at: float | None = None
        self.last_ok_at: float | None = None
        self.in_outage = False
        self.outages = 0
        self.failures_since_reset = 0
        self.first_failure_at: float | None = None
        self.recovered_at: float | None = None
        self.outage_seconds: float | None = None
        self._outage_started = 0.0
        # The consumer's own record of each failed call (the last FAILURES_KEPT): when it started and
        # ended, what it got, the fingerprint of the key it carried, and whether the key had been
        # reloaded while it was in flight (`stale`: it began on a key the consumer had since replaced).
        self.failures: list[dict[str, Any]] = []
        self.failed_stale = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._call_loop, name="consumer-caller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 1)

    def _connect(self) -> http.client.HTTPConnection:
        host = self._api.hostname or "127.0.0.1"
        if self._api.scheme == "https":
            return http.client.HTTPSConnection(host, self._api.port, timeout=self.timeout)
        return http.client.HTTPConnection(host, self._api.port, timeout=self.timeout)

    def _held_call_loop(self, rotating: RotatingKey) -> None:
        import httpx

        from rotator.consumer_http import HoldAndRetryAuth

        base = f"{self._api.scheme}://{self._api.netloc}"
        with httpx.Client(base_url=base, auth=HoldAndRetryAuth(rotating), timeout=self.timeout) as client:
            while not self._stop.is_set():
                status: int | None = None
                error: str | None = None
                try:
                    status = client.get(self._path, headers={"Accept": "application/json"}).status_code
                except HoldTimeout:
                    status = 401  # held `hold` seconds, no new key came: a failed call
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                self._record(status, error)
                self._stop.wait(self.interval)

    def _call_loop(self) -> None:
        if self._rotating is not None:
            self._held_call_loop(self._rotating)
            return
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            with self.lock:
                secret = self._key()
            began = time.time()
            status: int | None = None
            error: str | None = None
            for attempt in range(2):  # a reused keep-alive connection may have gone stale: retry once
                reused = conn is not None
                try:
                    if conn is None:
                        conn = self._connect()
                    conn.request(
                        "GET",
                        self._path,
                        headers={"Authorization": f"Bearer {secret.reveal()}", "Accept": "application/json"},
                    )
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    if response.will_close:
                        conn.close()
                        conn = None
                    break
                except (OSError, http.client.HTTPException) as exc:
                    error = type(exc).__name__
                    if conn is not None:
                        conn.close()
                    conn = None
                    if not reused or attempt:
                        break
            self._record(status, error, secret.fingerprint, began)
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def _record(
        self, status: int | None, error: str | None, key_fp: str | None = None, began: float | None = None
    ) -> None:
        now, mono = time.time(), time.monotonic()
        with self.lock:
            self.calls += 1
            if status == 200:
                self.ok += 1
                self.last_ok_at = now
                if self.in_outage:
                    self.in_outage = False
                    self.recovered_at = now
                    self.outage_seconds = mono - self._outage_started
                return
            self.failed += 1
            what: int | str = status if status is not None else (error or "error")
            self.failed_by_status[str(what)] = self.failed_by_status.get(str(what), 0) + 1
            current = self._key().fingerprint
            stale = key_fp is not None and key_fp != current
            self.failed_stale += stale
            self.failures.append(
                {"began": began, "at": now, "status": what, "key": key_fp, "current": current, "stale": stale}
            )
            del self.failures[:-FAILURES_KEPT]
            self.last_error, self.last_error_at = what, now
            if not self.in_outage:
                self.in_outage = True
                self.outages += 1
                self.failures_since_reset = 0
                self.first_failure_at = now
                self.recovered_at = None
                self.outage_seconds = None
                self._outage_started = mono
            self.failures_since_reset += 1

    def as_dict(self) -> dict[str, Any]:
        """The calls' part of /stats (the caller holds `lock`)."""
        ongoing = time.monotonic() - self._outage_started if self.in_outage else None
        return {
            "calls": self.calls,
            "ok": self.ok,
            "failed": self.failed,
            "failed_by_status": dict(self.failed_by_status),
            "failed_stale": self.failed_stale,
            "failures": [dict(f) for f in self.failures],
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_ok_at": self.last_ok_at,
            "in_outage": self.in_outage,
            "outages": self.outages,
            "failures_since_reset": self.failures_since_reset,
            "first_failure_at": self.first_failure_at,
            "recovered_at": self.recovered_at,
            "outage_seconds": self.outage_seconds if ongoing is None else ongoing,
        }

    def hold_stats(self) -> dict[str, Any] | None:
        """What the hold-and-retry helper did (None without --hold): calls held, the longest hold, retries, timeouts."""
        if self._rotating is None:
            return None
        s = self._rotating.stats()
        return {
            "held": s.held,
            "longest_hold": round(s.longest_hold, 4),
            "total_hold": round(s.total_hold, 4),
            "retries": s.retries,
            "timeouts": s.timeouts,
        }
