"""What the primary itself records of when its current value was written.

Key age comes from the journal first (`rotator.service.key_age`); for a key rotator
never rotated nor adopted, the primary's own record is the next source of truth:
Vault KV v2's version `created_time`, the AWS version's `CreatedDate` (backends
whose `dates_its_value`).  A backend that records nothing dates nothing: the age
stays unknown rather than guessed (an .env file's mtime dates the file, not the key).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from rotator.plugin import PluginContext
from rotator.registry import backend_class

if TYPE_CHECKING:
    from rotator.plan import Plan


@dataclass(frozen=True)
class PrimaryRecord:
    fingerprint: str | None  # of the value it holds now (None: it holds none)
    set_at: float | None  # Unix time its value was written, as it records it; None: it records none
    backend: str
    detail: str


def parse_time(text: str | None) -> float | None:
    """An ISO 8601 time (a trailing Z, Vault's nanoseconds) as Unix time; None if it is not one."""
    if not text:
        return None
    t = text.strip().replace("Z", "+00:00")
    if "." in t:  # Vault: 2026-01-02T03:04:05.123456789+00:00 -> microseconds
        head, _, rest = t.partition(".")
        n = next((i for i, ch in enumerate(rest) if not ch.isdigit()), len(rest))
        digits, tz = rest[:n], rest[n:]
        t = f"{head}.{digits[:6]}{tz}"
    try:
        when = datetime.fromisoformat(t)
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


async def read_primary_record(plan: Plan, timeout: float | None = None) -> PrimaryRecord:
    """Open the plan's primary, read it once (no key is logged or kept), close it."""
    settings = plan.primary
    ctx = PluginContext(max_threads=4)
    backend = backend_class(settings.type)(settings, ctx)
    wait = timeout or settings.timeout
    try:
        await asyncio.wait_for(backend.open(), wait)
        stored = await asyncio.wait_for(backend.read(), wait)
    finally:
        try:
            await asyncio.wait_for(backend.close(), 5)
        finally:
            await ctx.aclose()
    fp = stored.secret.fingerprint if stored.secret else None
    set_at = parse_time(stored.changed_at) if backend.dates_its_value else None
    if set_at is not None:
        detail = f"{settings.name} records its value as written at {stored.changed_at}"
    else:
        detail = f"{settings.name} ({settings.type}) records no date for its value"
    return PrimaryRecord(fp, set_at, settings.name, detail)
