"""The journal: every rotation and sync, step by step, written ahead of each step.

Holds ids, fingerprints, versions, outcomes and timings, never a key.  SQLite
in the data directory by default; any SQLAlchemy URL (PostgreSQL for several
replicas) works the same.  After a crash it says exactly how far a rotation got.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event

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


class LockHeld(Exception):
    def __init__(self, plan: str, holder: str, host: str, pid: int, since: float) -> None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        super().__init__(f"plan {plan} is locked by {holder} (pid {pid} on {host}) since {when}")
        self.holder = holder


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


def new_id() -> str:
    """Sortable and unique: time first, then randomness."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


class Journal:
    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_url()
        if self.url.startswith("sqlite:///"):
            path = Path(self.url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                path.touch(mode=0o600)
        self.engine = sa.create_engine(self.url, future=True)
        if self.engine.dialect.name == "sqlite":
            sa_event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        self.host = socket.gethostname()

    # -- rotations -------------------------------------------------------
    def begin(self, *, kind: str, plan: str, plan_path: str, reason: str, operator: str, old_fp: str | None) -> str:
        rid = new_id()
        with self.engine.begin() as c:
            c.execute(
                rotations.insert().values(
                    id=rid,
                    kind=kind,
                    plan=plan,
                    plan_path=plan_path,
                    reason=reason,
                    operator=operator,
                    state="armed",
                    created_at=time.time(),
                    old_fp=old_fp,
                )
            )
        return rid

    def update(self, rid: str, **values: Any) -> None:
        if "report" in values and not isinstance(values["report"], str | None):
            values["report"] = json.dumps(values["report"], default=str)
        with self.engine.begin() as c:
            c.execute(rotations.update().where(rotations.c.id == rid).values(**values))

    def record(
        self,
        rid: str,
        step: str,
        status: str,
        *,
        target: str = "",
        detail: str = "",
        fingerprint: str | None = None,
        version: str | None = None,
        seconds: float | None = None,
    ) -> None:
        with self.engine.begin() as c:
            c.execute(
                events.insert().values(
                    rotation_id=rid,
                    ts=time.time(),
                    step=step,
                    target=target,
                    status=status,
                    detail=detail[:2000],
                    fingerprint=fingerprint,
                    version=version,
                    seconds=seconds,
                )
            )

    def get(self, rid: str) -> RotationRow | None:
        with self.engine.connect() as c:
            row = c.execute(rotations.select().where(rotations.c.id == rid)).mappings().first()
            if row is None:
                # Allow a unique prefix, as git does.
                rows = c.execute(rotations.select().where(rotations.c.id.like(f"{rid}%"))).mappings().all()
                if len(rows) != 1:
                    return None
                row = rows[0]
        return _row(row)

    def events(self, rid: str) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(events.select().where(events.c.rotation_id == rid).order_by(events.c.id)).mappings().all()
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
        """One rotation or sync of a plan at a time.  A lock whose holder died on
        this host, or whose lease ran out, is taken over."""
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

    def release(self, plan: str, holder: str) -> None:
        with self.engine.begin() as c:
            c.execute(locks.delete().where(locks.c.plan == plan, locks.c.holder == holder))

    def close(self) -> None:
        self.engine.dispose()


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
