"""`rotator status PLAN`: the terminal (and `--json`) face of `rotator.pipeline.status`.

Thin on purpose: the facts and the exit code come from `pipeline.status.collect`
(the service can call it too); this module only prints them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from rotator.cli import output
from rotator.cli.context import Context
from rotator.cli.flow import load

if TYPE_CHECKING:
    from rich.console import Console

    from rotator.pipeline.status import PlanStatus


@click.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@output.json_option
@output.verbose_option
@click.pass_obj
def status(ctx: Context, plan_path: str, as_json: bool) -> int:
    """Each backend's key, its age and drift, whether each key works (one probe per key), the lock.

    Exit 0 only when every key works and nothing drifted; 18 a key is refused, 8 drift,
    19 something could not be checked (see docs/reference/status.md)."""
    from rotator.pipeline.status import collect

    plan = load(plan_path)
    st = asyncio.run(collect(plan, ctx.journal))
    if as_json:
        output.emit(st.as_dict())
    else:
        from rich.console import Console

        show(Console(highlight=False, emoji=False, soft_wrap=True), st)
    return int(st.exit_code)


_STYLE = {"works": "green", "refused": "bold red", "could not check": "yellow"}


def show(out: Console, st: PlanStatus) -> None:
    from rich.markup import escape

    alt = st.alternating
    head = f"[bold]{escape(st.plan)}[/]: {st.strategy}"
    out.print(head + (f", active {escape(alt['active']['app'])}" if alt else ""))
    out.print("keys:")
    for k in st.keys:
        who = f"{k.role} ({escape(k.app)})" if k.app else k.role
        why = f": {escape(k.detail)}" if k.detail else ""
        out.print(
            f"  {who:<10} {k.fingerprint}  {_age(k.age_s)}  [{_STYLE[k.state.value]}]{k.state.value}[/]{why}"
            + (f"  (in {', '.join(k.held_by)})" if k.held_by and k.role == "other" else "")
        )
    if alt and alt["standby"]["fingerprint"] is None:
        out.print("  standby    (empty)")
    out.print(f"  probe calls: {st.probe_calls} (Adjutor bills each one)")
    out.print("backends:")
    for b in st.backends:
        if b.error:
            state = f"[yellow]could not read: {escape(b.error)}[/]"
        elif b.primary:
            state = "primary"
        else:
            state = "[bold red]DRIFT[/] (differs from the primary)" if b.drift else "in sync"
        out.print(f"  {escape(b.name):<14} {b.type:<10} {b.fingerprint or '(empty)':<16}  {_age(b.age_s)}  {state}")
    last = st.last_rotation
    if last:
        out.print(
            f"last rotation: {last['id']} ({last['kind']}, {last['state']}) "
            f"at {_clock(last['finished_at'] or last['started_at'])}"
        )
    else:
        out.print("last rotation: none in this journal")
    lock = st.lock
    if lock:
        live = "" if lock["alive"] else " (its holder is gone: the next rotation takes it over)"
        out.print(
            f"lock: held by {lock['holder']} (pid {lock['pid']} on {lock['host']}) since {_clock(lock['since'])}{live}"
        )
    else:
        out.print("lock: free")
    if alt:
        out.print(
            f"last slot change: {alt['last_step']}"
            + ("; `rotator rollback` can undo it" if alt["rollback_possible"] else "")
        )
        out.print(f"next rotation: {escape(alt['next'])}")
    for note in st.notes:
        out.print(f"[yellow]left: {escape(note)}[/]")
    code = int(st.exit_code)
    out.print(f"[{'green' if code == 0 else 'bold red'}]{escape(st.summary())}[/] (exit {code})")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "age unknown"
    d, rest = divmod(int(max(seconds, 0)), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{d}d {h}h" if d else f"{h}h {m}m" if h else f"{m}m {s}s") + " old"


def _clock(ts: float | None) -> str:
    if ts is None:
        return "?"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
