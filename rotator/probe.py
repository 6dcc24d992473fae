"""Probe a candidate key against the API before it goes anywhere.

Three answers, never more: ACCEPTED (write it), REFUSED (a 401/403: wrong key,
write nothing), UNAVAILABLE (the API could not say: write nothing unless the
operator overrides).  The same request with the old key after a reset proves
that it was revoked.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from rotator.plan import ProbeSpec
from rotator.secret import Secret, scrub


class ProbeOutcome(enum.StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    UNAVAILABLE = "unavailable"
    SKIPPED = "skipped"


@dataclass
class ProbeResult:
    outcome: ProbeOutcome
    detail: str
    status: int | None = None
    attempts: int = 0
    seconds: float = 0.0
    cost: float | None = None
    balance: float | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "detail": self.detail,
            "status": self.status,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 4),
            "cost": self.cost,
            "balance": self.balance,
            "warnings": self.warnings,
        }


def _number(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class Prober:
    """Holds a warm connection to the API from arm time, so the probe of the new
    key costs one round trip and no handshake."""

    def __init__(self, spec: ProbeSpec, client: httpx.AsyncClient) -> None:
        self.spec = spec
        self.client = client
        self.warm_status: int | None = None  # the last warm-up's HTTP status; None: no answer

    def _request(self, secret: Secret | None) -> httpx.Request:
        assert self.spec.url
        headers = {}
        for k, v in self.spec.headers.items():
            if "{key}" in v:
                if secret is None:
                    continue
                v = v.replace("{key}", secret.reveal())
            headers[k] = v
        return self.client.build_request(self.spec.method, self.spec.url, headers=headers, timeout=self.spec.timeout)

    async def warm(self) -> str:
        """Open the connection (TLS included) with an unauthenticated request."""
        if not self.spec.enabled:
            return "probe disabled"
        try:
            resp = await self.client.send(self._request(None))
            await resp.aread()
            self.warm_status = resp.status_code
            return f"reachable (HTTP {resp.status_code} without a key)"
        except httpx.HTTPError as exc:
            self.warm_status = None
            return f"not reachable yet: {type(exc).__name__}"

    def readiness(self, detail: str) -> tuple[bool | None, str, list[str]]:
        """What the last `warm` (which said `detail`) means for resetting now: (ok, detail,
        warnings).  An API that answers 5xx, or nothing, cannot verify a new key: a reset
        now means writing it unprobed (or waiting), so it is a warning before the reset."""
        status = self.warm_status
        if not self.spec.enabled:
            return True, detail, []
        if status is None:
            why = detail.removeprefix("not reachable yet: ")
            return None, f"no answer ({why})", ["a new key cannot be verified now; wait before resetting it"]
        if status >= 500:
            return None, f"the API answers HTTP {status}", ["it may be down; a new key cannot be verified now"]
        return True, detail, []

    def _judge(self, resp: httpx.Response) -> ProbeResult:
        spec = self.spec
        status = resp.status_code
        body: Any = None
        try:
            body = resp.json()
        except ValueError:
            body = None
        cost = balance = None
        if isinstance(body, dict) and isinstance(body.get("meta"), dict):
            cost = _number(body["meta"].get("cost"))
            balance = _number(body["meta"].get("balance"))
        if status in spec.refuse_status:
            msg = body.get("message") if isinstance(body, dict) else None
            # An API may echo the key it refused: scrub before cutting, or half a key survives.
            extra = f": {scrub(str(msg))[:120]}" if msg else ""
            return ProbeResult(ProbeOutcome.REFUSED, f"HTTP {status}{extra}", status, cost=cost, balance=balance)
        ok_status = status in spec.accept_status if spec.accept_status else 200 <= status < 300
        if not ok_status:
            return ProbeResult(ProbeOutcome.UNAVAILABLE, f"HTTP {status}", status, cost=cost, balance=balance)
        for k, expected in spec.expect_json.items():
            got = body.get(k) if isinstance(body, dict) else None
            if got != expected:
                return ProbeResult(
                    ProbeOutcome.UNAVAILABLE,
                    f"HTTP {status} but {k}={scrub(str(got))[:40]!r}, expected {expected!r}",
                    status,
                    cost=cost,
                    balance=balance,
                )
        result = ProbeResult(ProbeOutcome.ACCEPTED, f"HTTP {status}", status, cost=cost, balance=balance)
        if cost:
            result.warnings.append(f"the probe cost {cost:g} (balance now {balance if balance is not None else '?'})")
        return result

    async def probe(self, secret: Secret) -> ProbeResult:
        """Try the key; retry only what may pass on a second try (5xx, timeouts)."""
        spec = self.spec
        if not spec.enabled:
            return ProbeResult(ProbeOutcome.SKIPPED, "no probe configured")
        start = time.perf_counter()
        result = ProbeResult(ProbeOutcome.UNAVAILABLE, "not tried")
        for attempt in range(1, spec.retries + 2):
            try:
                resp = await self.client.send(self._request(secret))
                await resp.aread()
                result = self._judge(resp)
            except httpx.TimeoutException:
                result = ProbeResult(ProbeOutcome.UNAVAILABLE, f"timed out after {spec.timeout:g}s")
            except httpx.HTTPError as exc:
                result = ProbeResult(ProbeOutcome.UNAVAILABLE, f"{type(exc).__name__} reaching {spec.url}")
            except UnicodeEncodeError:  # e.g. an old key read from a store: a header carries ASCII only
                result = ProbeResult(ProbeOutcome.UNAVAILABLE, "the key has characters an HTTP header cannot carry")
                result.attempts = attempt
                break
            result.attempts = attempt
            if result.outcome is not ProbeOutcome.UNAVAILABLE or attempt > spec.retries:
                break
            await asyncio.sleep(spec.backoff * attempt)
        result.seconds = time.perf_counter() - start
        return result

    async def old_key_revoked(self, old: Secret) -> ProbeResult:
        """The old key must now be refused: ACCEPTED here means "revoked, as it should be"."""
        r = await self.probe(old)
        if r.outcome is ProbeOutcome.REFUSED:
            return ProbeResult(ProbeOutcome.ACCEPTED, f"refused ({r.detail}): revoked", r.status, r.attempts, r.seconds)
        if r.outcome is ProbeOutcome.ACCEPTED:
            return ProbeResult(
                ProbeOutcome.REFUSED,
                "the OLD key still works: it has not been revoked",
                r.status,
                r.attempts,
                r.seconds,
            )
        return r
