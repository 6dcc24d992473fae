"""The two APScheduler 3 parts the shared schedule needs (`scheduler.make_scheduler` builds them):
a job store that survives the database's errors, and an executor that runs a job only for the
scheduled times this replica claims.

They touch APScheduler 3 internals (`_do_submit_job`, `job._jobstore_alias`,
`_pending_futures`, `_run_job_error`): deliberate, for the claim per tick, and pinned by
`apscheduler<4`.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.executors.base import run_coroutine_job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.util import iscoroutinefunction_partial

from rotator.journal import claim_run
from rotator.logs import get_logger

if TYPE_CHECKING:
    import contextvars

log = get_logger("rotator.service.scheduler")


class SharedJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """The journal's database, shared by replicas.  APScheduler lets an error
    here escape its wake-up loop, which would stop the schedule for good."""

    def update_job(self, job: Any) -> None:
        try:
            super().update_job(job)
        except JobLookupError:
            log.info("job removed by another replica", job=job.id)
        except Exception as exc:  # noqa: BLE001 - the claim makes a repeated tick harmless
            log.warning("could not store the next run time", job=job.id, error=type(exc).__name__)

    def get_next_run_time(self) -> Any:
        try:
            return super().get_next_run_time()
        except Exception as exc:  # noqa: BLE001 - look again soon
            log.warning("job store unavailable", error=type(exc).__name__)
            return datetime.now(UTC) + timedelta(seconds=10)


class ClaimingExecutor(AsyncIOExecutor):  # type: ignore[misc]
    """Runs a rotator job (id starting with `prefix`) only for the scheduled times this
    replica (`me`) claims in `engine`'s `job_runs`; the job sees its time in `scheduled_for`."""

    def __init__(
        self, engine: Any, me: str, *, prefix: str, scheduled_for: contextvars.ContextVar[datetime | None]
    ) -> None:
        super().__init__()
        self.engine, self.me, self.prefix, self.scheduled_for = engine, me, prefix, scheduled_for

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        if not job.id.startswith(self.prefix) or not iscoroutinefunction_partial(job.func):
            super()._do_submit_job(job, run_times)
            return
        f = self._eventloop.create_task(self._claimed(job, run_times))
        f.add_done_callback(lambda done: self._done(job, done))
        self._pending_futures.add(f)

    async def _claimed(self, job: Any, run_times: list[datetime]) -> list[Any]:
        won = []
        for rt in run_times:
            try:
                if await asyncio.to_thread(claim_run, self.engine, job.id, rt, self.me):
                    won.append(rt)
                else:
                    log.info("scheduled run taken by another replica", job=job.id, run_time=rt.isoformat())
            except Exception as exc:  # noqa: BLE001 - unclaimed, not run: another replica may
                log.warning("could not claim a scheduled run", job=job.id, error=type(exc).__name__)
        if not won:
            return []
        self.scheduled_for.set(won[-1])  # this task's context: the job sees it
        return list(await run_coroutine_job(job, job._jobstore_alias, won, self._logger.name))

    def _done(self, job: Any, f: asyncio.Future[list[Any]]) -> None:
        self._pending_futures.discard(f)
        try:
            events = f.result()
        except BaseException:  # noqa: BLE001 - as APScheduler's own executor
            self._run_job_error(job.id, *sys.exc_info()[1:])
        else:
            self._run_job_success(job.id, events)


__all__ = ["ClaimingExecutor", "SharedJobStore"]
