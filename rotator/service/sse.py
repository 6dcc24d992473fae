"""Server-sent event streams of one rotation.

`held_stream`: a rotation armed in this replica, from its in-memory event log
(`sessions.Held`).  `journal_stream`: one held by another replica, followed
through the journal until it is finished or its replica is gone.  Every event's
data passes through `secret.scrub_data`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from rotator.report import FINISHED
from rotator.secret import scrub_data

if TYPE_CHECKING:
    from rotator.service.core import Service
    from rotator.service.sessions import Held

JOURNAL_POLL = 0.5  # seconds between journal reads when following another replica's rotation
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


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
