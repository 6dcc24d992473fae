"""`ArmedSession`: one armed run waiting for its keys, whatever its flow: the one session of
`rotator rotate`, `rekey`, `rollback` and of the service.

    arm ──ok──▶ the flow runs ──asks──▶ ARMED ──key──▶ ROTATING ──▶ … ──report──▶ FINISHED
     │                                    │   ▲           │
     ▼                                    │   └─asks again┘  (a refused key, the next reset)
    NotArmed                              └──close / expiry / lock lost──▶ CLOSED

The session keeps the lifecycle only: arm (`arm.run`, then the flow's `armed` hook), the
keeper (keep-warm, the lock's lease, expiry) while ARMED, `hand()` (the page's and the API's
keys), the fed sources (a hidden prompt, stdin, the clipboard), `interrupt()` (the page's
Roll back), close and release.  Every session runs exactly one `Flow`: the single-app key
attempts (`single_flow.SingleFlow`, the default) or an alternating plan's
(`alternating_flow`).  The flow runs as the session's task (an HTTP client that disconnects
does not stop it half-way) and asks for keys through its operator (`ask.FlowOperator`): the
session is ARMED only while it waits (`armed_until`).  A key handed while one is being
written is refused as busy.  `spawn` runs background work (the old key's watch), cancelled
when the session ends.  The parts, one job each, live beside it (their names are re-exported
here): `single_flow`, `key_sources`, `keeper`, `armed_watch`, `ask`, `session_types`,
`instructions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from rotator.errors import RotatorError
from rotator.logs import get_logger
from rotator.pipeline import arm, finish
from rotator.pipeline.armed_watch import ArmedWatch
from rotator.pipeline.ask import KEEP_WARM_EVERY, MAX_KEY_ATTEMPTS, MAX_PASTES, Attempt, FlowOperator
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
    Closed,
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
T = TypeVar("T")


class Flow(Protocol):
    """What an armed session runs: the single-app key attempts, an alternating plan's flow, any other."""

    @property
    def what(self) -> str:
        """The verb of "cannot WHAT: ..." when arm fails."""

    async def armed(self, session: ArmedSession) -> None:
        """After `arm.run` succeeded: the flow's own arm (raise RotatorError: nothing changed).
        A flow that waits for a key first makes the session ARMED here (`rearm`)."""

    async def run(self, session: ArmedSession, operator: FlowOperator) -> Report:
        """The flow, from right after arm; keys come from `operator`.  Returns the report to
        finish with, or raises `Closed` (or an error) to close the session without one."""


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
        flow: Flow | None = None,
        handed_keys: bool = True,
        max_pastes: int | None = None,
    ) -> None:
        self.state = state
        self.flow: Flow = flow or SingleFlow()  # the single-app key attempts unless another flow is given
        # The keys: handed in (`hand`: the page, the API) and/or from fed sources; a front end
        # with fed sources only (the terminal) says so, so that their end ends the ask.
        self.handed_keys = handed_keys
        self.max_pastes = max_pastes
        self.inbox = Inbox()
        self.operator = FlowOperator(self)  # how the flow asks for keys: the inbox and the fed sources
        self.asking: ResetAsk | None = None  # what a flow waits for now
        self.started_wall = time.time()
        self._handed: asyncio.Future[Attempt] | None = None
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
        self.armed_watch = ArmedWatch(self)  # the old key, watched while armed (the single flow starts it)

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
    async def arm(self, *, start: bool = True) -> ArmResult:
        """Arm the run.  Raises NotArmed (after disarming) when a target is not ready,
        RotationError when the plan is locked by another rotation (or the flow's own arm failed).
        The flow starts running at once, or (`start=False`: its sources fed first) at `start()`."""
        self.started_wall = time.time()
        try:
            armed = await arm.run(self.state)
            if not armed.ok:
                raise NotArmed(not_armed_message(armed, self.flow.what), armed)
            await self.flow.armed(self)
        except BaseException:
            await self.release()
            raise
        if self.status is Status.ARMING:
            self.status = Status.ROTATING  # until the flow asks for a key
        if start:
            self.start()
        return armed

    def rearm(self, *, expire: bool = False) -> None:
        """ARMED: kept warm until the next key (`expire`: expiring `arm_timeout` from now; else
        the expiry counts from before, e.g. from arm after a refused key)."""
        if self.done:
            raise asyncio.CancelledError  # closed meanwhile: nothing more is asked
        self.status = Status.ARMED
        if expire:
            self._expire_from_now()
        self._keeper.start()

    def _expire_from_now(self) -> None:
        if self.arm_timeout is not None:
            self.expires_at = time.time() + self.arm_timeout

    # -- the flow ----------------------------------------------------------
    def start(self) -> None:
        """Run the flow (once), after `arm(start=False)`."""
        if self._attempt_task is None:
            self._attempt_task = self.spawn(self._run_flow())

    async def _run_flow(self) -> None:
        try:
            report = await self.flow.run(self, self.operator)
        except asyncio.CancelledError:
            raise  # closed (expiry, close, lost lock: `_end` ran) or shutdown
        except Closed as closed:
            await self.end(Status.CLOSED, closed.why, resume=closed.resume)
            return
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
            self.operator.close()
        self.report = report
        self.listener.finished(report)
        await self.end(Status.FINISHED, "")

    async def hand(self, raw: str | bytes | Secret) -> Attempt:
        """A key for the flow's pending ask; returns once the flow is done with it (refused, the
        next ask, the end: then once the session is released).  Raises SessionBusy unless the
        session waits for a key (a key is being written, or the session is over)."""
        if self.status is Status.ROTATING or self._handed is not None:
            raise SessionBusy(f"rotation {self.id} is already writing a key")
        if self.status is not Status.ARMED:
            raise SessionBusy(f"rotation {self.id} is {self.status}; arm the plan again")
        handed = self._handed = asyncio.get_running_loop().create_future()
        self.status = Status.ROTATING  # from now: busy, not closed under the flow, not kept warm
        self._keeper.stop()
        self.operator.handed()  # the window starts when the key reaches us (the single flow)
        self.inbox.queue.put_nowait(raw)
        del raw
        attempt = await asyncio.shield(handed)
        if attempt.final:
            await self.wait()  # released (lock, journal) before the answer goes out
        return attempt

    def answer(self, attempt: Attempt) -> None:
        """Answer the pending `hand()`, if any (the flow: refused, taken, rejected, written)."""
        handed, self._handed = self._handed, None
        if handed is not None and not handed.done():
            handed.set_result(attempt)

    def interrupt(self, exc: BaseException) -> bool:
        """Make the flow's pending ask raise `exc` (e.g. the page's Roll back).  False unless it waits for a key."""
        if self.asking is None or self.status is not Status.ARMED or self._interrupt.done():
            return False
        self._interrupt.set_exception(exc)
        return True

    async def armed_until(self, key: Coroutine[Any, Any, T], *, expire: bool = True) -> T:
        """A flow's wait for one key: ARMED (kept warm; `expire`: expiring `arm_timeout` from
        now) until `key` gives it or `interrupt()` raises instead; ROTATING again after."""
        if self._handed is None:  # else a key handed before the ask is waiting in the inbox
            self.rearm(expire=expire)
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
            self._keeper.stop()
            if not self.done:
                self.status = Status.ROTATING

    # -- keys ------------------------------------------------------------
    def feed(self, source: KeySource) -> None:
        """Race `source`'s keys with the others (and the handed ones) at every ask, until the
        session is over or the source has no more; the flow's operator reads it."""
        self.operator.sources.append(source)

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
            task.exception()  # retrieved: whoever awaited it has it (`error`)

    async def close(self, why: str) -> None:
        """Close an armed session that will get no key: journaled as aborted, or as refused
        when its last key was refused.  Does nothing unless armed."""
        if self.status is not Status.ARMED:
            return
        refusal = self.last_refusal
        if refusal is not None and refusal.report is not None and self.state.report is None:
            with contextlib.suppress(Exception):  # the single flow's last refused key: journaled as refused
                await finish.abandon(self.state, refusal.report)
        await self.end(Status.CLOSED, why)

    async def release(self) -> None:
        """Disarm (idempotent): clients closed, lock released, a never-keyed entry aborted."""
        self._keeper.stop()
        await self.armed_watch.release()
        await arm.disarm(self.state)

    async def end(self, status: Status, why: str, resume: str | None = None) -> None:
        """The session is over: FINISHED (its report set) or CLOSED (`why`; `resume`: how to finish it)."""
        self.status = status
        self.closed_reason = why
        self.asking = None
        if status is Status.FINISHED and self.report is not None:
            self.answer(Attempt(Outcome.FINISHED, self.report.message, self.report, self.attempts_left, final=True))
        else:
            self.answer(Attempt(Outcome.CLOSED, why, self.report, self.attempts_left, final=True))
        current = asyncio.current_task()
        running = self._attempt_task
        if running is not None and running is not current:
            running.cancel()  # closed while the flow waits (or before it ran): it asks for nothing more
        try:
            await self.release()
        finally:  # whatever disarming raised, the session is over: `wait` must return
            if not self._over.done():
                self._over.set_result(self.report)
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
    "Closed",
    "Flow",
    "FlowOperator",
    "Inbox",
    "KeySource",
    "Listener",
    "NotArmed",
    "Outcome",
    "SessionBusy",
    "SingleFlow",
    "Status",
    "close_requested",
    "instruction",
    "not_armed_message",
]
