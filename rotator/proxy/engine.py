"""Hold and replay: the rules that make a single-app reset cost consumers delay, not failed calls.

* A request refused with 401 is held, and one probe (shared by every 401 of the
  same key) asks whether the key itself is dead.  Live, or no answer: each held
  401 goes back unchanged (an endpoint this app lacks, a passing fault).
* Only once the probe is refused is the key dead; then new requests are held
  before they are sent (they would be refused too).
* When a new key arrives (`set_key`), every held request is sent once more with
  it, its body byte-identical.  A replay refused again goes back as that 401,
  marked ``X-Rotator-Replayed: 1``.
* Holding is bounded in requests, buffered bytes and time: a request past a
  bound gets 503 with Retry-After, never a 401 a client would take for a bad key.
  A body larger than `max_body` was never buffered, so it is never held.
* A key switch is one assignment on the event loop: a request takes the key when
  it is sent, so requests in flight finish on the old key.

Replaying once is safe for any method because a 401 means the API did not act on
the request: authentication comes before any handler runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rotator.proxy.engine_types import (
    PROXY_HEADER,
    REPLAYED_HEADER,
    Answer,
    Bound,
    Outgoing,
    ProxyKeyState,
    ReplayResult,
    Verdict,
)
from rotator.proxy.metrics import ProxyMetrics
from rotator.proxy.upstream import Upstream, UpstreamError
from rotator.secret import Secret

Probe = Callable[[Secret], Awaitable[Verdict]]
Refresh = Callable[[], Awaitable[Secret | None]]


@dataclass(frozen=True)
class Bounds:
    deadline: float = 30.0
    max_held: int = 10_000
    max_held_bytes: int = 64 << 20
    retry_after: int = 5


class Engine:
    """Forwards requests with the active key; holds and replays across a key's death.

    `probe(key)` answers whether a key is live (one request to the plan's probe
    endpoint).  `refresh()`, if given, is asked every `refresh_every` seconds
    while the key is dead (re-reading the primary); the channel's `set_key` is
    the other way in, and the one `rotator serve` will call in-process."""

    def __init__(
        self,
        upstream: Upstream,
        metrics: ProxyMetrics,
        probe: Probe,
        bounds: Bounds | None = None,
        *,
        refresh: Refresh | None = None,
        refresh_every: float = 0.0,
        log: Any = None,
    ) -> None:
        self.upstream = upstream
        self.metrics = metrics
        self.bounds = bounds or Bounds()
        self._probe_key = probe
        self._refresh = refresh
        self._refresh_every = refresh_every
        self._log = log
        self._key: Secret | None = None
        self._gen = 0
        self._state = ProxyKeyState.NONE
        self._switched: asyncio.Future[None] | None = None
        self._probe: tuple[int, asyncio.Task[Verdict]] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._held = 0
        self._held_bytes = 0

    # -- the key ------------------------------------------------------------------
    @property
    def state(self) -> ProxyKeyState:
        return self._state

    @property
    def fingerprint(self) -> str | None:
        return None if self._key is None else self._key.fingerprint

    @property
    def held(self) -> int:
        return self._held

    def set_key(self, secret: Secret) -> str:
        """Make `secret` the active key at once and wake every held request; its fingerprint.

        The same key again changes nothing (a dead key stays dead)."""
        if self._key is not None and secret == self._key:
            return secret.fingerprint
        self._key = secret
        self._gen += 1
        self._set_state(ProxyKeyState.LIVE)
        self.metrics.key_switches.inc()
        if self._switched is not None and not self._switched.done():
            self._switched.set_result(None)
        self._switched = None
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        if self._log is not None:
            self._log.info("proxy key switched", fingerprint=secret.fingerprint, held=self._held)
        return secret.fingerprint

    def _set_state(self, state: ProxyKeyState) -> None:
        self._state = state
        self.metrics.set_state(state)

    def _switch_future(self) -> asyncio.Future[None]:
        if self._switched is None:
            self._switched = asyncio.get_running_loop().create_future()
        return self._switched

    # -- a request ------------------------------------------------------------------
    async def handle(self, req: Outgoing, stream: Any = None) -> Answer:
        """The answer for one request (never raises for an upstream fault: 502)."""
        self.metrics.requests.inc()
        if self._state in (ProxyKeyState.DEAD, ProxyKeyState.NONE):
            if req.body is None:
                return self._unavailable(Bound.BODY)
            return await self._hold(req, None, self._gen)
        gen, key = self._gen, self._key
        assert key is not None
        answer = await self._send(req, key, stream)
        if answer.status != 401:
            return answer
        if req.body is None:  # not buffered: cannot be sent again
            self._suspect(gen, key)
            return answer
        if self._gen != gen:  # the key changed while this was in flight: replay at once
            return await self._replay(req)
        return await self._hold(req, answer, gen)

    async def _send(self, req: Outgoing, key: Secret, stream: Any = None) -> Answer:
        try:
            return await self.upstream.send(req, key, stream)
        except UpstreamError as exc:
            return _error(502, str(exc), "upstream")

    async def _replay(self, req: Outgoing) -> Answer:
        key = self._key
        assert key is not None
        answer = await self._send(req, key)
        if answer.status == 401:
            self.metrics.replays.labels(ReplayResult.REFUSED.value).inc()
            answer.headers.append((REPLAYED_HEADER, "1"))
        else:
            self.metrics.replays.labels(ReplayResult.OK.value).inc()
        return answer

    async def _hold(self, req: Outgoing, refused: Answer | None, gen: int) -> Answer:
        """Hold `req` until the key after generation `gen` arrives (then replay), or a verdict or bound."""
        b = self.bounds
        if self._held >= b.max_held:
            return self._unavailable(Bound.REQUESTS)
        if self._held_bytes + req.size > b.max_held_bytes:
            return self._unavailable(Bound.BYTES)
        self._held += 1
        self._held_bytes += req.size
        self.metrics.held.inc()
        self.metrics.held_now.set(self._held)
        self.metrics.held_bytes.set(self._held_bytes)
        started = time.monotonic()
        try:
            outcome = await self._wait(gen, refused, started + b.deadline)
        finally:
            self._held -= 1
            self._held_bytes -= req.size
            self.metrics.held_now.set(self._held)
            self.metrics.held_bytes.set(self._held_bytes)
            self.metrics.hold_seconds.observe(time.monotonic() - started)
        if outcome is not None:
            return outcome
        return await self._replay(req)

    async def _wait(self, gen: int, refused: Answer | None, deadline: float) -> Answer | None:
        """None once a newer key is active; `refused` if the probe finds the key live; a 503 at the deadline."""
        probe = self._suspect(gen, self._key) if refused is not None else None
        while self._gen == gen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._unavailable(Bound.DEADLINE)
            waits: set[asyncio.Future[Any]] = {self._switch_future()}
            if probe is not None and not probe.done():
                waits.add(probe)
            await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if probe is not None and probe.done() and self._gen == gen:
                if probe.result() is not Verdict.DEAD:
                    return refused
                probe = None  # dead: wait for the key
        return None

    # -- is the key dead? -------------------------------------------------------------
    def _suspect(self, gen: int, key: Secret | None) -> asyncio.Task[Verdict] | None:
        """The probe of generation `gen`'s key (started if none runs); None if the key changed since."""
        if gen != self._gen or key is None:
            return None
        if self._probe is not None and self._probe[0] == gen and not self._probe[1].done():
            return self._probe[1]
        if self._state is ProxyKeyState.DEAD:
            done: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
            done.set_result(Verdict.DEAD)
            return done  # type: ignore[return-value]
        self._set_state(ProxyKeyState.SUSPECT)
        task = asyncio.ensure_future(self._run_probe(gen, key))
        self._probe = (gen, task)
        return task

    async def _run_probe(self, gen: int, key: Secret) -> Verdict:
        try:
            verdict = await self._probe_key(key)
        except Exception:  # noqa: BLE001 - a probe that fails says nothing about the key
            verdict = Verdict.UNKNOWN
        self.metrics.probes.labels(verdict.value).inc()
        if gen == self._gen:
            if verdict is Verdict.DEAD:
                self._set_state(ProxyKeyState.DEAD)
                if self._log is not None:
                    self._log.warning("proxy key refused by the probe: holding requests", fingerprint=key.fingerprint)
                self._start_refresher()
            else:
                self._set_state(ProxyKeyState.LIVE)
        return verdict

    def _start_refresher(self) -> None:
        if self._refresh is None or self._refresh_every <= 0 or self._refresher is not None:
            return
        self._refresher = asyncio.ensure_future(self._refresh_loop(self._gen))

    async def _refresh_loop(self, gen: int) -> None:
        while self._gen == gen:
            assert self._refresh is not None
            with contextlib.suppress(Exception):
                found = await self._refresh()
                if found is not None and self._gen == gen and found != self._key:
                    self._refresher = None
                    self.set_key(found)
                    return
            await asyncio.sleep(self._refresh_every)

    # -- answers the proxy makes itself -------------------------------------------------
    def _unavailable(self, bound: Bound) -> Answer:
        self.metrics.unavailable.labels(bound.value).inc()
        why = {
            Bound.DEADLINE: "the API key was reset and no new key arrived in time",
            Bound.REQUESTS: "too many requests are waiting for the new API key",
            Bound.BYTES: "too many bytes are waiting for the new API key",
            Bound.BODY: "the API key was reset; this body is too large to hold until the new key arrives",
        }[bound]
        answer = _error(503, why, f"held-{bound.value}")
        answer.headers.append(("Retry-After", str(self.bounds.retry_after)))
        return answer

    async def aclose(self) -> None:
        for task in (self._refresher, self._probe[1] if self._probe else None):
            if task is not None:
                task.cancel()


def _error(status: int, message: str, kind: str) -> Answer:
    import json

    body = json.dumps({"status": "error", "message": message}).encode()
    return Answer(status, [("Content-Type", "application/json"), (PROXY_HEADER, kind)], body)
