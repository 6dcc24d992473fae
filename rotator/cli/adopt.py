"""`rotator adopt PLAN [--set-at DATE]`: record an existing key's age in the journal.

A key rotator never rotated has no age in the journal.  Adopting it records one
(a journal entry of kind ``adopt``): the date given, or the one the primary itself
records for its value (Vault KV v2 `created_time`, the AWS version's `CreatedDate`).
From then on `status`, the page, /metrics and the reminders count from it, on every
replica and across restarts, until the next rotation.  Nothing is written to any
backend; the key itself is read once for its fingerprint and never kept.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from rotator.cli import output
from rotator.cli.context import Context, Fail, err
from rotator.cli.flow import load
from rotator.exitcodes import Exit


def parse_set_at(text: str) -> float:
    """A date (2026-01-31) or date and time (2026-01-31T09:00[:00][Z|+02:00]); a naive one is UTC."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Fail(
            f"--set-at {text!r} is not a date: give YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM]", Exit.PLAN_INVALID
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@click.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option("--set-at", "set_at", metavar="DATE", help="When the key was set (default: the primary's own record).")
@click.option("--reason", default="", help="Why (journaled).")
@output.json_option
@output.verbose_option
@click.pass_obj
def adopt(ctx: Context, plan_path: str, set_at: str | None, reason: str, as_json: bool) -> int:
    """Record the age of the key the plan's primary holds now (nothing is written to any backend)."""
    import asyncio

    from rotator.key_record import read_primary_record
    from rotator.pipeline.state import operator_name

    plan = load(plan_path)
    when = parse_set_at(set_at) if set_at else None
    try:
        record = asyncio.run(read_primary_record(plan))
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        raise Fail(
            f"cannot read the primary {plan.primary.name}: {type(exc).__name__}: {exc}", Exit.PREFLIGHT_FAILED
        ) from None
    if record.fingerprint is None:
        raise Fail(f"the primary {plan.primary.name} holds no key: nothing to adopt", Exit.PREFLIGHT_FAILED)
    source = "--set-at"
    if when is None:
        if record.set_at is None:
            raise Fail(f"{record.detail}: give the key's date with --set-at DATE", Exit.PLAN_INVALID)
        when, source = record.set_at, f"the primary's record ({plan.primary.name})"
    if when > time.time() + 300:
        raise Fail("--set-at is in the future: give the date the key was set", Exit.PLAN_INVALID)
    journal = ctx.journal
    rid = journal.begin(
        kind="adopt",
        plan=plan.name,
        plan_path=str(plan.path.resolve()),
        reason=reason or f"adopted: key set at {_utc(when)} (from {source})",
        operator=operator_name(),
        old_fp=record.fingerprint,
    )
    journal.update(
        rid, state="done", exit_code=0, new_fp=record.fingerprint, key_received_at=when, finished_at=time.time()
    )
    days = max(time.time() - when, 0.0) / 86400
    line = f"{plan.name}: key {record.fingerprint} adopted, set at {_utc(when)} (from {source}): {days:.1f} days old"
    if as_json:
        output.emit({"id": rid, "plan": plan.name, "fingerprint": record.fingerprint, "set_at": when, "source": source})
    else:
        err().print(line, markup=False)
    return 0


def _utc(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
