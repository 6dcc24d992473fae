"""The plan lock: one rotation or sync of a plan at a time, across replicas.

The lock is a lease row in `locks`.  On PostgreSQL the row only says who holds
it and since when; the lock itself is a session-level advisory lock on a
connection the holder keeps open, which PostgreSQL drops when the holder dies,
on whatever host.  On SQLite (one host) a row whose holder's pid is dead, or
whose lease ran out, is taken over.

The row is also the lock's fencing token.  A PostgreSQL restart ends every
session, so every advisory lock: the holder then does not know whether another
replica took the plan meanwhile.  Anyone who takes the lock replaces the row, so
the holder takes the advisory lock again only when the row is still its own (same
holder, same `acquired_at`); otherwise the lock was lost (`LockLost`) and the
holder must stop.  `verify` checks this before each durable step.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import sqlalchemy as sa

from rotator.journal import advisory
from rotator.journal.schema import locks
from rotator.logs import get_logger

log = get_logger("rotator.journal")


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


class LockLost(Exception):
    """The holder's lock ended (its database session did) and another rotation took the
    plan meanwhile, or the holder does not hold it at all: it must write nothing more."""

    def __init__(self, plan: str, holder: str, why: str) -> None:
        super().__init__(f"rotation {holder} lost the lock of plan {plan}: {why}")
        self.plan = plan
        self.holder = holder
        self.why = why

    def as_dict(self) -> dict[str, Any]:
        return {"plan": self.plan, "holder": self.holder, "why": self.why}


def plan_lock_key(plan: str) -> int:
    return advisory.advisory_key("plan:" + plan)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PlanLocks:
    """The plan locks of one journal database (what `Journal.acquire` and friends use)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.host = socket.gethostname()
        # PostgreSQL: plan locks are advisory locks on connections of their own.
        self._lock_engine = advisory.lock_engine(engine.url) if advisory.is_postgres(engine) else None
        # plan -> (holder, its advisory lock, the `acquired_at` of its row: the fencing token)
        self._held: dict[str, tuple[str, advisory.SessionLock, float]] = {}
        self._held_mutex = threading.Lock()

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
                c.execute(locks.insert().values(self._row(plan, holder, now, lease)))
            except sa.exc.IntegrityError:
                other = c.execute(locks.select().where(locks.c.plan == plan)).mappings().first()
                if other is None:
                    raise
                raise LockHeld(plan, other["holder"], other["host"], other["pid"], other["acquired_at"]) from None

    def _row(self, plan: str, holder: str, now: float, lease: float) -> dict[str, Any]:
        return {
            "plan": plan,
            "holder": holder,
            "host": self.host,
            "pid": os.getpid(),
            "acquired_at": now,
            "lease_until": now + lease,
        }

    def _acquire_pg(self, plan: str, holder: str, lease: float) -> None:
        now = time.time()
        with self._held_mutex:
            mine = self._held.get(plan)
            if mine is not None and mine[0] == holder:
                self._keep_pg(plan, mine)
                with self.engine.begin() as c:
                    c.execute(
                        locks.update()
                        .where(locks.c.plan == plan, locks.c.holder == holder)
                        .values(lease_until=now + lease)
                    )
                return
            assert self._lock_engine is not None
            got = advisory.SessionLock.try_acquire(self._lock_engine, plan_lock_key(plan))
            if got is not None:
                self._record_lock(plan, holder, got, now, lease)
                return
        raise self._lock_held(plan)  # outside the mutex: it may wait for the holder's row

    def _keep_pg(self, plan: str, mine: tuple[str, advisory.SessionLock, float]) -> None:
        """Still ours (under `_held_mutex`): the lock's session is alive, or it ended (a
        database restart, the network) and nobody took the plan meanwhile (our row is
        untouched): then the advisory lock is taken again.  Else `LockLost`."""
        holder, lock, token = mine
        if lock.alive():
            return
        assert self._lock_engine is not None
        # A database still away raises here and keeps `mine` as it is: the next call tries again.
        got = advisory.SessionLock.try_acquire(self._lock_engine, plan_lock_key(plan))
        lock.release()  # its session is gone: this only closes the connection
        if got is None:
            del self._held[plan]
            other = self.lock_row(plan)
            who = f"{other['holder']} (pid {other['pid']} on {other['host']})" if other else "another rotation"
            raise LockLost(plan, holder, f"its database session ended and {who} holds the plan now")
        try:
            row = self.lock_row(plan)
        except BaseException:
            got.release()
            raise
        if row is None or row["holder"] != holder or abs(row["acquired_at"] - token) > 1e-6:
            got.release()
            del self._held[plan]
            who = f"{row['holder']} took it meanwhile" if row else "another rotation took it (and let it go) meanwhile"
            raise LockLost(plan, holder, f"its database session ended and {who}")
        self._held[plan] = (holder, got, token)
        log.warning("plan lock taken again after its database session ended; nobody held it meanwhile", plan=plan)

    def verify(self, plan: str, holder: str) -> None:
        """Before a durable step: `holder` still holds the plan (re-taken if the
        database restarted and nobody took it meanwhile); else `LockLost`."""
        if self._lock_engine is not None:
            with self._held_mutex:
                mine = self._held.get(plan)
                if mine is None or mine[0] != holder:
                    raise LockLost(plan, holder, "this process does not hold it")
                self._keep_pg(plan, mine)
            return
        row = self.lock_row(plan)
        if row is None or row["holder"] != holder or row["host"] != self.host or row["pid"] != os.getpid():
            who = f"{row['holder']} (pid {row['pid']} on {row['host']}) holds it" if row else "nobody holds it"
            raise LockLost(plan, holder, who)

    def _record_lock(self, plan: str, holder: str, got: advisory.SessionLock, now: float, lease: float) -> None:
        row = self._row(plan, holder, now, lease)
        try:
            with self.engine.begin() as c:
                # A dead holder's row, or one whose session ended (a database restart): replacing
                # it is what tells that holder it lost the lock (`_keep_pg`).
                c.execute(locks.delete().where(locks.c.plan == plan))
                c.execute(locks.insert().values(row))
        except BaseException:
            got.release()
            raise
        self._held[plan] = (holder, got, row["acquired_at"])

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
                alive = advisory.held_by_anyone(c, plan_lock_key(plan))
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
        """Release every lock this process holds and the lock engine."""
        with self._held_mutex:
            held, self._held = list(self._held.values()), {}
        for _, lock, _token in held:
            lock.release()
        if self._lock_engine is not None:
            self._lock_engine.dispose()
