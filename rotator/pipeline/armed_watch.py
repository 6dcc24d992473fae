"""The reset watch of an armed session: the old key probed every [probe] watch_interval while
the session waits for its key, so that the outage's start is known (`pipeline.outage` reads it)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from rotator.logs import get_logger
from rotator.pipeline.session_types import Outcome, Status
from rotator.probe import ProbeOutcome
from rotator.reset_watch import ResetDetected, ResetWatch, WatchOutcome
from rotator.transport import http_client

if TYPE_CHECKING:
    from rotator.pipeline.session_types import Listener
    from rotator.pipeline.state import RotationState

log = get_logger("rotator.session")


class Watched(Protocol):
    """What the watch reads of its session (`pipeline.session.ArmedSession`)."""

    @property
    def id(self) -> str: ...
    @property
    def state(self) -> RotationState: ...
    @property
    def status(self) -> Status: ...
    @property
    def attempts(self) -> int: ...
    @property
    def listener(self) -> Listener: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...


class ArmedWatch:
    """The old key's watch while armed, stopped when a key arrives and restarted after a refusal."""

    def __init__(self, session: Watched) -> None:
        self.session = session
        self.watch: ResetWatch | None = None  # the old key, probed every [probe] watch_interval while armed
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        """Probe the old key every watch_interval while armed (pipeline.outage reads what it saw)."""
        state = self.session.state
        if state.prober is None or state.old_secret is None or state.reset is not None:
            return
        if self.watch is not None and not self.watch.free:
            return  # the probe costs money: watched once, not again
        if self._client is None:
            # Its own connection: a watch probe in flight never holds the one the new key's probe uses.
            self._client = http_client(timeout=state.plan.probe.timeout, trust_env=True)
        watch = ResetWatch(state.prober, state.old_secret, client=self._client)
        if not watch.enabled:
            return
        self.watch = watch
        self.session.spawn(self._watching(watch))

    async def _watching(self, watch: ResetWatch) -> None:
        s = self.session
        result = await watch.run()
        if result.outcome is WatchOutcome.RESET and result.reset is not None and s.status is Status.ARMED:
            reset = result.reset
            before = s.state.watch  # an earlier watch (before a refused paste) saw the key pass last
            if reset.after_perf is None and before is not None and before.last_ok_perf is not None:
                reset = dataclasses.replace(reset, after_wall=before.last_ok_wall, after_perf=before.last_ok_perf)
            s.state.reset = reset
            log.info("reset detected", rotation=s.id, status=reset.status)
            s.listener.reset_detected(reset)
        elif result.outcome is WatchOutcome.COSTS and result.warning:
            s.listener.warning(result.warning)

    def key_arrives(self) -> None:
        """The window starts (again) now; the watch stops and, unless it saw the reset, looks
        at the old key once more beside the new key's probe (its own connection)."""
        state = self.session.state
        state.key_arrived(restart=True)
        watch = self.watch
        if watch is None:
            return
        watch.stop()
        state.watch = watch.result
        if state.reset is None and watch.free:
            state.old_key_look = self.session.spawn(watch.look())

    def after_refusal(self, outcome: Outcome, why: str, *, watch_again: bool) -> None:
        """A refused paste: counted and explained; the old key watched again if no reset was seen."""
        s = self.session
        state = s.state
        state.refused_keys.append(
            {"at": state.key_received_wall, "outcome": outcome.value, "why": why, "attempt": s.attempts}
        )
        look = state.old_key_look
        state.old_key_look = None
        if state.reset is None and look is not None and look.done() and not look.cancelled():
            if look.result().outcome is ProbeOutcome.REFUSED and state.key_received is not None:
                last = state.watch
                state.reset = ResetDetected(
                    state.key_received_wall or time.time(),
                    state.key_received,
                    last.last_ok_wall if last else None,
                    last.last_ok_perf if last else None,
                    look.result().status,
                    look.result().detail,
                )
                s.listener.reset_detected(state.reset)
        if watch_again:
            self.start()

    async def release(self) -> None:
        """Stop the watch and close its connection (idempotent)."""
        if self.watch is not None:
            self.watch.stop()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
