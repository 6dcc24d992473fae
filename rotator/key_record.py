"""What the primary itself records of when its current value was written.

Key age comes from the journal first (`rotator.key_age`); for a key rotator
never rotated nor adopted, the primary's own record is the next source of truth:
Vault KV v2's version `created_time`, the AWS version's `CreatedDate` (backends
whose `dates_its_value`); for an alternating plan, the slot record's `set_at` of the
active key (a promote rewrites the version, so its date is the promote's, not the
key's).  A backend that records nothing dates nothing: the age stays unknown rather
than guessed (an .env file's mtime dates the file, not the key).  `primary_record_of` is the
rule, shared by the service (`read_primary_record`) and `rotator status` (which has
read the primary already).
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
    from rotator.plugin import Backend, Slots

OWN_RECORD = "the primary's own record"
SLOT_RECORD = "the slot record"


@dataclass(frozen=True)
class PrimaryRecord:
    fingerprint: str | None  # of the value it holds now (None: it holds none)
    set_at: float | None  # Unix time its value was written, as it records it; None: it records none
    backend: str
    detail: str
    source: str = OWN_RECORD  # where `set_at` comes from, as status and the page word it


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


def primary_record_of(
    plan: Plan, backend: Backend, fingerprint: str | None, changed_at: str | None, slots: Slots | None = None
) -> PrimaryRecord:
    """What the primary records of its value's date: an alternating plan's slot record (the
    active slot's `set_at`, when the record describes the key it holds), else the backend's
    own date where it `dates_its_value`, else none.  An alternating primary's own date is the
    last slot write's (a re-key of the standby dates it too): never the active key's."""
    name = plan.primary.name
    if plan.alternating:
        active = slots.active if slots is not None else None
        if active is not None and active.app is not None and active.fingerprint == fingerprint:
            set_at = parse_time(active.set_at)
            if set_at is not None:
                detail = f"{name}'s slot record stores {active.app}'s key as set at {active.set_at}"
                return PrimaryRecord(fingerprint, set_at, name, detail, SLOT_RECORD)
        return PrimaryRecord(fingerprint, None, name, f"{name}'s slot record does not date its active key", SLOT_RECORD)
    set_at = parse_time(changed_at) if backend.dates_its_value else None
    if set_at is not None:
        return PrimaryRecord(fingerprint, set_at, name, f"{name} records its value as written at {changed_at}")
    return PrimaryRecord(fingerprint, None, name, f"{name} ({plan.primary.type}) records no date for its value")


async def read_primary_record(plan: Plan, timeout: float | None = None) -> PrimaryRecord:
    """Open the plan's primary, read it once (no key is logged or kept), close it."""
    settings = plan.primary
    ctx = PluginContext(max_threads=4)
    backend = backend_class(settings.type)(settings, ctx)
    wait = timeout or settings.timeout
    try:
        await asyncio.wait_for(backend.open(), wait)
        stored = await asyncio.wait_for(backend.read(), wait)
        slots = await asyncio.wait_for(backend.read_slots(), wait) if plan.alternating else None
    finally:
        try:
            await asyncio.wait_for(backend.close(), 5)
        finally:
            await ctx.aclose()
    fp = stored.secret.fingerprint if stored.secret else None
    return primary_record_of(plan, backend, fp, stored.changed_at, slots)
