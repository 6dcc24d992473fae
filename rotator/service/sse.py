"""Server-sent event streams of one rotation.

`held_stream`: a rotation armed in this replica, from its in-memory event log
(`sessions.Held`).  `journal_stream`: one held by another replica, followed
through the journal until it is finished or its replica is gone.  Every event's
data passes through `secret.scrub_data`.

Open streams are bounded (`StreamSlots`): `MAX_STREAMS_PER_TOKEN` per bearer token
and `MAX_STREAMS` in all; one more is refused with 429 and
a line saying so.  Each open stream costs a task and its buffers (3,000 unbounded
streams added ~90 MB and slowed a key request to 1.37 s).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from rotator.report import FINISHED
from rotator.secret import scrub_data

if TYPE_CHECKING:
    from rotator.service.core import Service
    from rotator.service.sessions import Held

JOURNAL_POLL = 0.5  # seconds between journal reads when following another replica's rotation
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
MAX_STREAMS_PER_TOKEN = 32  # a page tab holds one; a few dozen tabs and scripts per caller
MAX_STREAMS = 256  # in all, whoever asks


class StreamSlots:
    """Counts open event streams per caller and in all; `take` refuses past the limits."""

    def __init__(self, per_token: int = MAX_STREAMS_PER_TOKEN, total: int = MAX_STREAMS) -> None:
        self.per_token = per_token
        self.total = total
        self.open: dict[str, int] = {}

    @staticmethod
    def caller(authorization: str) -> str:
        """Who holds a stream: a digest of the bearer token (never the token itself)."""
        return hashlib.sha256(authorization.encode()).hexdigest()[:16]

    def refusal(self, caller: str) -> str | None:
        """Why one more stream for `caller` may not open (None: it may)."""
        if sum(self.open.values()) >= self.total:
            return f"too many open event streams ({self.total} in all): try again when some close"
        if self.open.get(caller, 0) >= self.per_token:
            return (
                f"too many open event streams for this token ({self.per_token}): close some "
                "(each page tab following a rotation holds one)"
            )
        return None

    def bounded(self, stream: AsyncIterator[bytes], caller: str) -> AsyncIterator[bytes]:
        """`stream`, counted while it lives: given back when it ends however it ends
        (finished, client gone, shutdown), or when it is dropped without ever starting."""
        self.open[caller] = self.open.get(caller, 0) + 1
        released = [False]

        def give_back() -> None:
            if released[0]:
                return
            released[0] = True
            left = self.open.get(caller, 0) - 1
            if left > 0:
                self.open[caller] = left
            else:
                self.open.pop(caller, None)

        async def run() -> AsyncIterator[bytes]:
            try:
                async for chunk in stream:
                    yield chunk
            finally:
                give_back()

        gen = run()
        weakref.finalize(gen, give_back)
        return gen


async def held_stream(held: Held, after: int) -> AsyncIterator[bytes]:
    """Every event after `after` (the Last-Event-ID), then new ones, then `end`."""
    yield b"retry: 2000\n\n"
    async for item in held.follow(after):
        if item is None:
            yield b": keep-alive\n\n"
            continue
        data = json.dumps(item, separators=(",", ":"))
        yield f"id: {item['seq']}\nevent: {item['type']}\ndata: {data}\n\n".encode()
    yield b"event: end\ndata: {}\n\n"


async def journal_stream(
    service: Service, rid: str, plan: str, after: int, heartbeat: float = 15.0
) -> AsyncIterator[bytes]:
    """A rotation held by another replica, followed through the journal: each event
    row as `journal` (id = the row's id, for Last-Event-ID), then `report` or
    `closed`, then `end`."""

    yield b"retry: 2000\n\n"
    last, quiet, gone = after, 0.0, 0
    while True:
        # The state first: a finished rotation's events are all written before its state.
        row = await asyncio.to_thread(service.journal.get, rid)
        rows = await asyncio.to_thread(service.journal.events, rid, last)
        for e in rows:
            last = e["id"]
            item = scrub_data({**e, "seq": e["id"], "type": "journal", "t": e["ts"]})
            yield f"id: {e['id']}\nevent: journal\ndata: {json.dumps(item, separators=(',', ':'))}\n\n".encode()
        if row is None:
            break
        if row.state in FINISHED:
            if row.report:
                data = scrub_data({"state": row.state, "report": row.report})
                yield f"event: report\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
            else:
                yield f"event: closed\ndata: {json.dumps({'reason': row.state})}\n\n".encode()
            break
        # Unfinished and nobody holds it (twice in a row: the lock is taken just after
        # the row is written): the replica that ran it is gone.
        where = await asyncio.to_thread(service.where, row)
        gone = 0 if where.get("alive") else gone + 1
        if gone >= 2:
            reason = "the replica that armed it is gone" + (
                "" if row.state == "armed" else f"; `rotator resume {rid}` finishes it"
            )
            yield f"event: closed\ndata: {json.dumps({'reason': reason, 'state': row.state})}\n\n".encode()
            break
        await asyncio.sleep(JOURNAL_POLL)
        quiet = 0.0 if rows else quiet + JOURNAL_POLL
        if quiet >= heartbeat:
            quiet = 0.0
            yield b": keep-alive\n\n"
    yield b"event: end\ndata: {}\n\n"
