"""The journal: every rotation and sync, step by step, written ahead of each step.

Holds ids, fingerprints, versions, outcomes and timings, never a key.  SQLite
in the data directory by default; any SQLAlchemy URL (PostgreSQL for several
replicas) works the same.  After a crash it says exactly how far a rotation got.

The schema is created and migrated by rotator itself when a journal is opened:
`schema_version` holds one row per applied step of `MIGRATIONS`, applied in
one transaction under an advisory lock on PostgreSQL, so replicas starting at
once do not race (the second finds the work done).

The plan lock (one rotation or sync of a plan at a time) is a lease row in
`locks`.  On PostgreSQL the row only says who holds it and since when; the
lock itself is a session-level advisory lock on a connection the holder keeps
open, which PostgreSQL drops when the holder dies, on whatever host.  On
SQLite (one host) a row whose holder's pid is dead, or whose lease ran out,
is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event

from rotator import locks as pglocks

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
)

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

JOB_RUNS_KEEP = 7 * 86400.0  # seconds of claimed runs kept (pruned as new ones are claimed)

# States a rotation can be left in; the unfinished ones can be resumed.
UNFINISHED = ("armed", "key_accepted", "primary_written", "fanning_out")
FINISHED = ("done", "partial", "refused", "unavailable", "failed", "aborted", "conflict", "dry_run", "drift")


def data_dir() -> Path:
    env = os.environ.get("ROTATOR_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rotator"


def default_url() -> str:
    env = os.environ.get("ROTATOR_DB")
    if env:
        return env
    return f"sqlite:///{data_dir() / 'journal.db'}"


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 (SQLAlchemy would pick psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL: say nothing of it
        return "(unparsable URL)"


def replica_id() -> str:
    """This process, as other replicas see it."""
    return f"{socket.gethostname()}:{os.getpid()}"


class SchemaTooNew(RuntimeError):
    pass


class LockHeld(Exception):
    def __init__(self, plan: str, holder: str, host: str, pid: int, since: float) -> None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        utc = time.strftime("%H:%M:%SZ", time.gmtime(since))
        super().__init__(f"plan {plan} is locked by {holder} (pid {pid} on {host}) since {when} ({utc})")
        self.plan = plan
        self.holder = holder
        self.host = host
        self.pid = pid
        self.since = since

    def as_dict(self) -> dict[str, Any]:
        return {"plan": self.plan, "holder": self.holder, "host": self.host, "pid": self.pid, "since": self.since}


@dataclass
class RotationRow:
    id: str
    kind: str
    plan: str
    plan_path: str
    reason: str
    operator: str
    state: str
    created_at: float
    key_received_at: float | None
    finished_at: float | None
    old_fp: str | None
    new_fp: str | None
    primary_version: str | None
    window_s: float | None
    exit_code: int | None
    report: dict[str, Any] | None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def event_row(
    rid: str,
    step: str,
    status: str,
    *,
    target: str = "",
    detail: str = "",
    fingerprint: str | None = None,
    version: str | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """One journal event, timestamped now (when it happened, not when it is written)."""
    return {
        "rotation_id": rid,
        "ts": time.time(),
        "step": step,
        "target": target,
        "status": status,
        "detail": detail[:2000],
        "fingerprint": fingerprint,
        "version": version,
        "seconds": seconds,
    }


def new_id() -> str:
    """Sortable and unique: time first, then randomness."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


# -- schema ----------------------------------------------------------------
def _v1(c: sa.Connection) -> None:
    """The journal of the first versioned release.  Adopts the tables an unversioned
    rotator made (they are the same).  When a later step changes a table, this one
    must keep creating the table as it was in version 1."""
    metadata.create_all(c, tables=[rotations, events, locks, job_runs], checkfirst=True)


# (version, what it does, step): applied in order, each once, on every open.
MIGRATIONS: list[tuple[int, str, Callable[[sa.Connection], None]]] = [
    (1, "rotations, events, locks, job_runs", _v1),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def migrate(engine: sa.Engine) -> int:
    """Bring the schema to `SCHEMA_VERSION`; returns it.  Idempotent.  On
    PostgreSQL every step runs in one transaction holding an advisory lock, so
    replicas starting at once wait for each other and the second finds nothing
    to do; SQLite has no such lock, so a process that loses a race retries."""
    postgres = pglocks.is_postgres(engine)
    for attempt in range(10):
        try:
            with engine.begin() as c:
                if postgres:
                    pglocks.xact_lock(c, "schema")
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
                            schema_version.insert().values(
                                version=version, description=description, applied_at=time.time()
                            )
                        )
            return SCHEMA_VERSION
        except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError):
            if postgres or attempt == 9:
                raise
            time.sleep(0.05 * (attempt + 1))  # another process is creating the same tables
    raise AssertionError("unreachable")


def ensure_tables(engine: sa.Engine, *tables: sa.Table) -> None:
    """Create tables kept by others in the journal's database (APScheduler's job
    store) under the same lock as `migrate`, so replicas never race on them."""
    for attempt in range(10):
        try:
            with engine.begin() as c:
                if pglocks.is_postgres(engine):
                    pglocks.xact_lock(c, "schema")
                for t in tables:
                    t.create(c, checkfirst=True)
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            if pglocks.is_postgres(engine) or attempt == 9:
                raise
            time.sleep(0.05 * (attempt + 1))


# -- scheduled runs --------------------------------------------------------
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


def _text(values: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL text cannot hold NUL; no journal field needs one."""
    return {k: v.replace("\x00", "") if isinstance(v, str) else v for k, v in values.items()}


class Journal:
    def __init__(self, url: str | None = None) -> None:
        self.url = normalize_url(url or default_url())
        if self.url.startswith("sqlite:///"):
            path = Path(self.url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                path.touch(mode=0o600)
        postgres = self.url.startswith("postgresql")
        self.engine = sa.create_engine(self.url, pool_pre_ping=postgres)
        if self.engine.dialect.name == "sqlite":
            sa_event.listen(self.engine, "connect", _sqlite_pragmas)
        self.schema_version = migrate(self.engine)
        self.host = socket.gethostname()
        # PostgreSQL: plan locks are advisory locks on connections of their own.
        self._lock_engine = pglocks.lock_engine(self.engine.url) if pglocks.is_postgres(self.engine) else None
        self._held: dict[str, tuple[str, pglocks.SessionLock]] = {}
        self._held_mutex = threading.Lock()

    # -- rotations -------------------------------------------------------
    def begin(self, *, kind: str, plan: str, plan_path: str, reason: str, operator: str, old_fp: str | None) -> str:
        rid = new_id()
        with self.engine.begin() as c:
            c.execute(
                rotations.insert().values(
                    **_text(
                        {
                            "id": rid,
                            "kind": kind,
                            "plan": plan,
                            "plan_path": plan_path,
                            "reason": reason,
                            "operator": operator,
                            "state": "armed",
                            "created_at": time.time(),
                            "old_fp": old_fp,
                        }
                    )
                )
            )
        return rid

    def update(self, rid: str, **values: Any) -> None:
        if "report" in values and not isinstance(values["report"], str | None):
            values["report"] = json.dumps(values["report"], default=str)
        with self.engine.begin() as c:
            c.execute(rotations.update().where(rotations.c.id == rid).values(**_text(values)))

    def record(self, rid: str, step: str, status: str, **fields: Any) -> None:
        """One event (fields as `event_row` takes them)."""
        self.record_many([event_row(rid, step, status, **fields)])

    def record_many(self, rows: list[dict[str, Any]]) -> None:
        """Several events in one transaction (one executemany)."""
        if rows:
            with self.engine.begin() as c:
                c.execute(events.insert(), [_text(r) for r in rows])

    def get(self, rid: str) -> RotationRow | None:
        with self.engine.connect() as c:
            row = c.execute(rotations.select().where(rotations.c.id == rid)).mappings().first()
            if row is None:
                # Allow a unique prefix, as git does.
                rows = (
                    c.execute(rotations.select().where(rotations.c.id.startswith(rid, autoescape=True)))
                    .mappings()
                    .all()
                )
                if len(rows) != 1:
                    return None
                row = rows[0]
        return _row(row)

    def events(self, rid: str, after: int = 0) -> list[dict[str, Any]]:
        """The rotation's events in order; `after`: only those with a greater id."""
        q = events.select().where(events.c.rotation_id == rid, events.c.id > after).order_by(events.c.id)
        with self.engine.connect() as c:
            rows = c.execute(q).mappings().all()
        return [dict(r) for r in rows]

    def history(self, plan: str | None = None, limit: int = 20) -> list[RotationRow]:
        q = rotations.select().order_by(rotations.c.created_at.desc()).limit(limit)
        if plan:
            q = q.where(rotations.c.plan == plan)
        with self.engine.connect() as c:
            return [_row(r) for r in c.execute(q).mappings().all()]

    def unfinished(self, plan: str) -> list[RotationRow]:
        q = (
            rotations.select()
            .where(rotations.c.plan == plan, rotations.c.state.in_(("primary_written", "fanning_out", "partial")))
            .order_by(rotations.c.created_at.desc())
        )
        with self.engine.connect() as c:
            return [_row(r) for r in c.execute(q).mappings().all()]

    def last_success(self, plan: str, kind: str = "rotate") -> RotationRow | None:
        q = (
            rotations.select()
            .where(rotations.c.plan == plan, rotations.c.kind == kind, rotations.c.state == "done")
            .order_by(rotations.c.finished_at.desc())
            .limit(1)
        )
        with self.engine.connect() as c:
            r = c.execute(q).mappings().first()
        return _row(r) if r else None

    # -- locks -----------------------------------------------------------
    def acquire(self, plan: str, holder: str, lease: float = 600.0) -> None:
        """One rotation or sync of a plan at a time; the same holder again renews.
        PostgreSQL: held while this process keeps the lock's connection, released
        when it dies.  SQLite: a lock whose holder died on this host, or whose
        lease ran out, is taken over."""
        if self._lock_engine is not None:
            self._acquire_pg(plan, holder, lease)
            return
        now = time.time()
        with self.engine.begin() as c:
            row = c.execute(locks.select().where(locks.c.plan == plan)).mappings().first()
            if row is not None:
                stale = row["lease_until"] < now or (row["host"] == self.host and not _pid_alive(row["pid"]))
                # The same holder in another live process (a `resume` of a rotation that is
                # still running) must wait like anyone else.
                mine = row["holder"] == holder and row["host"] == self.host and row["pid"] == os.getpid()
                if not stale and not mine:
                    raise LockHeld(plan, row["holder"], row["host"], row["pid"], row["acquired_at"])
                c.execute(locks.delete().where(locks.c.plan == plan, locks.c.holder == row["holder"]))
            try:
                c.execute(
                    locks.insert().values(
                        plan=plan,
                        holder=holder,
                        host=self.host,
                        pid=os.getpid(),
                        acquired_at=now,
                        lease_until=now + lease,
                    )
                )
            except sa.exc.IntegrityError:
                other = c.execute(locks.select().where(locks.c.plan == plan)).mappings().first()
                if other is None:
                    raise
                raise LockHeld(plan, other["holder"], other["host"], other["pid"], other["acquired_at"]) from None

    def _acquire_pg(self, plan: str, holder: str, lease: float) -> None:
        now = time.time()
        with self._held_mutex:
            mine = self._held.get(plan)
            if mine is not None and mine[0] == holder:
                if mine[1].alive():
                    with self.engine.begin() as c:
                        c.execute(
                            locks.update()
                            .where(locks.c.plan == plan, locks.c.holder == holder)
                            .values(lease_until=now + lease)
                        )
                    return
                # The lock's session ended (database restart, network): another
                # replica may hold the plan now; take it again only if it is free.
                del self._held[plan]
                mine[1].release()
            assert self._lock_engine is not None
            got = pglocks.SessionLock.try_acquire(self._lock_engine, plan_lock_key(plan))
            if got is not None:
                self._record_lock(plan, holder, got, now, lease)
                return
        raise self._lock_held(plan)  # outside the mutex: it may wait for the holder's row

    def _record_lock(self, plan: str, holder: str, got: pglocks.SessionLock, now: float, lease: float) -> None:
        try:
            with self.engine.begin() as c:
                c.execute(locks.delete().where(locks.c.plan == plan))  # a dead holder's row
                c.execute(
                    locks.insert().values(
                        plan=plan,
                        holder=holder,
                        host=self.host,
                        pid=os.getpid(),
                        acquired_at=now,
                        lease_until=now + lease,
                    )
                )
        except BaseException:
            got.release()
            raise
        self._held[plan] = (holder, got)

    def _lock_held(self, plan: str) -> LockHeld:
        # The holder writes its row just after taking the lock: give it a moment.
        for _ in range(40):
            row = self.lock_row(plan)
            if row is not None:
                return LockHeld(plan, row["holder"], row["host"], row["pid"], row["acquired_at"])
            time.sleep(0.025)
        return LockHeld(plan, "another replica", "an unknown host", 0, time.time())

    def lock_row(self, plan: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(locks.select().where(locks.c.plan == plan)).mappings().first()
        return dict(row) if row else None

    def lock_info(self, plan: str) -> dict[str, Any] | None:
        """Who holds the plan's lock and since when, and whether that holder is
        alive (PostgreSQL: its session still holds the advisory lock); None if nobody."""
        row = self.lock_row(plan)
        if row is None:
            return None
        if self._lock_engine is not None:
            with self.engine.connect() as c:
                alive = pglocks.held_by_anyone(c, plan_lock_key(plan))
        else:
            alive = row["lease_until"] >= time.time() and (row["host"] != self.host or _pid_alive(row["pid"]))
        return {
            "plan": plan,
            "holder": row["holder"],
            "host": row["host"],
            "pid": row["pid"],
            "since": row["acquired_at"],
            "alive": alive,
        }

    def release(self, plan: str, holder: str) -> None:
        if self._lock_engine is not None:
            with self._held_mutex:
                mine = self._held.get(plan)
                if mine is None or mine[0] != holder:
                    return  # not ours: the row belongs to a live holder elsewhere, or to nobody
                del self._held[plan]
            try:
                with self.engine.begin() as c:
                    c.execute(locks.delete().where(locks.c.plan == plan, locks.c.holder == holder))
            finally:
                mine[1].release()
            return
        with self.engine.begin() as c:
            c.execute(locks.delete().where(locks.c.plan == plan, locks.c.holder == holder))

    def close(self) -> None:
        with self._held_mutex:
            held, self._held = list(self._held.values()), {}
        for _, lock in held:
            lock.release()
        if self._lock_engine is not None:
            self._lock_engine.dispose()
        self.engine.dispose()


def plan_lock_key(plan: str) -> int:
    return pglocks.advisory_key("plan:" + plan)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL + NORMAL: a commit survives a killed process without an fsync each,
    # which keeps write-ahead journaling off the window's critical path.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def _row(r: Any) -> RotationRow:
    d = dict(r)
    report = d.get("report")
    d["report"] = json.loads(report) if report else None
    return RotationRow(**d)
