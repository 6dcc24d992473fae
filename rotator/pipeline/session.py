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

A `Flow` (`flow=`) replaces the single flow's key attempts with a flow of its own
(an alternating plan's promote, re-key, incident, roll back: `alternating_flow`):
it is armed by `arm()` (its `armed` hook after `arm.run`), runs as the session's
task from then on, and asks for keys through the session's `FlowOperator`, which
is ARMED (keep-warm, expiry counted from each ask) only while it waits for one.
Keys reach it through `hand()` (the page, the API) and the sources `feed()`
gives it; `interrupt()` makes the pending ask raise (the page's Roll back).
The expiry, keep-warm and close are the same as the single flow's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from rotator import pipeline
from rotator.errors import RotatorError
from rotator.exitcodes import Exit
from rotator.journal import LockHeld
from rotator.logs import get_logger
from rotator.pipeline import arm, finish
from rotator.pipeline.ask import MAX_PASTES, SourcesOperator
from rotator.report import Report, RunState
from rotator.secret import CleanKey, KeyRejected, Secret, clean_paste

if TYPE_CHECKING:
    import httpx

    from rotator.journal import Journal
    from rotator.pipeline.ask import ResetAsk
    from rotator.pipeline.state import RotationState
    from rotator.report import ArmResult
    from rotator.reset_watch import ResetDetected, ResetWatch

log = get_logger("rotator.session")

MAX_KEY_ATTEMPTS = 5  # keys refused (rejected pastes included) before an armed rotation is closed
KEEP_WARM_EVERY = 15.0  # seconds between probe keep-alives and lock renewals while armed

# What the operator does once armed: the dashboard steps, said once for the terminal and the page.
ARMED_HEADLINE = (
    "Every target is ready. Now reset the key; the old key stops working at once, so the window starts now."
)
RESET_STEPS = (
    "Adjutor dashboard → Business → Apps → View details → Reset app key",
    "Copy the new key the dashboard shows.",
)
PASTE_PROMPT = "Paste it here and press Enter (input is hidden)."
PASTE_STDIN = "Pipe it in: reading the key from stdin."
PASTE_PAGE = "Paste it into the key field here and press Enter."


def instruction(paste: str = PASTE_PAGE) -> list[str]:
    """The armed instruction: the headline, then the numbered steps ending with how to paste."""
    return [ARMED_HEADLINE, *RESET_STEPS, paste]


def not_armed_message(armed: ArmResult, what: str = "rotate") -> str:
    problems = "; ".join(armed.problems())
    if what == "rotate":
        return f"not armed: {problems} — fix these before resetting the key"
    return f"cannot {what}: {problems}"


CLOSE_STEP = "close"  # journal: `requested` by someone who does not hold the session (the page of another replica)


def close_requested(journal: Journal, rid: str) -> str | None:
    """Why someone asked (through the journal) for this armed rotation to be closed, if anyone did.
    The holder's keeper reads it every `keep_warm_every` seconds: one small query."""
    for e in journal.events(rid):
        if e.get("step") == CLOSE_STEP and e.get("status") == "requested":
            return str(e.get("detail") or "closed on request")
    return None


class NotArmed(RotatorError):
    """Arm found a target not ready: nothing was journaled as started, no key may be taken."""

    def __init__(self, message: str, armed: ArmResult) -> None:
        super().__init__(message)
        self.armed = armed
        self.code = Exit.PREFLIGHT_FAILED


class SessionBusy(RotatorError):
    """A key was offered to a session that cannot take one now (writing one, finished, closed)."""


class Status(StrEnum):
    ARMING = "arming"
    ARMED = "armed"
    ROTATING = "rotating"
    FINISHED = "finished"
    CLOSED = "closed"


class Outcome(StrEnum):
    REJECTED = "rejected"  # the paste is not a key (empty, wrong shape): nothing probed
    REFUSED = "refused"  # the probe refused it or could not check it: nothing written
    WRITTEN = "written"  # the rotation ran: see the report's state
    DRY_RUN = "dry_run"


@dataclass
class Attempt:
    """What became of one key offered to the session."""

    outcome: Outcome
    report: Report
    message: str  # the whole line: what happened, and that nothing was written
    attempts_left: int
    final: bool  # the session is over: FINISHED or CLOSED
    detail: str = ""  # a rejected paste: what is wrong with it


class KeySource(Protocol):
    """Somewhere a key can come from.  `read` waits for the next key: a raw paste (cleaned
    here), or a `Secret` a source already cleaned (`rotator.clipboard.ClipboardSource.next_key`);
    None: no more."""

    name: str

    async def read(self) -> str | bytes | Secret | None: ...


class Listener:
    """What a session tells its front end (terminal, page).  Every method may be left as is."""

    def key(self, clean: CleanKey) -> None:
        """A paste was cleaned into a key; it is about to be probed."""

    def refused(self, attempt: Attempt) -> None:
        """A key was rejected or refused; `attempt.final`: the session closes now."""

    def finished(self, report: Report) -> None:
        """The rotation ran (done, partial, failed, conflict)."""

    def closed(self, reason: str, resume: str | None = None) -> None:
        """The session ended without (another) key: `reason`, and how to finish it if resumable."""

    def reset_detected(self, reset: ResetDetected) -> None:
        """The old key was refused while armed: the outage began (`reset.ago()` seconds ago)."""

    def warning(self, text: str) -> None:
        """Something the operator should know that changes nothing (e.g. the reset is not watched)."""

    # A flow's (`Flow`) asks: which app to reset and why, what came of each paste.
    def asked(self, ask: ResetAsk) -> None:
        """The flow waits for the operator to reset `ask.app` and paste its key."""

    def rejected(self, message: str) -> None:
        """A paste was not a key; the flow waits for another."""

    def received(self, fingerprint: str, warnings: list[str]) -> None:
        """A key arrived for the flow (it is about to be probed)."""

    def notice(self, line: str) -> None:
        """Something the operator must know at once (the active app was reset by mistake)."""


class Flow(Protocol):
    """A flow an armed session runs instead of the single flow's key attempts."""

    @property
    def what(self) -> str:
        """The verb of "cannot WHAT: ..." when arm fails."""
        ...

    async def armed(self, session: ArmedSession) -> None:
        """After `arm.run` succeeded: the flow's own arm (raise RotatorError: nothing changed)."""
        ...

    async def run(self, session: ArmedSession, operator: FlowOperator) -> Report:
        """The flow, from right after arm; keys come from `operator`."""
        ...


@dataclass
class Handed:
    """What became of a key handed to a flow (`ArmedSession.hand`)."""

    outcome: str  # rejected | refused | taken | finished | closed
    message: str


class Inbox:
    """The keys handed to a flow session (the page, the API), as a `KeySource`."""

    name = "page"

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | bytes | Secret] = asyncio.Queue()

    async def read(self) -> str | bytes | Secret:
        return await self.queue.get()


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
        # A key the probe could not check: ask again (the page) or stop with its exit code (the terminal).
        self.unavailable_keeps_armed = unavailable_keeps_armed
        self.dry_run = dry_run
        self.status = Status.ARMING
        self.attempts = 0
        self.expires_at: float | None = None  # wall clock
        self.last_refusal: Attempt | None = None
        self.closed_reason = ""
        self.report: Report | None = None  # the final report, once the session is over
        self.error: Exception | None = None  # what ended an attempt that raised (the journal says how far it got)
        self._over: asyncio.Future[Report | None] = asyncio.get_running_loop().create_future()
        self._keeper: asyncio.Task[None] | None = None
        self._attempt_task: asyncio.Task[Any] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.watch: ResetWatch | None = None  # the old key, probed every [probe] watch_interval while armed
        self._watch_client: httpx.AsyncClient | None = None

    @property
    def id(self) -> str:
        return self.state.id

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
        self._start_watch()
        return armed

    # -- the reset watch ---------------------------------------------------
    def _start_watch(self) -> None:
        """Probe the old key every watch_interval while armed (pipeline.outage reads what it saw)."""
        state = self.state
        if state.prober is None or state.old_secret is None or state.reset is not None:
            return
        if self.watch is not None and not self.watch.free:
            return  # the probe costs money: watched once, not again
        import httpx

        from rotator.reset_watch import ResetWatch

        if self._watch_client is None:
            # Its own connection: a watch probe in flight never holds the one the new key's probe uses.
            self._watch_client = httpx.AsyncClient(timeout=httpx.Timeout(state.plan.probe.timeout))
        watch = ResetWatch(state.prober, state.old_secret, client=self._watch_client)
        if not watch.enabled:
            return
        self.watch = watch
        self.spawn(self._watching(watch))

    async def _watching(self, watch: ResetWatch) -> None:
        from rotator.reset_watch import WatchOutcome

        result = await watch.run()
        if result.outcome is WatchOutcome.RESET and result.reset is not None and self.status is Status.ARMED:
            reset = result.reset
            before = self.state.watch  # an earlier watch (before a refused paste) saw the key pass last
            if reset.after_perf is None and before is not None and before.last_ok_perf is not None:
                reset = dataclasses.replace(reset, after_wall=before.last_ok_wall, after_perf=before.last_ok_perf)
            self.state.reset = reset
            log.info("reset detected", rotation=self.id, status=reset.status)
            self.listener.reset_detected(reset)
        elif result.outcome is WatchOutcome.COSTS and result.warning:
            self.listener.warning(result.warning)

    def _key_arrives(self) -> None:
        """The window starts (again) now; the watch stops and, unless it saw the reset, looks
        at the old key once more beside the new key's probe (its own connection)."""
        state = self.state
        state.key_arrived(restart=True)
        watch = self.watch
        if watch is None:
            return
        watch.stop()
        state.watch = watch.result
        if state.reset is None and watch.free:
            state.old_key_look = self.spawn(watch.look())

    def _after_refusal(self, outcome: Outcome, why: str, *, watch_again: bool) -> None:
        """A refused paste: counted and explained; the old key watched again if no reset was seen."""
        from rotator.probe import ProbeOutcome
        from rotator.reset_watch import ResetDetected

        state = self.state
        state.refused_keys.append(
            {"at": state.key_received_wall, "outcome": outcome.value, "why": why, "attempt": self.attempts}
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
                self.listener.reset_detected(state.reset)
        if watch_again:
            self._start_watch()

    def _expire_from_now(self) -> None:
        if self.arm_timeout is not None:
            self.expires_at = time.time() + self.arm_timeout

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
            await self._end(Status.CLOSED, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the journal says how far it got; one line here
            self.error = exc
            log.error("flow failed", rotation=self.id, error=type(exc).__name__)
            await self._end(Status.CLOSED, f"internal error ({type(exc).__name__})", resume=f"rotator resume {self.id}")
            return
        finally:
            if self.operator is not None:
                self.operator.close()
        self.report = report
        self.listener.finished(report)
        await self._end(Status.FINISHED, "")

    async def hand(self, raw: str | bytes | Secret) -> Handed:
        """A key for the flow's pending ask; returns once the flow is done with it (the next
        ask, a refusal, the end).  Raises SessionBusy unless the flow waits for a key."""
        if self.flow is None:
            raise SessionBusy(f"rotation {self.id} takes its key with offer()")
        if self.status is not Status.ARMED or self.asking is None or self._handed is not None:
            raise SessionBusy(f"rotation {self.id} is not waiting for a key now ({self.status})")
        handed = self._handed = asyncio.get_running_loop().create_future()
        self.inbox.queue.put_nowait(raw)
        del raw
        return await asyncio.shield(handed)

    def _tell(self, outcome: str, message: str) -> None:
        """Answer the pending `hand()`, if any."""
        handed, self._handed = self._handed, None
        if handed is not None and not handed.done():
            handed.set_result(Handed(outcome, message))

    def interrupt(self, exc: BaseException) -> bool:
        """Make the flow's pending ask raise `exc` (e.g. the page's Roll back).  False unless it waits for a key."""
        if self.flow is None or self.status is not Status.ARMED or self._interrupt.done():
            return False
        self._interrupt.set_exception(exc)
        return True

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
        self._key_arrives()  # the window starts when the (accepted) key reaches us
        self.status = Status.ROTATING
        self._stop_keeper()
        task = self._attempt_task = self.spawn(self._attempt(raw))
        del raw
        return await asyncio.shield(task)

    async def _attempt(self, raw: str | bytes | Secret) -> Attempt:
        self.attempts += 1
        state = self.state
        try:
            clean = CleanKey(raw) if isinstance(raw, Secret) else clean_paste(raw, state.plan.secret.key_pattern)
        except KeyRejected as exc:
            message = f"the pasted key was rejected: {exc}; nothing was written"
            return await self._refused(Outcome.REJECTED, finish.not_written(state, message), message, detail=str(exc))
        finally:
            del raw
        self.listener.key(clean)
        secret = clean.secret
        del clean
        try:
            if self.dry_run:
                report = await pipeline.dry_run(state, secret)
                return await self._over_with(Attempt(Outcome.DRY_RUN, report, report.message, self.attempts_left, True))
            report = await pipeline.rotate(state, secret)
        except asyncio.CancelledError:
            # Shutdown ran out of time: leave the journal entry as it is (resumable).
            raise
        except Exception as exc:
            self.error = exc
            why = f"internal error ({type(exc).__name__})"
            log.error("rotation failed", rotation=self.id, error=type(exc).__name__)
            # Disarming leaves a rotation whose key was journaled resumable.
            await self._end(Status.CLOSED, why, resume=f"rotator resume {self.id}")
            raise
        finally:
            del secret
        if report.state == RunState.REFUSED:
            return await self._refused(Outcome.REFUSED, report, report.message)
        if report.state == RunState.UNAVAILABLE:
            return await self._refused(Outcome.REFUSED, report, report.message, last=not self.unavailable_keeps_armed)
        return await self._over_with(Attempt(Outcome.WRITTEN, report, report.message, self.attempts_left, True))

    async def _refused(
        self, outcome: Outcome, report: Report, message: str, *, last: bool = False, detail: str = ""
    ) -> Attempt:
        """Nothing written: keep it armed for another key, or (no attempts left) close it."""
        final = last or self.attempts >= self.max_attempts
        attempt = Attempt(outcome, report, message, self.attempts_left, final, detail)
        self.last_refusal = attempt
        self._after_refusal(outcome, detail or message, watch_again=not final)
        if final:
            await finish.abandon(self.state, report)
            self.listener.refused(attempt)
            await self._end(Status.CLOSED, f"{self.attempts} keys refused" if not last else message)
        else:
            self.status = Status.ARMED
            self._start_keeper()
            self.listener.refused(attempt)
        return attempt

    async def _over_with(self, attempt: Attempt) -> Attempt:
        self.report = attempt.report
        self.listener.finished(attempt.report)
        await self._end(Status.FINISHED, "")
        return attempt

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
        if self.flow is None and self.last_refusal is not None and self.state.report is None:
            with contextlib.suppress(Exception):
                await finish.abandon(self.state, self.last_refusal.report)
        await self._end(Status.CLOSED, why)

    async def release(self) -> None:
        """Disarm (idempotent): clients closed, lock released, a never-keyed entry aborted."""
        self._stop_keeper()
        if self.watch is not None:
            self.watch.stop()
        client, self._watch_client = self._watch_client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
        await arm.disarm(self.state)

    async def _end(self, status: Status, why: str, resume: str | None = None) -> None:
        self.status = status
        self.closed_reason = why
        self.asking = None
        if status is Status.FINISHED and self.report is not None:
            self._tell("finished", self.report.message)
        else:
            self._tell("closed", why)
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

    # -- the keeper ------------------------------------------------------
    def _start_keeper(self) -> None:
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.ensure_future(self._keep_armed())

    def _stop_keeper(self) -> None:
        if self._keeper is not None and self._keeper is not asyncio.current_task():
            self._keeper.cancel()
        self._keeper = None

    async def _keep_armed(self) -> None:
        """While it waits for its key: keep the probe's connection warm, renew the
        lock's lease, and close the session when no key came in time."""
        while self.status is Status.ARMED:
            wait = self.keep_warm_every
            if self.expires_at is not None:
                wait = min(wait, self.expires_at - time.time())
                if wait <= 0:
                    since = (
                        "of arming"
                        if self.flow is None
                        else f"of the ask to reset {self.asking.app if self.asking else 'the app'}"
                    )
                    await self.close(f"no key within {self.arm_timeout:.0f}s {since}")
                    return
            await asyncio.sleep(wait)
            if self.status is not Status.ARMED:
                return
            try:  # someone who does not hold this session (another replica's page) asked to close it
                asked = await self.state.journal_call(close_requested, self.state.journal, self.id)
            except Exception as exc:  # noqa: BLE001 - the journal is retried at the next round
                asked = None
                log.warning("close-request check failed", rotation=self.id, error=type(exc).__name__)
            if asked is not None:
                await self.close(asked)
                return
            try:
                await arm.keep_warm(self.state)
            except LockHeld as exc:
                # Our hold on the plan ended (database connection lost) and someone
                # else has it now: this rotation must not take a key.
                log.error("plan lock lost", rotation=self.id, holder=exc.holder)
                await self.close(f"lost the plan's lock: {exc}")
                return
            except Exception as exc:  # noqa: BLE001 - keeping warm is best effort
                log.warning("keep-warm failed", rotation=self.id, error=type(exc).__name__)


class FlowOperator(SourcesOperator):
    """A flow's `Operator` over the session: the page's keys (`hand`) and every fed source,
    raced.  ARMED (kept warm, expiring `arm_timeout` after the ask) only while it waits."""

    def __init__(self, session: ArmedSession) -> None:
        sources: list[KeySource] = [session.inbox] if session.handed_keys else []
        super().__init__(sources, session.state.plan.secret.key_pattern, session.max_pastes or MAX_PASTES)
        self.session = session

    def show(self, ask: ResetAsk) -> None:
        s = self.session
        if s._handed is not None:  # the key handed for the previous ask was refused, or the next reset is due
            s._tell("refused" if ask.refused else "taken", ask.refused or f"next: reset {ask.app}")
        s.asking = ask
        s.listener.asked(ask)

    def rejected(self, message: str) -> None:
        self.session._tell("rejected", message)
        self.session.listener.rejected(message)

    def received(self, fingerprint: str, warnings: list[str]) -> None:
        self.session.listener.received(fingerprint, warnings)

    def notice(self, line: str) -> None:
        self.session.listener.notice(line)

    async def key(self, ask: ResetAsk) -> Secret:
        s = self.session
        s.status = Status.ARMED
        s._expire_from_now()
        s._start_keeper()
        wanted = asyncio.ensure_future(super().key(ask))
        try:
            either: set[asyncio.Future[Any]] = {wanted, s._interrupt}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not wanted.done():
                wanted.cancel()
                s._interrupt.result()  # raises what interrupt() was given
            return wanted.result()
        finally:
            if not wanted.done():
                wanted.cancel()
            s.asking = None
            s._stop_keeper()
            if not s.done:
                s.status = Status.ROTATING


__all__ = [
    "CLOSE_STEP",
    "MAX_KEY_ATTEMPTS",
    "ArmedSession",
    "Attempt",
    "Flow",
    "FlowOperator",
    "Handed",
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
