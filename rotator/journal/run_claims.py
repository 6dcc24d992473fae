"""Scheduled runs claimed by one replica: a tick runs once across every replica.

Named `run_claims`, not `job_runs`: a submodule of that name would shadow the
`job_runs` table that `rotator.journal` re-exports.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from rotator.journal.schema import job_runs

JOB_RUNS_KEEP = 7 * 86400.0  # seconds of claimed runs kept (pruned as new ones are claimed)


def replica_id() -> str:
    """This process, as other replicas see it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_time_key(run_time: datetime) -> str:
    return run_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim_run(engine: sa.Engine, job_id: str, run_time: datetime, replica: str | None = None) -> bool:
    """Claim one scheduled run (a job at its scheduled time) for this replica.
    True for exactly one caller across every replica, however many try."""
    now = time.time()
    values = {
        "job_id": job_id,
        "run_time": run_time_key(run_time),
        "replica": replica or replica_id(),
        "claimed_at": now,
    }
    with engine.begin() as c:
        if engine.dialect.name in ("postgresql", "sqlite"):
            from sqlalchemy.dialects import postgresql, sqlite

            insert: Any = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
            stmt = insert(job_runs).values(**values).on_conflict_do_nothing().returning(job_runs.c.job_id)
            won = c.execute(stmt).first() is not None
        else:
            try:
                with c.begin_nested():
                    c.execute(job_runs.insert().values(**values))
                won = True
            except sa.exc.IntegrityError:
                won = False
        if won:
            cutoff = run_time_key(datetime.fromtimestamp(now - JOB_RUNS_KEEP, UTC))
            c.execute(job_runs.delete().where(job_runs.c.job_id == job_id, job_runs.c.run_time < cutoff))
    return won
