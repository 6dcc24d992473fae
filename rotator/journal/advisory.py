"""PostgreSQL advisory locks, for several replicas on one database.

A *session-level* advisory lock belongs to one database connection: it is held
until it is unlocked or the connection ends, and PostgreSQL ends the connection
of a process that dies (at once when the process is killed, after TCP keepalive
when its host disappears).  So a lock held by a replica that died is released
without anyone having to guess from leases or pids.

Each lock held for a while gets its own connection (outside the pool, in
autocommit so that it never sits idle in a transaction); short critical
sections (schema migration) use a transaction-level lock instead.

Its own module, not part of `plan_lock`: schema migration and the scheduler's
one-replica sections use these locks too, and know nothing of plans.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

# Server-side keepalive on a lock's connection: a holder whose host vanished
# (no FIN, no RST) is noticed after about idle + interval * count seconds.
KEEPALIVE = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (the same on every replica)."""
    digest = hashlib.sha256(b"rotator-lock-v1:" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def is_postgres(engine: sa.Engine) -> bool:
    return engine.dialect.name == "postgresql"


def lock_engine(url: sa.URL | str) -> sa.Engine:
    """An engine whose connections are never pooled: closing one ends the session
    (and any lock it held)."""
    return sa.create_engine(
        url,
        poolclass=sa.NullPool,
        connect_args={"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3},
    )


class SessionLock:
    """One session-level advisory lock on its own connection."""

    def __init__(self, conn: sa.Connection, key: int) -> None:
        self._conn = conn
        self.key = key
        self._mutex = threading.Lock()

    @classmethod
    def try_acquire(cls, engine: sa.Engine, key: int) -> SessionLock | None:
        """The lock, or None when another session holds it (never waits)."""
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            for name, value in KEEPALIVE.items():
                conn.execute(sa.text(f"SET {name} = {int(value)}"))
            got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return None
        return cls(conn, key)

    def alive(self) -> bool:
        """The connection (so the lock) is still there."""
        with self._mutex:
            if self._conn.closed:
                return False
            try:
                return bool(self._conn.execute(sa.text("SELECT 1")).scalar())
            except sa.exc.SQLAlchemyError:  # DBAPIError; PendingRollbackError once it failed
                return False

    def release(self) -> None:
        with self._mutex:
            if self._conn.closed:
                return
            try:
                self._conn.execute(sa.select(sa.func.pg_advisory_unlock(self.key)))
            except sa.exc.SQLAlchemyError:
                pass  # the connection is gone: so is the lock
            finally:
                self._conn.close()


def held_by_anyone(conn: sa.Connection, key: int) -> bool:
    """Whether some session holds the advisory lock `key` (read from pg_locks; takes nothing)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    q = sa.text(
        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"
    )
    return conn.execute(q, {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF}).first() is not None


def xact_lock(conn: sa.Connection, name: str) -> None:
    """Wait for the transaction-level advisory lock `name`; released at commit or rollback."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(advisory_key(name))))


@contextmanager
def exclusive(engine: sa.Engine, name: str) -> Iterator[Any]:
    """Run a block on one replica at a time (waits for the others).  A no-op on
    databases other than PostgreSQL, where one process is all there is."""
    if not is_postgres(engine):
        yield None
        return
    eng = lock_engine(engine.url)
    try:
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            key = advisory_key(name)
            conn.execute(sa.select(sa.func.pg_advisory_lock(key)))
            try:
                yield conn
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
    finally:
        eng.dispose()
