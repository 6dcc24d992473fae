"""The single-app flow's key attempts: what an armed session does with each key offered to it.

    offer(key) ──clean──▶ probe ──accepted──▶ write everywhere ──▶ FINISHED
                  │          └──refused / unchecked──▶ still armed (attempts left) or CLOSED
                  └──not a key──▶ a rejected paste: counted, still armed

A paste that is not a key, a key the API refuses, and (on the page) a key the probe
could not check leave the session armed for another, up to `max_attempts`; the last
refusal closes it and journals why.  A dry run probes and writes nothing.  The session
(`pipeline.session.ArmedSession`) keeps the lifecycle (arm, keep-warm, expiry, close);
this is the flow it runs on each offered key, through its public members only.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from rotator import pipeline
from rotator.exitcodes import Exit
from rotator.logs import get_logger
from rotator.pipeline import finish
from rotator.pipeline.session_types import Attempt, Outcome, Status
from rotator.report import RunState
from rotator.secret import CleanKey, KeyRejected, Secret, clean_paste

if TYPE_CHECKING:
    from rotator.pipeline.armed_watch import ArmedWatch
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

    @property
    def id(self) -> str: ...
    @property
    def state(self) -> RotationState: ...
    @property
    def listener(self) -> Listener: ...
    @property
    def attempts_left(self) -> int: ...

    def rearm(self) -> None: ...

    async def end(self, status: Status, why: str, resume: str | None = None) -> None: ...


class SingleFlow:
    """Each key offered: cleaned, probed, written by `pipeline.rotate` (or only probed: `dry_run`)."""

    what = "rotate"

    def __init__(self, *, dry_run: bool = False, unavailable_keeps_armed: bool = True) -> None:
        self.dry_run = dry_run
        # A key the probe could not check: ask again (the page) or stop with its exit code (the terminal).
        self.unavailable_keeps_armed = unavailable_keeps_armed

    async def attempt(self, session: Keyed, raw: str | bytes | Secret) -> Attempt:
        """One key offered to `session`: cleaned, probed and written; what became of it."""
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
                return await self._over_with(
                    session, Attempt(Outcome.DRY_RUN, report, report.message, session.attempts_left, True)
                )
            report = await pipeline.rotate(state, secret)
        except asyncio.CancelledError:
            # Shutdown ran out of time: leave the journal entry as it is (resumable).
            raise
        except Exception as exc:
            session.error = exc
            why = f"internal error ({type(exc).__name__})"
            log.error("rotation failed", rotation=session.id, error=type(exc).__name__)
            # Disarming leaves a rotation whose key was journaled resumable.
            await session.end(Status.CLOSED, why, resume=f"rotator resume {session.id}")
            raise
        finally:
            del secret
        if report.exit_code == Exit.LOCK_LOST:  # another rotation holds the plan now (`fence`)
            session.report = report
            resume = f"rotator resume {session.id}" if report.state == RunState.PARTIAL else None
            await session.end(Status.CLOSED, report.message, resume=resume)
            return Attempt(Outcome.WRITTEN, report, report.message, session.attempts_left, True)
        if report.state == RunState.REFUSED:
            return await self._refused(session, Outcome.REFUSED, report, report.message)
        if report.state == RunState.UNAVAILABLE:
            return await self._refused(
                session, Outcome.REFUSED, report, report.message, last=not self.unavailable_keeps_armed
            )
        return await self._over_with(
            session, Attempt(Outcome.WRITTEN, report, report.message, session.attempts_left, True)
        )

    async def _refused(
        self,
        session: Keyed,
        outcome: Outcome,
        report: Report,
        message: str,
        *,
        last: bool = False,
        detail: str = "",
    ) -> Attempt:
        """Nothing written: keep it armed for another key, or (no attempts left) close it."""
        final = last or session.attempts >= session.max_attempts
        attempt = Attempt(outcome, report, message, session.attempts_left, final, detail)
        session.last_refusal = attempt
        session.armed_watch.after_refusal(outcome, detail or message, watch_again=not final)
        if final:
            await finish.abandon(session.state, report)
            session.listener.refused(attempt)
            await session.end(Status.CLOSED, f"{session.attempts} keys refused" if not last else message)
        else:
            session.rearm()
            session.listener.refused(attempt)
        return attempt

    async def _over_with(self, session: Keyed, attempt: Attempt) -> Attempt:
        session.report = attempt.report
        session.listener.finished(attempt.report)
        await session.end(Status.FINISHED, "")
        return attempt
