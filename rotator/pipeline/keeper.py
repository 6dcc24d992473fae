"""The keeper of an armed session: while it waits for its key, keep the probe's connection
warm, renew the plan lock's lease (every `keep_warm_every` seconds), honour a close asked for
through the journal, and close the session when no key came before `expires_at`.

Every `LOCK_CHECK_EVERY` seconds it reads whether someone asked to close the session (the
page of another replica: the operator waits for it), and between the keep-warm rounds it
checks that the session still holds its plan (one `SELECT 1` on the lock's own
connection): after a PostgreSQL restart it takes the lock again before another replica
can, or, when another rotation took the plan meanwhile, closes the session and says so,
so that no operator is asked to reset a key for a rotation that can no longer write it."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from rotator.journal import LockHeld, LockLost
from rotator.logs import get_logger
from rotator.pipeline import arm
from rotator.pipeline.session_types import Status
from rotator.report import Step

if TYPE_CHECKING:
    from rotator.journal import Journal
    from rotator.pipeline.ask import ResetAsk
    from rotator.pipeline.state import RotationState

log = get_logger("rotator.session")

LOCK_CHECK_EVERY = 2.0  # seconds between checks that an armed session still holds its plan, or is asked to close
CLOSE_STEP = Step.CLOSE  # journal: `requested` by someone who does not hold the session (the page of another replica)


def close_requested(journal: Journal, rid: str) -> str | None:
    """Why someone asked (through the journal) for this armed rotation to be closed, if anyone did.
    The holder's keeper reads it every `LOCK_CHECK_EVERY` seconds: one small query."""
    for e in journal.events(rid):
        if e.get("step") == CLOSE_STEP and e.get("status") == "requested":
            return str(e.get("detail") or "closed on request")
    return None


class Kept(Protocol):
    """What the keeper reads of its session (`pipeline.session.ArmedSession`)."""

    @property
    def id(self) -> str: ...
    @property
    def state(self) -> RotationState: ...
    @property
    def status(self) -> Status: ...
    @property
    def keep_warm_every(self) -> float: ...
    @property
    def expires_at(self) -> float | None: ...
    @property
    def arm_timeout(self) -> float | None: ...
    @property
    def asking(self) -> ResetAsk | None: ...

    async def close(self, why: str) -> None: ...


class Keeper:
    """One session's keeper task: `start` while armed, `stop` once a key arrives or it ends."""

    def __init__(self, session: Kept) -> None:
        self.session = session
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._keep_armed())

    def stop(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None

    async def _keep_armed(self) -> None:
        """While it waits for its key: keep the probe's connection warm, renew the
        lock's lease, and close the session when no key came in time."""
        s = self.session
        next_warm = time.monotonic() + s.keep_warm_every
        while s.status is Status.ARMED:
            wait = max(0.0, min(LOCK_CHECK_EVERY, next_warm - time.monotonic()))
            if s.expires_at is not None:
                wait = min(wait, s.expires_at - time.time())
                if wait <= 0:
                    since = f"of the ask to reset {s.asking.app}" if s.asking is not None else "of arming"
                    await s.close(f"no key within {s.arm_timeout:.0f}s {since}")
                    return
            await asyncio.sleep(wait)
            if s.status is not Status.ARMED:
                return
            if (asked := await self._close_asked()) is not None:
                await s.close(asked)
                return
            if time.monotonic() < next_warm:
                if await self._lock_lost():
                    return
                continue
            next_warm = time.monotonic() + s.keep_warm_every
            try:
                await arm.keep_warm(s.state)
            except (LockHeld, LockLost) as exc:
                # Our hold on the plan ended (database connection lost) and someone
                # else has it now: this rotation must not take a key.
                await self._closed_for(exc)
                return
            except Exception as exc:  # noqa: BLE001 - keeping warm is best effort
                log.warning("keep-warm failed", rotation=s.id, error=type(exc).__name__)

    async def _close_asked(self) -> str | None:
        """Why someone who does not hold this session (another replica's page) asked to close it, if anyone did."""
        s = self.session
        try:
            return await s.state.journal_call(close_requested, s.state.journal, s.id)
        except Exception as exc:  # noqa: BLE001 - the journal is retried at the next round
            log.warning("close-request check failed", rotation=s.id, error=type(exc).__name__)
            return None

    async def _lock_lost(self) -> bool:
        """Check the session still holds its plan; close it (True) when it does not."""
        s = self.session
        if not s.state.locked:
            return False
        try:
            await s.state.journal_call(s.state.journal.verify_lock, s.state.plan.name, s.id)
        except LockLost as exc:
            await self._closed_for(exc)
            return True
        except Exception as exc:  # noqa: BLE001 - the database is away: nobody can take the plan meanwhile
            log.warning("plan lock check failed", rotation=s.id, error=type(exc).__name__)
        return False

    async def _closed_for(self, exc: LockHeld | LockLost) -> None:
        s = self.session
        log.error("plan lock lost", rotation=s.id, why=str(exc))
        s.state.locked = False  # not ours: disarm must not release another rotation's lock
        await s.close(f"lost the plan's lock: {exc}")
