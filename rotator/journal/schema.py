"""The journal's tables and the migrations that make them.

The schema is created and migrated by rotator itself when a journal is opened:
`schema_version` holds one row per applied step of `MIGRATIONS`, applied in
one transaction under an advisory lock on PostgreSQL, so replicas starting at
once do not race (the second finds the work done).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

from rotator.journal import advisory

T = TypeVar("T")

metadata = sa.MetaData()

rotations = sa.Table(
    "rotations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # rotate | sync
    sa.Column("plan", sa.String(200), nullable=False, index=True),
    sa.Column("plan_path", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("operator", sa.String(200), nullable=False, default=""),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("key_received_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("old_fp", sa.String(32)),
    sa.Column("new_fp", sa.String(32)),
    sa.Column("primary_version", sa.String(100)),
    sa.Column("window_s", sa.Float),
    sa.Column("exit_code", sa.Integer),
    sa.Column("report", sa.Text),
    # version 2: the outage (issue 12)
    sa.Column("reset_at", sa.Float),  # the old key's first refusal seen while armed
    sa.Column("outage_s", sa.Float),  # reset -> last consumer confirmed
    sa.Column("operator_s", sa.Float),  # reset -> the accepted key received
    sa.Column("refused_keys", sa.Integer),  # pastes refused before the accepted key
)
# Columns a later version added: version 1 creates `rotations` without them.
_V2_COLUMNS = ("reset_at", "outage_s", "operator_s", "refused_keys")

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rotation_id", sa.String(40), sa.ForeignKey("rotations.id"), nullable=False, index=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("step", sa.String(32), nullable=False),
    sa.Column("target", sa.String(200), nullable=False, default=""),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("fingerprint", sa.String(32)),
    sa.Column("version", sa.String(100)),
    sa.Column("seconds", sa.Float),
)

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("plan", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(40), nullable=False),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("lease_until", sa.Float, nullable=False),
)

# Scheduled runs claimed by a replica: the (job, scheduled time) primary key lets
# exactly one replica run each tick, and survives any replica's crash.
job_runs = sa.Table(
    "job_runs",
    metadata,
    sa.Column("job_id", sa.String(200), primary_key=True),
    sa.Column("run_time", sa.String(32), primary_key=True),  # UTC, ISO 8601 with microseconds
    sa.Column("replica", sa.String(300), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)


class SchemaTooNew(RuntimeError):
    pass


def _v1(c: sa.Connection) -> None:
    """The journal of the first versioned release.  Adopts the tables an unversioned
    rotator made (they are the same).  A fresh journal gets today's `rotations` here;
    each later step adds only the columns a version-1 table lacks, so both roads end
    at the same schema."""
    metadata.create_all(c, tables=[rotations, events, locks, job_runs], checkfirst=True)


def _v2(c: sa.Connection) -> None:
    """The outage beside the window: when the reset was seen, the outage, the operator's share,
    the refused pastes (nullable: older rows have none)."""
    existing = {col["name"] for col in sa.inspect(c).get_columns("rotations")}
    for name in _V2_COLUMNS:
        if name not in existing:
            col = rotations.c[name]
            kind = col.type.compile(dialect=c.dialect)
            c.execute(sa.text(f"ALTER TABLE rotations ADD COLUMN {name} {kind}"))


# (version, what it does, step): applied in order, each once, on every open.
MIGRATIONS: list[tuple[int, str, Callable[[sa.Connection], None]]] = [
    (1, "rotations, events, locks, job_runs", _v1),
    (2, "rotations: reset_at, outage_s, operator_s, refused_keys", _v2),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _under_schema_lock(
    engine: sa.Engine, work: Callable[[sa.Connection], T], retry_on: tuple[type[Exception], ...]
) -> T:
    """`work` in one transaction holding the schema's advisory lock on PostgreSQL, so
    replicas starting at once wait for each other.  SQLite has no such lock: a
    process that loses a race to create the same tables retries (10 times)."""
    postgres = advisory.is_postgres(engine)
    for attempt in range(10):
        try:
            with engine.begin() as c:
                if postgres:
                    advisory.xact_lock(c, "schema")
                return work(c)
        except retry_on:
            if postgres or attempt == 9:
                raise
            time.sleep(0.05 * (attempt + 1))  # another process is creating the same tables
    raise AssertionError("unreachable")


def migrate(engine: sa.Engine) -> int:
    """Bring the schema to `SCHEMA_VERSION`; returns it.  Idempotent; the second of
    several replicas starting at once finds nothing to do."""

    def apply(c: sa.Connection) -> int:
        schema_version.create(c, checkfirst=True)
        current = c.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the journal's schema is version {current}, newer than this rotator knows "
                f"({SCHEMA_VERSION}): upgrade rotator"
            )
        for version, description, step in MIGRATIONS:
            if version > current:
                step(c)
                c.execute(
                    schema_version.insert().values(version=version, description=description, applied_at=time.time())
                )
        return SCHEMA_VERSION

    return _under_schema_lock(engine, apply, (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError))


def ensure_tables(engine: sa.Engine, *tables: sa.Table) -> None:
    """Create tables kept by others in the journal's database (APScheduler's job
    store) under the same lock as `migrate`, so replicas never race on them."""

    def create(c: sa.Connection) -> None:
        for t in tables:
            t.create(c, checkfirst=True)

    _under_schema_lock(engine, create, (sa.exc.OperationalError, sa.exc.ProgrammingError))
