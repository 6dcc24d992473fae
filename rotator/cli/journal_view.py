"""`rotator history` and `rotator show`: the journal, read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rotator.cli import output
from rotator.cli.context import Context, Fail, err
from rotator.exitcodes import Exit

if TYPE_CHECKING:
    from rich.console import Console

    from rotator.journal import RotationRow


@click.command()
@click.option("--plan", "plan_name", help="Only this secret's rotations.")
@click.option("-n", "--limit", default=20, show_default=True)
@output.json_option
@output.verbose_option
@click.pass_obj
def history(ctx: Context, plan_name: str | None, limit: int, as_json: bool) -> int:
    """List recent rotations and syncs (runs of syncs that found no drift folded into one line)."""
    from rotator.history_fold import fold, folded_line, repaired, repaired_text
    from rotator.render import history_lines
    from rotator.report import RESUMABLE

    plan_name = secret_name(plan_name)
    rows = ctx.journal.history(plan_name, limit)
    if as_json:
        rows_out = [
            output.renamed(
                {
                    **{k: v for k, v in r.__dict__.items() if k != "report"},
                    "resumable": r.state in RESUMABLE,
                    "resumed": resumed(r),
                    "span_seconds": span(r),
                    **({"repaired": repaired(r)} if r.kind == "sync" else {}),
                }
            )
            for r in rows
        ]
        output.emit({"rotations": rows_out})
        return 0
    if not rows:
        err().print("no rotations yet" + (f" of {plan_name}" if plan_name else "") + f" in {journal_where(ctx)}")
        return 0
    lines = history_lines(rows)
    by_id = dict(zip((r.id for r in rows), lines[1:], strict=True))
    click.echo(lines[0])
    for r, run in fold(rows):
        if run:
            click.echo(folded_line(run))
            continue
        s = span(r)
        extra = f"  (resumed: {s:.1f} s from the first key to done)" if resumed(r) and s else ""
        if repaired(r):
            extra += f"  drift repaired: {repaired_text(r)}"
        click.echo(by_id[r.id] + extra)
    return 0


def span(r: RotationRow) -> float | None:
    """Seconds from the first key received to the entry's end: across a resume, the real outage
    bound (the window column is the last run's: key, or resume start, to its last target)."""
    if r.key_received_at is None or r.finished_at is None:
        return None
    return round(r.finished_at - r.key_received_at, 4)


def resumed(r: RotationRow) -> bool:
    """Finished by `rotator resume`: its primary was the key's source, not written."""
    targets = (r.report or {}).get("targets") or []
    return r.kind == "rotate" and any(t.get("primary") and t.get("detail") == "source of the key" for t in targets)


def first_attempt(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first run's figures of an entry resumed later (the journal keeps its events)."""
    keys = [i for i, e in enumerate(events) if e["step"] == "key"]
    if len(keys) < 2:
        return None
    first = events[keys[0] : keys[1]]
    report = next((e for e in first if e["step"] == "report"), None)
    secs = [e["seconds"] for e in first if e["seconds"] is not None and e["step"] != "report"]
    return {
        "state": report["status"] if report else "interrupted",
        "window_seconds": report["seconds"] if report else (max(secs) if secs else None),
        "message": report["detail"] if report else "ended without a report (killed or interrupted)",
    }


def secret_name(plan: str | None) -> str | None:
    """`--plan` takes a secret's name or a plan file (its `[secret] name`)."""
    if plan and (plan.endswith(".toml") or Path(plan).is_file()):
        from rotator.plan import load_plan

        return load_plan(plan).name
    return plan


def journal_where(ctx: Context) -> str:
    from rotator.journal import default_url, safe_url

    return f"the journal {safe_url(ctx.db or default_url())}"


def fmt_ms(ts: float | None) -> str:
    """A journal time to the millisecond (steps of a rotation are milliseconds apart)."""
    if not ts:
        return "-"
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


@click.command()
@click.argument("rotation_id", metavar="ID")
@output.json_option
@output.verbose_option
@click.pass_obj
def show(ctx: Context, rotation_id: str, as_json: bool) -> int:
    """Print one rotation: who, why, each step and target, timings, fingerprints."""
    from rich.console import Console
    from rich.markup import escape

    row = ctx.journal.get(rotation_id)
    if row is None:
        raise Fail(f"no rotation {rotation_id} in {journal_where(ctx)} (see `rotator history`)", Exit.PLAN_INVALID)
    events = ctx.journal.events(row.id)
    if as_json:
        rotation = {**output.renamed(row.__dict__), "span_seconds": span(row), "resumed": resumed(row)}
        rotation["first_attempt"] = first_attempt(events)
        output.emit({"rotation": rotation, "events": [output.renamed(e) for e in events]})
        return 0
    out = Console(highlight=False, emoji=False, soft_wrap=True)
    _print_row(out, row, events)
    if row.report:
        _print_report(out, row.report)
    out.print("journal:")
    for e in events:
        secs = f" {e['seconds'] * 1000:.1f} ms" if e["seconds"] is not None else ""
        fp = f" fp={e['fingerprint']}" if e["fingerprint"] else ""
        ver = f" v={e['version']}" if e["version"] else ""
        out.print(
            f"  {fmt_ms(e['ts'])} {e['step']:<8} {e['target']:<20} {e['status']:<10}{secs}{fp}{ver} {escape(e['detail'] or '')}"
        )
    return 0


def _print_row(out: Console, row: RotationRow, events: list[dict[str, Any]]) -> None:
    """Who, why, when, the fingerprints, the window (counted from what starts it), a first attempt."""
    from rich.markup import escape

    from rotator.report import window_from

    out.print(f"[bold]{row.kind} {row.id}[/] · plan {row.plan} ({row.plan_path})")
    out.print(
        f"state: {row.state}{'' if row.exit_code is None else f' (exit {row.exit_code})'}   operator: {row.operator}   reason: {escape(row.reason or '-')}"
    )
    out.print(
        f"started {fmt_ms(row.created_at)}, key received {fmt_ms(row.key_received_at)}, finished {fmt_ms(row.finished_at)}"
    )
    out.print(f"fingerprint: {row.old_fp or '-'} → {row.new_fp or '-'}   primary version: {row.primary_version or '-'}")
    if row.window_s is not None:
        what = "resume start" if resumed(row) else window_from(row.kind, (row.report or {}).get("alternating"))
        out.print(f"window: {row.window_s * 1000:.1f} ms ({what} → last target done, this run)")
    if (first := first_attempt(events)) is not None:
        secs = first["window_seconds"]
        out.print(
            f"first attempt: {first['state']}"
            + (f", {secs * 1000:.1f} ms from the key to its last target" if secs is not None else "")
            + f": {escape(first['message'] or '')}"
        )
        if (s := span(row)) is not None:
            out.print(f"span: {s:.3f} s from the first key received to done (the interruption included)")


def _print_report(out: Console, report: dict[str, Any]) -> None:
    """The outage, each target's line, the warnings and the timeline of a journaled report."""
    from rich.markup import escape

    from rotator.render import incident_lines, outage_lines, print_timeline

    for line in incident_lines(report) + outage_lines(report):
        out.print(escape(line))
    for t in report.get("targets", []):
        extra = f" v{t['version']}" if t.get("version") else ""
        secs = f"{t['seconds'] * 1000:.1f} ms" if t.get("seconds") is not None else ""
        out.print(
            f"  {t['kind']:<8} {t['name']:<24} {t['status']:<11} {secs:>10}{extra}  {escape(t.get('detail') or '')}"
        )
    for w in report.get("warnings", []):
        out.print(f"  [yellow]warning:[/] {escape(w)}")
    print_timeline(out, report)
