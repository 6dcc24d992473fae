"""The journal: every rotation and sync, step by step, written ahead of each step.

Holds ids, fingerprints, versions, outcomes and timings, never a key.  One job
per module:

- `schema`: the tables and their migrations (applied on every open, under a lock);
- `store`: `Journal`, rotations and their events;
- `writer`: `JournalWriter`, a rotation's ordered, batched writes off the event loop;
- `plan_lock`: one rotation or sync of a plan at a time, across replicas;
- `advisory`: PostgreSQL advisory locks (under plan locks, migrations, the scheduler);
- `run_claims`: scheduled runs claimed by exactly one replica;
- `urls`: where the journal is, and its URL with the password masked.
"""

from rotator.journal.advisory import (
    KEEPALIVE,
    SessionLock,
    advisory_key,
    exclusive,
    held_by_anyone,
    is_postgres,
    lock_engine,
    xact_lock,
)
from rotator.journal.plan_lock import LockHeld, LockLost, PlanLocks, plan_lock_key
from rotator.journal.run_claims import JOB_RUNS_KEEP, claim_run, replica_id, run_time_key
from rotator.journal.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SchemaTooNew,
    ensure_tables,
    events,
    job_runs,
    locks,
    metadata,
    migrate,
    rotations,
    schema_version,
)
from rotator.journal.store import FINISHED, Journal, RotationRow, event_row, new_id
from rotator.journal.urls import data_dir, default_url, normalize_url, safe_url
from rotator.journal.writer import JournalWriter

__all__ = [
    "FINISHED",
    "JOB_RUNS_KEEP",
    "KEEPALIVE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Journal",
    "JournalWriter",
    "LockHeld",
    "LockLost",
    "PlanLocks",
    "RotationRow",
    "SchemaTooNew",
    "SessionLock",
    "advisory_key",
    "claim_run",
    "data_dir",
    "default_url",
    "ensure_tables",
    "event_row",
    "events",
    "exclusive",
    "held_by_anyone",
    "is_postgres",
    "job_runs",
    "lock_engine",
    "locks",
    "metadata",
    "migrate",
    "new_id",
    "normalize_url",
    "plan_lock_key",
    "replica_id",
    "rotations",
    "run_time_key",
    "safe_url",
    "schema_version",
    "xact_lock",
]
