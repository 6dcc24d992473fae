"""Asking the operator for a reset, from inside a flow: what to reset, why it is safe, and the watch.

A flow names the app and the reason (`ResetAsk`); whoever runs it (the CLI's
prompt or stdin, the service's page or API) supplies an `Operator` that shows
the instruction and returns the pasted key.  While the flow waits for the
standby's key, the reset watch probes the active key: if the operator resets
the active app by mistake, the flow says so at once (`Operator.notice`), before
the key arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from rotator.pipeline import fence
from rotator.pipeline.key_sources import KeySource
from rotator.report import EmitStatus, KeyOutcome, Step
from rotator.reset_watch import ResetDetected, ResetWatch, WatchOutcome
from rotator.transport import http_client

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.report import Report
    from rotator.secret import Secret

T = TypeVar("T")


# The limits of asking, defined here only (the session, the flows and every front end import them).
MAX_KEY_ATTEMPTS = 5  # keys refused (rejected pastes included) before an armed rotation (or one reset) is given up
MAX_PASTES = 5  # pastes that are not a key (empty, wrong shape) before one reset is given up
KEEP_WARM_EVERY = 15.0  # seconds between probe keep-alives and lock renewals while a session waits for a key


@dataclass(frozen=True)
class ResetAsk:
    """One request to the operator: reset `app` in the dashboard, paste its new key."""

    app: str
    why: str
    instruction: str  # "Business → Apps → APP → View details → Reset app key: WHY"
    slot: str  # which slot the key goes to: standby | active
    attempt: int = 1
    refused: str | None = None  # why the previous paste was refused


@dataclass
class Attempt:
    """What became of one key handed to an armed session (`ArmedSession.hand`), whatever its flow:
    the answer the service sends back, and what a front end is told of a refused key."""

    outcome: KeyOutcome
    message: str  # the whole line: what happened (and, when refused, that nothing was written)
    report: Report | None = None  # the single flow's attempt: its report (a refusal's too)
    attempts_left: int = 0
    final: bool = False  # the session is over: FINISHED or CLOSED
    detail: str = ""  # a rejected paste: what is wrong with it


class Operator(Protocol):
    async def key(self, ask: ResetAsk) -> Secret:
        """Show `ask`, return the key pasted (cleaned); raise to give up."""
        ...

    def notice(self, line: str) -> None:
        """Say `line` at once (the flow goes on waiting for the key)."""
        ...


async def take_key(
    state: RotationState, operator: Operator, ask: ResetAsk, *, watch_app: str | None, expected: bool = False
) -> tuple[Secret, ResetDetected | None]:
    """The operator's key; with `watch_app`, the active key is watched meanwhile.  A refusal
    (that app was reset) is said the moment it is seen when it was a mistake; when it is the
    reset asked for (`expected`: revoke now), it is the outage's start (`state.reset`)."""
    key = asyncio.ensure_future(operator.key(ask))
    if watch_app is None or state.prober is None or state.old_secret is None:
        return await key, None
    asked = (time.time(), time.perf_counter())
    async with http_client(timeout=state.plan.probe.timeout, trust_env=True) as client:
        watch = ResetWatch(state.prober, state.old_secret, client=client)
        watching = asyncio.ensure_future(watch.run())
        try:
            done, _ = await asyncio.wait({key, watching}, return_when=asyncio.FIRST_COMPLETED)
            if key not in done:
                result = watching.result()
                if result.outcome is WatchOutcome.RESET and result.reset is not None:
                    reset = result.reset
                    if reset.after_wall is None:  # refused at the first probe: the reset followed the ask
                        reset = dataclasses.replace(reset, after_wall=asked[0], after_perf=asked[1])
                    if expected:
                        state.reset = state.reset or reset
                        return await key, reset
                    line = (
                        f"the ACTIVE app ({watch_app}) was just reset, not {ask.app}: every consumer is failing now; "
                        f"paste {watch_app}'s new key: it becomes the active key at once (single-app style)"
                    )
                    state.emit(Step.REKEY, watch_app, EmitStatus.FAILED, line)
                    state.event(Step.REKEY, "active_reset", target=watch_app, detail=line)
                    operator.notice(line)
                    return await key, reset
            return await key, None
        finally:
            watch.stop()
            if not key.done():
                key.cancel()
            with contextlib.suppress(Exception):
                await watching


class SourcesOperator:
    """An `Operator` over the session's key sources (`pipeline.key_sources.KeySource`: a prompt,
    stdin, the page, the clipboard), raced: the first key any of them gives is taken.  A read
    still pending when a key arrives is kept for the next ask (a prompt cannot be taken back).
    Subclass `show`, `rejected`, `received` and `notice` for a front end."""

    def __init__(self, sources: list[KeySource], key_pattern: str | None, max_pastes: int = MAX_PASTES) -> None:
        self.sources = sources
        self.key_pattern = key_pattern
        self.max_pastes = max_pastes
        self._pending: dict[int, asyncio.Future[str | bytes | Secret | None]] = {}
        # Told the moment a source gives a key (the single flow's window starts there, not a few loop turns later).
        self.arrival: Callable[[], None] | None = None

    def show(self, ask: ResetAsk) -> None:
        """Tell the operator which app to reset and why (the dashboard instruction)."""

    def rejected(self, message: str) -> None:
        """A paste was not a key; another is awaited."""

    def received(self, fingerprint: str, warnings: list[str]) -> None:
        """A key arrived (it is about to be probed)."""

    def notice(self, line: str) -> None:
        """Something the operator must know at once."""

    async def key(self, ask: ResetAsk) -> Secret:
        self.show(ask)
        return await self.take(ask)

    async def take(self, ask: ResetAsk) -> Secret:
        """The key for `ask` (shown already): pastes that are not keys refused, up to `max_pastes`."""
        from rotator.errors import RotationError
        from rotator.exitcodes import Exit
        from rotator.secret import CleanKey, KeyRejected, Secret, clean_paste

        last = ""
        for _ in range(self.max_pastes):
            raw = await self._next()
            if raw is None:
                why = ask.refused or last  # the key before was refused: why, not only that the input ended
                raise RotationError(
                    f"no more keys: the input ended before {ask.app}'s key" + (f" ({why})" if why else ""),
                    Exit.KEY_REFUSED,
                )
            try:
                clean = CleanKey(raw) if isinstance(raw, Secret) else clean_paste(raw, self.key_pattern)
            except KeyRejected as exc:
                last = f"the pasted key was rejected: {exc}"
                self.rejected(last)
                continue
            finally:
                del raw
            self.received(clean.secret.fingerprint, list(clean.warnings))
            return clean.secret
        raise RotationError(f"{last}; nothing more was written", Exit.KEY_REFUSED)

    async def _next(self) -> str | bytes | Secret | None:
        """The first key any live source gives; None when every source has ended."""
        live = list(range(len(self.sources)))
        while live:
            for i in live:
                if i not in self._pending:
                    self._pending[i] = asyncio.ensure_future(self._read(self.sources[i]))
            done, _ = await asyncio.wait([self._pending[i] for i in live], return_when=asyncio.FIRST_COMPLETED)
            for i in list(live):
                task = self._pending[i]
                if task in done:
                    del self._pending[i]
                    value = task.result()
                    if value is not None:
                        return value
                    live.remove(i)
        return None

    async def _read(self, source: KeySource) -> str | bytes | Secret | None:
        value = await source.read()
        if value is not None:
            self.arrived(source)
        return value

    def arrived(self, source: KeySource) -> None:
        """A key came from `source`, this instant."""
        if self.arrival is not None:
            self.arrival()

    def close(self) -> None:
        for task in self._pending.values():
            task.cancel()
        self._pending.clear()


class AskingSession(Protocol):
    """What a flow's operator drives of its armed session (`pipeline.session.ArmedSession`):
    public members only; the session keeps the lifecycle, the operator the asking."""

    asking: ResetAsk | None
    handed_keys: bool
    max_pastes: int | None

    @property
    def inbox(self) -> KeySource: ...
    @property
    def state(self) -> RotationState: ...
    @property
    def listener(self) -> AskListener: ...

    def answer(self, attempt: Attempt) -> None: ...

    def rearm(self, *, expire: bool = False) -> None: ...

    async def armed_until(self, key: Coroutine[Any, Any, T], *, expire: bool = True) -> T: ...


class AskListener(Protocol):
    """What a front end is told of a flow's asks (`pipeline.session_types.Listener`)."""

    def asked(self, ask: ResetAsk) -> None: ...
    def rejected(self, message: str) -> None: ...
    def received(self, fingerprint: str, warnings: list[str]) -> None: ...
    def notice(self, line: str) -> None: ...


class FlowOperator(SourcesOperator):
    """A flow's `Operator` over its session: the page's keys (`hand`) and every fed source,
    raced.  ARMED (kept warm, expiring `arm_timeout` after the ask) only while it waits.
    `key` asks for a reset (a `ResetAsk`, cleaned here, `max_pastes`); `paste` takes one raw
    paste as it comes (the single flow cleans and counts its attempts itself)."""

    def __init__(self, session: AskingSession) -> None:
        sources: list[KeySource] = [session.inbox] if session.handed_keys else []
        super().__init__(sources, session.state.plan.secret.key_pattern, session.max_pastes or MAX_PASTES)
        self.session = session

    def show(self, ask: ResetAsk) -> None:
        s = self.session
        # The key handed for the previous ask (if any) was refused, or the next reset is due.
        s.answer(
            Attempt(KeyOutcome.REFUSED if ask.refused else KeyOutcome.TAKEN, ask.refused or f"next: reset {ask.app}")
        )
        s.asking = ask
        s.listener.asked(ask)

    def rejected(self, message: str) -> None:
        self.session.rearm()  # still waiting for this ask's key
        self.session.answer(Attempt(KeyOutcome.REJECTED, message))
        self.session.listener.rejected(message)

    def received(self, fingerprint: str, warnings: list[str]) -> None:
        self.session.listener.received(fingerprint, warnings)

    def notice(self, line: str) -> None:
        self.session.listener.notice(line)

    def arrived(self, source: KeySource) -> None:
        if source is not self.session.inbox:  # a handed key arrived in `hand()` already
            super().arrived(source)

    def handed(self) -> None:
        """A key was handed in (`ArmedSession.hand`), this instant."""
        super().arrived(self.session.inbox)

    async def key(self, ask: ResetAsk) -> Secret:
        await fence.before_ask(self.session.state)  # no reset asked for by a run that lost its plan (LOCK_LOST)
        self.session.rearm(expire=True)  # ARMED, expiring from this ask (the page shows when) ...
        self.show(ask)  # ... and asking at once: a key handed from now on is this ask's
        return await self.session.armed_until(self.take(ask), expire=False)

    async def paste(self, *, expire: bool = True) -> str | bytes | Secret | None:
        """One paste, raw, from whichever source gives it first (None: every source ended);
        ARMED while it waits (`expire`: the expiry counts from now, else from before)."""
        return await self.session.armed_until(self._next(), expire=expire)
