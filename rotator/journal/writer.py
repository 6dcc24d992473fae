"""Writes a rotation's journal off the event loop, in order, in batches.

One thread does every journal write, so records land in the order they were
made.  Events are queued and written in batches: whatever arrives while the
previous batch is being committed goes into the next transaction.  A 200-target
fan-out then costs a handful of commits instead of 200 (each insert holds the
GIL that the event loop needs), while every target's outcome still reaches the
journal within moments of happening, so after a crash it says how far the
rotation got.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from rotator.journal.store import Journal, event_row
from rotator.logs import get_logger

T = TypeVar("T")
log = get_logger("rotator.journal")


class JournalWriter:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rotator-journal")
        self._lock = threading.Lock()
        self._queued: list[dict[str, Any]] = []
        self._flush_scheduled = False

    async def call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run `fn` on the journal thread after every event queued before it; wait for it."""
        self._schedule_flush()
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: fn(*args, **kw))

    async def update(self, rid: str, **values: Any) -> None:
        """The rotation's row and every event queued before it, in one transaction; wait for it.

        The queue is taken here, on the loop: a flush already submitted then finds it
        empty, and one already running commits first (one thread, in order).
        """
        write = functools.partial(self.journal.update, rid, with_events=self._take(), **values)
        await asyncio.get_running_loop().run_in_executor(self._thread, write)

    def event(self, rid: str, step: str, status: str, **fields: Any) -> None:
        """Queue one event; it is written with the next batch."""
        row = event_row(rid, step, status, **fields)
        with self._lock:
            self._queued.append(row)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        with self._lock:
            if self._flush_scheduled or not self._queued:
                return
            self._flush_scheduled = True
        self._thread.submit(self._flush)

    def _take(self) -> list[dict[str, Any]]:
        """Every queued event, in order; the queue is left empty."""
        with self._lock:
            rows, self._queued = self._queued, []
            self._flush_scheduled = False
        return rows

    def _flush(self) -> None:
        rows = self._take()
        try:
            self.journal.record_many(rows)
        except Exception as exc:  # noqa: BLE001 - a lost event must not stop the rotation
            log.warning("journal events not written", count=len(rows), error=type(exc).__name__)

    async def drain(self) -> None:
        """Wait until every queued event is written."""
        await self.call(lambda: None)

    def close(self) -> None:
        self._schedule_flush()
        self._thread.shutdown(wait=True)
