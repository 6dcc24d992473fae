"""The single-app flow: the key attempts of an armed session (`session.Flow`).

    ask ──key──▶ clean ──▶ probe ──accepted──▶ write everywhere ──▶ FINISHED
     ▲             │          └──refused / unchecked──┐
     └─────────────┴──not a key───────────────────────┴─ attempts left: ask again; else CLOSED

The session is ARMED from arm (`armed`: the expiry counts from there, the old key is
watched) until a key arrives through the operator (`ask.FlowOperator.paste`: handed in by
the page or the API, or from a fed source), and again after each refusal.  A paste that is
not a key, a key the API refuses, and (on the page) a key the probe could not check leave it
armed for another, up to `max_attempts`; the last refusal closes it and journals why.  A dry
run probes and writes nothing.  Each key handed in is answered with its `Attempt`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from rotator import pipeline
from rotator.exitcodes import Exit
from rotator.logs import get_logger
from rotator.pipeline import finish
from rotator.pipeline.ask import Attempt
from rotator.pipeline.session_types import Closed, Outcome
from rotator.report import RunState
from rotator.secret import CleanKey, KeyRejected, Secret, clean_paste

if TYPE_CHECKING:
    from rotator.pipeline.armed_watch import ArmedWatch
    from rotator.pipeline.ask import FlowOperator
    from rotator.pipeline.session_types import Listener
    from rotator.pipeline.state import RotationState
    from rotator.report import Report

log = get_logger("rotator.session")


class Keyed(Protocol):
    """What the single flow uses of its session (`pipeline.session.ArmedSession`): public members only."""

    attempts: int
    error: Exception | None
    last_refusal: Attempt | None
    report: Report | None
    max_attempts: int
    armed_watch: ArmedWatch
    operator: FlowOperator

    @property
    def id(self) -> str: ...
    @property
    def state(self) -> RotationState: ...
    @property
    def listener(self) -> Listener: ...
    @property
    def attempts_left(self) -> int: ...

    def rearm(self, *, expire: bool = False) -> None: ...

    def answer(self, attempt: Attempt) -> None: ...


Steps = Callable[["RotationState", Secret], Awaitable["Report"]]


class SingleFlow:
    """Each key: cleaned, then probed and written by `pipeline.rotate` (or only probed: `dry_run`;
    or given to another list of steps that takes one key: `steps`)."""

    what = "rotate"

    def __init__(
        self, *, steps: Steps | None = None, dry_run: bool = False, unavailable_keeps_armed: bool = True
    ) -> None:
        self.steps = steps
        self.dry_run = dry_run
        # A key the probe could not check: ask again (the page) or stop with its exit code (the terminal).
        self.unavailable_keeps_armed = unavailable_keeps_armed

    async def armed(self, session: Keyed) -> None:
        """Waiting for the key from arm on: kept warm, expiring from now, the old key watched."""
        session.rearm(expire=True)
        session.armed_watch.start()
        session.operator.arrival = session.armed_watch.key_arrives  # the window starts as the key arrives

    async def run(self, session: Keyed, operator: FlowOperator) -> Report:
        """Keys until one is written (the report) or the last is refused (`Closed`)."""
        while True:
            raw = await operator.paste(expire=False)  # the expiry counts from arm
            if raw is None:
                raise Closed("no more keys: the input ended")
            attempt, closing = await self.attempt(session, raw)
            del raw
            session.answer(attempt)
            if closing is not None:
                raise closing
            if attempt.final:
                assert attempt.report is not None
                return attempt.report

    async def attempt(self, session: Keyed, raw: str | bytes | Secret) -> tuple[Attempt, Closed | None]:
        """One key: cleaned, probed and written; what became of it, and why the session closes (if it does)."""
        session.attempts += 1
        state = session.state
        try:
            clean = CleanKey(raw) if isinstance(raw, Secret) else clean_paste(raw, state.plan.secret.key_pattern)
        except KeyRejected as exc:
            message = f"the pasted key was rejected: {exc}; nothing was written"
            return await self._refused(
                session, Outcome.REJECTED, finish.not_written(state, message), message, detail=str(exc)
            )
        finally:
            del raw
        session.listener.key(clean)
        secret = clean.secret
        del clean
        try:
            if self.dry_run:
                report = await pipeline.dry_run(state, secret)
                return Attempt(Outcome.DRY_RUN, report.message, report, session.attempts_left, True), None
            report = await (self.steps or pipeline.rotate)(state, secret)
        except asyncio.CancelledError:
            raise  # shutdown ran out of time: the journal entry stays as it is (resumable)
        except Exception as exc:
            session.error = exc
            log.error("rotation failed", rotation=session.id, error=type(exc).__name__)
            # Disarming leaves a rotation whose key was journaled resumable.
            raise Closed(f"internal error ({type(exc).__name__})", resume=f"rotator resume {session.id}") from exc
        finally:
            del secret
        if report.exit_code == Exit.LOCK_LOST:  # another rotation holds the plan now (`fence`)
            session.report = report
            resume = f"rotator resume {session.id}" if report.state == RunState.PARTIAL else None
            written = Attempt(Outcome.WRITTEN, report.message, report, session.attempts_left, True)
            return written, Closed(report.message, resume)
        if report.state == RunState.REFUSED:
            return await self._refused(session, Outcome.REFUSED, report, report.message)
        if report.state == RunState.UNAVAILABLE:
            return await self._refused(
                session, Outcome.REFUSED, report, report.message, last=not self.unavailable_keeps_armed
            )
        return Attempt(Outcome.WRITTEN, report.message, report, session.attempts_left, True), None

    async def _refused(
        self,
        session: Keyed,
        outcome: Outcome,
        report: Report,
        message: str,
        *,
        last: bool = False,
        detail: str = "",
    ) -> tuple[Attempt, Closed | None]:
        """Nothing written: armed again for another key, or (no attempts left) journaled and closed."""
        final = last or session.attempts >= session.max_attempts
        attempt = Attempt(outcome, message, report, session.attempts_left, final, detail)
        session.last_refusal = attempt
        session.armed_watch.after_refusal(outcome, detail or message, watch_again=not final)
        if not final:
            session.rearm()
            session.listener.refused(attempt)
            return attempt, None
        await finish.abandon(session.state, report)
        session.listener.refused(attempt)
        return attempt, Closed(f"{session.attempts} keys refused" if not last else message)
