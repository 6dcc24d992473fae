"""`rotator status PLAN`: the terminal (and `--json`) face of `rotator.pipeline.status`.

Thin on purpose: the facts and the exit code come from `pipeline.status.collect`
(the service can call it too); this module only prints them.
"""

from __future__ import annotations

import asyncio
import shlex
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from rotator.cli import output
from rotator.cli.context import Context, Fail, err
from rotator.cli.flow import load
from rotator.exitcodes import Exit

if TYPE_CHECKING:
    from rich.console import Console

    from rotator.pipeline.status import PlanStatus
    from rotator.plan import Plan


@click.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option(
    "--repair",
    is_flag=True,
    help="Alternating plans: rewrite the slot record from your statement (--active APP), after probing both keys.",
)
@click.option("--active", "active_app", default=None, metavar="APP", help="With --repair: the app consumers use now.")
@output.json_option
@output.verbose_option
@click.pass_obj
def status(ctx: Context, plan_path: str, repair: bool, active_app: str | None, as_json: bool) -> int:
    """Each backend's key, its age and drift, whether each key works (one probe per key), the lock.

    Exit 0 only when every key works and nothing drifted; 18 a key is refused, 8 drift,
    19 something could not be checked (see docs/reference/status.md)."""
    from rotator.errors import RotationError
    from rotator.pipeline.status import collect

    plan = load(plan_path)
    if repair or active_app is not None:
        return _repair(ctx, plan, active_app, as_json)
    try:
        st = asyncio.run(collect(plan, ctx.journal))
    except RotationError as exc:  # the slot record disagrees (exit SLOT_RECORD): one line, never a guess
        raise Fail(str(exc), exc.exit_code) from None
    if as_json:
        output.emit(st.as_dict())
    else:
        from rich.console import Console

        show(Console(highlight=False, emoji=False, soft_wrap=True), st)
    return int(st.exit_code)


def _repair(ctx: Context, plan: Plan, active_app: str | None, as_json: bool) -> int:
    """`status --repair --active APP`: the operator's statement written as the slot record."""
    from rotator.errors import RotationError
    from rotator.pipeline.slot_repair import repair

    if not plan.alternating:
        raise Fail("--repair is for alternating plans: a single-app plan has no slot record", Exit.PLAN_INVALID)
    if active_app is None:
        raise Fail("--repair needs --active APP: the app whose key consumers use now", Exit.PLAN_INVALID)
    try:
        rec = asyncio.run(repair(plan, ctx.journal, active_app))
    except RotationError as exc:
        raise Fail(str(exc), exc.exit_code) from None
    if as_json:
        output.emit({"plan": plan.name, "repaired": rec})
        return 0
    a, s = rec["active"], rec["standby"]
    line = f"slot record written: active {a['app']} ({a['fp']}), standby " + (
        f"{s['app']} ({s['fp']})" if s else "empty"
    )
    if rec.get("leaked"):
        line += f"; incident {rec['leaked'].get('incident')} still open: {rec['leaked']['app']}'s key is the leaked key"
    err().print(line, markup=False)
    if rec.get("standby_works") is False:
        err().print(f"! the standby key does not work: `rotator rekey {plan.path}` re-keys it", markup=False)
    return 0


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
    age = st.key_age
    if age is not None:  # the page's, /metrics' and the reminders' key age, with where it comes from
        line = (
            f"key age: unknown: nothing records it (`rotator adopt {escape(shlex.quote(st.path))} --set-at DATE` records it)"
            if age.age_seconds is None
            else f"key age: {_age(age.age_seconds)}, from {escape(age.counted_from)}"
            + (f" (max {age.max_age_days} days: {age.status})" if age.max_age_days is not None else "")
        )
        out.print(line)
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
