"""`ArmedSession`: one armed rotation waiting for its key: the one flow of `rotator
rotate` and of the service.

    arm ──ok──▶ ARMED ──key──▶ ROTATING ──written──▶ FINISHED
     │            ▲  │            │
     │            └──┼─refused────┘  (attempts left: still armed, ask again)
     ▼               │
    NotArmed         └──close / expiry / lock lost / last refusal──▶ CLOSED

While ARMED, a keeper keeps the probe's connection warm and renews the plan
lock's lease (every `keep_warm_every` seconds) and closes the session when no
key came before `expires_at`.  Keys come from any number of `KeySource`s racing
(a hidden prompt, stdin, the web page / API, the clipboard): the first key
offered is tried, a key offered while one is being written is refused as busy.
`spawn` runs further background work while armed (e.g. a watcher of the old key);
it is cancelled when the session ends.

The attempt runs as a task owned by the session, not by whoever offered the key:
an HTTP client that disconnects does not stop a rotation half-way.

A `Flow` (`flow=`, an alternating plan's: `alternating_flow`) runs instead of the single
flow's key attempts (`single_flow`): armed by `arm()` (its `armed` hook), it runs as the
session's task and asks for keys through its operator (`ask.FlowOperator`), the session
ARMED (keep-warm, expiry counted from each ask) only while it waits (`armed_until`).
Keys reach it through `hand()` and the fed sources; `interrupt()` makes the pending ask
raise (the page's Roll back).  The parts, one job each, live beside it (their names are
re-exported here): `single_flow`, `key_sources`, `keeper`, `armed_watch`, `ask`,
`session_types` (the vocabulary and front-end hooks), `instructions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from rotator.errors import RotatorError
from rotator.logs import get_logger
from rotator.pipeline import arm, finish
from rotator.pipeline.armed_watch import ArmedWatch
from rotator.pipeline.ask import KEEP_WARM_EVERY, MAX_KEY_ATTEMPTS, MAX_PASTES, FlowOperator
from rotator.pipeline.instructions import (
    ARMED_HEADLINE,
    PASTE_PAGE,
    PASTE_PROMPT,
    PASTE_STDIN,
    RESET_STEPS,
    instruction,
    not_armed_message,
)
from rotator.pipeline.keeper import CLOSE_STEP, Keeper, close_requested
from rotator.pipeline.key_sources import Inbox, KeySource
from rotator.pipeline.session_types import (
    Attempt,
    Handed,
    Listener,
    NotArmed,
    Outcome,
    SessionBusy,
    Status,
)
from rotator.pipeline.single_flow import SingleFlow
from rotator.report import Report
from rotator.secret import Secret

if TYPE_CHECKING:
    from rotator.pipeline.ask import ResetAsk
    from rotator.pipeline.state import RotationState
    from rotator.report import ArmResult
    from rotator.reset_watch import ResetWatch

log = get_logger("rotator.session")


class Flow(Protocol):
    """A flow an armed session runs instead of the single flow's key attempts."""

    @property
    def what(self) -> str:
        """The verb of "cannot WHAT: ..." when arm fails."""

    async def armed(self, session: ArmedSession) -> None:
        """After `arm.run` succeeded: the flow's own arm (raise RotatorError: nothing changed)."""

    async def run(self, session: ArmedSession, operator: FlowOperator) -> Report:
        """The flow, from right after arm; keys come from `operator`."""


class ArmedSession:
    """One armed rotation, its key attempts and its keeper.  Use `arm()` first, `release()` last."""

    def __init__(
        self,
        state: RotationState,
        listener: Listener | None = None,
        *,
        max_attempts: int = MAX_KEY_ATTEMPTS,
        arm_timeout: float | None = None,
        keep_warm_every: float = KEEP_WARM_EVERY,
        unavailable_keeps_armed: bool = True,
        dry_run: bool = False,
        flow: Flow | None = None,
        handed_keys: bool = True,
        max_pastes: int | None = None,
    ) -> None:
        self.state = state
        self.flow = flow
        # The single-app flow's key attempts (`offer`): probed and written by `pipeline.rotate`.
        self.single = SingleFlow(dry_run=dry_run, unavailable_keeps_armed=unavailable_keeps_armed)
        # A flow's keys: handed in (`hand`: the page, the API) and/or from fed sources; a front end
        # with fed sources only (the terminal) says so, so that their end ends the ask.
        self.handed_keys = handed_keys
        self.max_pastes = max_pastes
        self.inbox = Inbox()
        self.operator: FlowOperator | None = None  # a flow's, once armed
        self.asking: ResetAsk | None = None  # what a flow waits for now
        self.started_wall = time.time()
        self._handed: asyncio.Future[Handed] | None = None
        self._interrupt: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.listener = listener or Listener()
        self.max_attempts = max_attempts
        self.arm_timeout = arm_timeout
        self.keep_warm_every = keep_warm_every
        self.status = Status.ARMING
        self.attempts = 0
        self.expires_at: float | None = None  # wall clock
        self.last_refusal: Attempt | None = None
        self.closed_reason = ""
        self.report: Report | None = None  # the final report, once the session is over
        self.error: Exception | None = None  # what ended an attempt that raised (the journal says how far it got)
        self._over: asyncio.Future[Report | None] = asyncio.get_running_loop().create_future()
        self._keeper = Keeper(self)
        self._attempt_task: asyncio.Task[Any] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.armed_watch = ArmedWatch(self)  # the old key, watched while armed (the single flow)

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def watch(self) -> ResetWatch | None:
        """The old key's watch, probed every [probe] watch_interval while armed."""
        return self.armed_watch.watch

    @property
    def done(self) -> bool:
        return self.status in (Status.FINISHED, Status.CLOSED)

    @property
    def in_flight(self) -> asyncio.Task[Any] | None:
        """The attempt (or a flow's step) running now (probing or writing a key), if any."""
        task = self._attempt_task
        return task if task is not None and not task.done() and self.status is Status.ROTATING else None

    @property
    def attempts_left(self) -> int:
        return max(self.max_attempts - self.attempts, 0)

    # -- arm -------------------------------------------------------------
    async def arm(self, what: str = "rotate", *, start: bool = True) -> ArmResult:
        """Arm the rotation.  Raises NotArmed (after disarming) when a target is not ready,
        RotationError when the plan is locked by another rotation (or a flow's own arm failed).
        A flow starts running at once, or (`start=False`) at `start()`."""
        self.started_wall = time.time()
        try:
            armed = await arm.run(self.state)
            if not armed.ok:
                raise NotArmed(not_armed_message(armed, self.flow.what if self.flow else what), armed)
            if self.flow is not None:
                await self.flow.armed(self)
        except BaseException:
            await self.release()
            raise
        if self.flow is not None:
            self.status = Status.ROTATING  # until the flow asks for a key
            self.operator = FlowOperator(self)
            if start:
                self.start()
            return armed
        self.status = Status.ARMED
        self._expire_from_now()
        self._start_keeper()
        self.armed_watch.start()
        return armed

    def rearm(self) -> None:
        """Armed again after a refused key: kept warm until the next (the expiry still counts from arm)."""
        self.status = Status.ARMED
        self._start_keeper()

    def _expire_from_now(self) -> None:
        if self.arm_timeout is not None:
            self.expires_at = time.time() + self.arm_timeout

    def _start_keeper(self) -> None:
        self._keeper.start()

    def _stop_keeper(self) -> None:
        self._keeper.stop()

    # -- a flow ------------------------------------------------------------
    def start(self) -> None:
        """Run the flow (once), after `arm(start=False)`."""
        assert self.flow is not None and self.operator is not None, "arm() a flow first"
        if self._attempt_task is None:
            self._attempt_task = self.spawn(self._run_flow())

    async def _run_flow(self) -> None:
        assert self.flow is not None and self.operator is not None
        try:
            report = await self.flow.run(self, self.operator)
        except asyncio.CancelledError:
            raise  # closed (expiry, close, lost lock: `_end` ran) or shutdown
        except RotatorError as exc:
            self.error = exc
            await self.end(Status.CLOSED, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the journal says how far it got; one line here
            self.error = exc
            log.error("flow failed", rotation=self.id, error=type(exc).__name__)
            await self.end(Status.CLOSED, f"internal error ({type(exc).__name__})", resume=f"rotator resume {self.id}")
            return
        finally:
            if self.operator is not None:
                self.operator.close()
        self.report = report
        self.listener.finished(report)
        await self.end(Status.FINISHED, "")

    async def hand(self, raw: str | bytes | Secret) -> Handed:
        """A key for the flow's pending ask; returns once the flow is done with it (the next
        ask, a refusal, the end).  Raises SessionBusy unless the flow waits for a key."""
        if self.status is not Status.ARMED or self.asking is None or self._handed is not None:
            raise SessionBusy(f"rotation {self.id} is not waiting for a key now ({self.status})")
        handed = self._handed = asyncio.get_running_loop().create_future()
        self.inbox.queue.put_nowait(raw)
        del raw
        return await asyncio.shield(handed)

    def answer(self, outcome: Outcome, message: str) -> None:
        """Answer the pending `hand()`, if any (the flow's operator: refused, taken, rejected)."""
        handed, self._handed = self._handed, None
        if handed is not None and not handed.done():
            handed.set_result(Handed(outcome, message))

    def interrupt(self, exc: BaseException) -> bool:
        """Make the flow's pending ask raise `exc` (e.g. the page's Roll back).  False unless it waits for a key."""
        if self.asking is None or self.status is not Status.ARMED or self._interrupt.done():
            return False
        self._interrupt.set_exception(exc)
        return True

    async def armed_until(self, key: Coroutine[Any, Any, Secret]) -> Secret:
        """A flow's wait for one key: ARMED (kept warm, expiring `arm_timeout` from now) until
        `key` gives it or `interrupt()` raises instead; ROTATING again after."""
        self.status = Status.ARMED
        self._expire_from_now()
        self._start_keeper()
        wanted = asyncio.ensure_future(key)
        try:
            either: set[asyncio.Future[Any]] = {wanted, self._interrupt}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not wanted.done():
                wanted.cancel()
                self._interrupt.result()  # raises what interrupt() was given
            return wanted.result()
        finally:
            if not wanted.done():
                wanted.cancel()
            self.asking = None
            self._stop_keeper()
            if not self.done:
                self.status = Status.ROTATING

    # -- keys ------------------------------------------------------------
    def feed(self, source: KeySource) -> asyncio.Task[None] | None:
        """Offer every key `source` reads until the session is over (or the source has no more).
        A flow's operator reads it itself (raced with the page's keys)."""
        if self.flow is not None:
            assert self.operator is not None, "arm() first"
            self.operator.sources.append(source)
            return None

        async def pump() -> None:
            while not self.done:
                raw = await source.read()
                if raw is None:
                    return
                try:
                    attempt = await self.offer(raw)
                except SessionBusy:
                    continue
                finally:
                    del raw
                if attempt.final:
                    return

        return self.spawn(pump())

    async def offer(self, raw: str | bytes | Secret) -> Attempt:
        """Try one key.  Raises SessionBusy unless the session is armed."""
        if self.status is Status.ROTATING:
            raise SessionBusy(f"rotation {self.id} is already writing a key")
        if self.status is not Status.ARMED:
            raise SessionBusy(f"rotation {self.id} is {self.status}; arm the plan again")
        self.armed_watch.key_arrives()  # the window starts when the (accepted) key reaches us
        self.status = Status.ROTATING
        self._stop_keeper()
        task = self._attempt_task = self.spawn(self.single.attempt(self, raw))
        del raw
        return await asyncio.shield(task)

    # -- waiting, closing --------------------------------------------------
    async def wait(self) -> Report | None:
        """Until the session is over: the final report (None when closed without one)."""
        return await asyncio.shield(self._over)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` beside the session; cancelled when the session ends."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: whoever awaited it has it (`error`, the offer's caller)

    async def close(self, why: str) -> None:
        """Close an armed session that will get no key: journaled as aborted, or as refused
        when its last key was refused.  Does nothing unless armed."""
        if self.status is not Status.ARMED:
            return
        if self.last_refusal is not None and self.state.report is None:  # only a keyed session refuses
            with contextlib.suppress(Exception):
                await finish.abandon(self.state, self.last_refusal.report)
        await self.end(Status.CLOSED, why)

    async def release(self) -> None:
        """Disarm (idempotent): clients closed, lock released, a never-keyed entry aborted."""
        self._stop_keeper()
        await self.armed_watch.release()
        await arm.disarm(self.state)

    async def end(self, status: Status, why: str, resume: str | None = None) -> None:
        """The session is over: FINISHED (its report set) or CLOSED (`why`; `resume`: how to finish it)."""
        self.status = status
        self.closed_reason = why
        self.asking = None
        if status is Status.FINISHED and self.report is not None:
            self.answer(Outcome.FINISHED, self.report.message)
        else:
            self.answer(Outcome.CLOSED, why)
        try:
            await self.release()
        finally:  # whatever disarming raised, the session is over: `wait` must return
            if not self._over.done():
                self._over.set_result(self.report)
        current = asyncio.current_task()
        for task in list(self._background):  # the key sources, watchers (not the attempt ending it)
            if task is not current:
                task.cancel()
        if status is Status.CLOSED:
            self.listener.closed(why, resume)
            log.info("armed rotation closed", rotation=self.id, why=why)
        if not self._over.done():
            self._over.set_result(self.report)


__all__ = [  # the names callers import from here (re-exported from the modules they moved to)
    "ARMED_HEADLINE",
    "CLOSE_STEP",
    "KEEP_WARM_EVERY",
    "MAX_KEY_ATTEMPTS",
    "MAX_PASTES",
    "PASTE_PAGE",
    "PASTE_PROMPT",
    "PASTE_STDIN",
    "RESET_STEPS",
    "ArmedSession",
    "Attempt",
    "Flow",
    "FlowOperator",
    "Handed",
    "Inbox",
    "KeySource",
    "Listener",
    "NotArmed",
    "Outcome",
    "SessionBusy",
    "Status",
    "close_requested",
    "instruction",
    "not_armed_message",
]
