"""`rotator history` and `rotator show`: the journal, read."""

from __future__ import annotations

import json

import click

from rotator.cli.context import Context, Fail, err
from rotator.exitcodes import Exit


@click.command()
@click.option("--plan", "plan_name", help="Only this secret's rotations.")
@click.option("-n", "--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def history(ctx: Context, plan_name: str | None, limit: int, as_json: bool) -> int:
    """List recent rotations and syncs."""
    from rotator.render import history_lines
    from rotator.report import RESUMABLE

    rows = ctx.journal.history(plan_name, limit)
    if as_json:
        rows_out = [
            {**{k: v for k, v in r.__dict__.items() if k != "report"}, "resumable": r.state in RESUMABLE} for r in rows
        ]
        click.echo(json.dumps(rows_out, indent=2))
        return 0
    if not rows:
        err().print("no rotations yet")
        return 0
    for line in history_lines(rows):
        click.echo(line)
    return 0


@click.command()
@click.argument("rotation_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(ctx: Context, rotation_id: str, as_json: bool) -> int:
    """Print one rotation: who, why, each step and target, timings, fingerprints."""
    from rich.console import Console
    from rich.markup import escape

    from rotator.render import fmt_time

    row = ctx.journal.get(rotation_id)
    if row is None:
        raise Fail(f"no rotation {rotation_id} in the journal (see `rotator history`)", Exit.PLAN_INVALID)
    events = ctx.journal.events(row.id)
    if as_json:
        click.echo(json.dumps({"rotation": row.__dict__, "events": events}, indent=2, default=str))
        return 0
    out = Console(highlight=False, emoji=False, soft_wrap=True)
    out.print(f"[bold]{row.kind} {row.id}[/] · plan {row.plan} ({row.plan_path})")
    out.print(
        f"state: {row.state} (exit {row.exit_code})   operator: {row.operator}   reason: {escape(row.reason or '-')}"
    )
    out.print(
        f"started {fmt_time(row.created_at)}, key received {fmt_time(row.key_received_at)}, finished {fmt_time(row.finished_at)}"
    )
    out.print(f"fingerprint: {row.old_fp or '-'} → {row.new_fp or '-'}   primary version: {row.primary_version or '-'}")
    if row.window_s is not None:
        out.print(f"window: {row.window_s * 1000:.1f} ms")
    if row.report:
        from rotator.render import outage_lines

        for line in outage_lines(row.report):
            out.print(escape(line))
    if row.report:
        for t in row.report.get("targets", []):
            extra = f" v{t['version']}" if t.get("version") else ""
            secs = f"{t['seconds'] * 1000:.1f} ms" if t.get("seconds") is not None else ""
            out.print(
                f"  {t['kind']:<8} {t['name']:<24} {t['status']:<11} {secs:>10}{extra}  {escape(t.get('detail') or '')}"
            )
        for w in row.report.get("warnings", []):
            out.print(f"  [yellow]warning:[/] {escape(w)}")
        from rotator.render import print_timeline

        print_timeline(out, row.report)
    out.print("journal:")
    for e in events:
        secs = f" {e['seconds'] * 1000:.1f} ms" if e["seconds"] is not None else ""
        fp = f" fp={e['fingerprint']}" if e["fingerprint"] else ""
        ver = f" v={e['version']}" if e["version"] else ""
        out.print(
            f"  {fmt_time(e['ts'])} {e['step']:<8} {e['target']:<20} {e['status']:<10}{secs}{fp}{ver} {escape(e['detail'] or '')}"
        )
    return 0
