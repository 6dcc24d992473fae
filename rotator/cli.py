"""The `rotator` command.

Every failure an operator can cause ends in one line naming what to fix and a
distinct exit code (rotator.exitcodes); a traceback is a bug.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable

import click
from rich.console import Console
from rich.markup import escape

from rotator import pipeline
from rotator.errors import CommandError, RotationError
from rotator.exitcodes import Exit
from rotator.journal import Journal
from rotator.logs import configure, get_logger
from rotator.pipeline import arm, finish
from rotator.pipeline.state import RotationState
from rotator.plan import Plan, PlanError, load_plan
from rotator.render import ProgressPrinter, fmt_time, history_lines, print_report, report_json
from rotator.report import PRIMARY_UNSURE, RESUMABLE, Progress, Report, RunState
from rotator.secret import MAX_KEY_LENGTH, CleanKey, KeyRejected, clean_paste

err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True, width=None if sys.stderr.isatty() else 120)
MAX_KEY_ATTEMPTS = 5

DASHBOARD_STEPS = """\
[bold]Armed.[/] Every target is ready. Now reset the key:
  1. Adjutor dashboard → Business → Apps → View details → [bold]Reset app key[/]
     (the old key stops working at once: the window starts now)
  2. Copy the new key it shows (it is now in your clipboard)
  3. Paste it here and press Enter (input is hidden)"""


Fail = CommandError  # the name every command raises


class _State:
    def __init__(self, db: str | None) -> None:
        self.db = db
        self._journal: Journal | None = None

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            try:
                self._journal = Journal(self.db)
            except Exception as exc:  # noqa: BLE001
                from rotator.journal import default_url, safe_url

                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                raise Fail(
                    f"cannot open the journal ({safe_url(self.db or default_url())}): {type(exc).__name__}: {first}",
                    Exit.ERROR,
                ) from None
        return self._journal


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="ROTATOR_DB", help="Journal database URL (default: SQLite in $ROTATOR_DATA_DIR).")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="rotator")
@click.pass_context
def cli(ctx: click.Context, db: str | None, verbose: int) -> None:
    """Rotate an API key into every backend and consumer with the shortest possible window."""
    configure(level={0: "warning", 1: "info"}.get(verbose, "debug"))
    ctx.obj = _State(db)


def _load(path: str) -> Plan:
    return load_plan(path)


@cli.command()
@click.argument("plans", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check(plans: tuple[str, ...]) -> int:
    """Validate plan files (no network); print each problem on one line."""
    bad = 0
    for p in plans:
        try:
            plan = _load(p)
        except PlanError as exc:
            bad += 1
            for line in exc.problems:
                click.echo(line, err=True)
            continue
        click.echo(
            f"{p}: ok ({plan.name}: primary {plan.primary.name}, "
            f"{len(plan.backends)} backends, {len(plan.consumers)} consumers)"
        )
    return int(Exit.PLAN_INVALID) if bad else 0


def _read_key_stdin() -> bytes:
    data = sys.stdin.buffer.read(MAX_KEY_LENGTH * 4 + 1)
    # Drain the rest without keeping it, so a huge paste does not hang the writer.
    while sys.stdin.buffer.read(65536):
        data = data[: MAX_KEY_LENGTH * 4 + 1] + b"x"
    return data


async def _ask_key(prompt: str) -> str:
    return await asyncio.to_thread(getpass.getpass, prompt)


async def _keep_warm(state: RotationState) -> None:
    """While the operator is in the dashboard, keep the probe's connection open."""
    while True:
        await asyncio.sleep(15)
        if state.prober:
            await state.prober.warm()


async def _rotate(
    plan: Plan,
    journal: Journal,
    *,
    key_stdin: bool,
    dry_run: bool,
    reason: str,
    force: bool,
    accept_unprobed: bool,
    quiet: bool,
) -> Report | int:
    rot = RotationState(
        plan,
        journal,
        reason=reason,
        force=force,
        accept_unprobed=accept_unprobed,
        progress_fn=_progress(quiet),
    )
    try:
        armed = await arm.run(rot)
        if not armed.ok:
            raise Fail(
                "not armed: " + "; ".join(armed.problems()) + " — fix these before resetting the key",
                Exit.PREFLIGHT_FAILED,
            )
        interactive = not key_stdin
        if interactive and not sys.stdin.isatty():
            raise Fail("no terminal to ask for the key on: pipe it in with --key-stdin", Exit.PLAN_INVALID)
        if not quiet or interactive:
            err.print(
                f"fingerprint now: {armed.old_fingerprint or '(no key in the primary yet)'}"
                + (f" (version {armed.old_version})" if armed.old_version else "")
            )
            err.print(
                DASHBOARD_STEPS if interactive else DASHBOARD_STEPS.split("  3.")[0] + "  3. reading the key from stdin"
            )
        for attempt in range(1, MAX_KEY_ATTEMPTS + 1):
            if key_stdin:
                raw: str | bytes = await asyncio.to_thread(_read_key_stdin)
            else:
                warm = asyncio.ensure_future(_keep_warm(rot))
                try:
                    raw = await _ask_key("new key: ")
                finally:
                    warm.cancel()
            rot.key_arrived()
            try:
                clean: CleanKey = clean_paste(raw, plan.secret.key_pattern)
            except KeyRejected as exc:
                if interactive and attempt < MAX_KEY_ATTEMPTS:
                    err.print(f"[red]✗ {escape(str(exc))}[/]: paste it again")
                    continue
                message = f"the pasted key was rejected: {exc}; nothing was written"
                raise Fail(
                    message, Exit.KEY_REFUSED, await finish.abandon(rot, finish.not_written(rot, message))
                ) from None
            finally:
                del raw
            for w in clean.warnings:
                err.print(f"[yellow]! {escape(w)}[/]")
            err.print(f"key received: fingerprint {clean.secret.fingerprint}")
            if dry_run:
                return await pipeline.dry_run(rot, clean.secret)
            report = await pipeline.rotate(rot, clean.secret)
            if report.exit_code == Exit.KEY_REFUSED and interactive and attempt < MAX_KEY_ATTEMPTS:
                err.print(f"[red]✗ {escape(report.message)}[/]: check the key and paste it again")
                continue
            if report.state in ("refused", "unavailable"):
                await finish.abandon(rot, report)
            return report
        raise AssertionError("unreachable")
    except RotationError as exc:
        raise Fail(str(exc), exc.exit_code) from None
    finally:
        await arm.disarm(rot)


def _finish(report: Report, as_json: bool) -> int:
    if as_json:
        click.echo(report_json(report))
    print_report(err, report)
    return report.exit_code


@cli.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option("--key-stdin", is_flag=True, help="Read the key from standard input instead of a hidden prompt.")
@click.option("--dry-run", is_flag=True, help="Arm and probe only; write nothing.")
@click.option("--reason", default="", help="Why (journaled), e.g. 'planned' or 'incident INC-42'.")
@click.option("--force", is_flag=True, help="Write the primary even if it changed since arm (no check-and-set).")
@click.option("--accept-unprobed", is_flag=True, help="Write even when the probe cannot reach the API (outage).")
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No live progress.")
@click.pass_obj
def rotate(
    state: _State,
    plan_path: str,
    key_stdin: bool,
    dry_run: bool,
    reason: str,
    force: bool,
    accept_unprobed: bool,
    as_json: bool,
    quiet: bool,
) -> int:
    """Arm, take the new key, probe it, write it everywhere, signal consumers."""
    plan = _load(plan_path)
    journal = state.journal
    for row in journal.unfinished(plan.name):
        err.print(
            f"[yellow]! rotation {row.id} of {plan.name} did not finish ({row.state}); "
            f"`rotator resume {row.id}` completes it from the primary[/]"
        )
    try:
        result = asyncio.run(
            _rotate(
                plan,
                journal,
                key_stdin=key_stdin,
                dry_run=dry_run,
                reason=reason,
                force=force,
                accept_unprobed=accept_unprobed,
                quiet=quiet,
            )
        )
    except Fail as exc:
        if as_json and exc.report is not None:
            click.echo(report_json(exc.report))
        raise
    if isinstance(result, int):
        return result
    return _finish(result, as_json)


async def _armed(state: RotationState, what: str, flow: Callable[[RotationState], Awaitable[Report]]) -> Report:
    """Arm `state`, run one flow on it, disarm it; failures become one-line `Fail`s."""
    try:
        armed = await arm.run(state)
        if not armed.ok:
            raise Fail(f"cannot {what}: " + "; ".join(armed.problems()), Exit.PREFLIGHT_FAILED)
        return await flow(state)
    except RotationError as exc:
        raise Fail(str(exc), exc.exit_code) from None
    finally:
        await arm.disarm(state)


def _progress(quiet: bool) -> Callable[[Progress], None]:
    return (lambda p: None) if quiet else ProgressPrinter(err)


@cli.command()
@click.argument("rotation_id", metavar="ID")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False), help="Plan file, if it moved since the rotation.")
@click.option("--json", "as_json", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.pass_obj
def resume(state: _State, rotation_id: str, plan_path: str | None, as_json: bool, quiet: bool) -> int:
    """Finish an interrupted or partial rotation from the key in the primary."""
    row = state.journal.get(rotation_id)
    if row is None:
        raise Fail(f"no rotation {rotation_id} in the journal (see `rotator history`)", Exit.PLAN_INVALID)
    if row.state == RunState.DONE:
        err.print(f"rotation {row.id} is already done")
        return 0
    if row.state not in RESUMABLE:
        raise Fail(
            f"rotation {row.id} never wrote the primary ({row.state}): the key must be entered again: "
            f"`rotator rotate {row.plan_path}`",
            Exit.ERROR,
        )
    plan = _load(plan_path or row.plan_path)
    # Killed during the primary write, or its answer lost: the write may have landed.  The primary decides.
    unsure = row.state in PRIMARY_UNSURE
    rot = RotationState(plan, state.journal, id=row.id, progress_fn=_progress(quiet))
    report = asyncio.run(_armed(rot, "resume", lambda s: pipeline.resume(s, row.new_fp, primary_unsure=unsure)))
    return _finish(report, as_json)


@cli.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option("--check", "check_only", is_flag=True, help="Report drift only (exit 8 where any); write nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.pass_obj
def sync(state: _State, plan_path: str, check_only: bool, as_json: bool, quiet: bool) -> int:
    """Copy the primary's key to every backend that differs; signal what changed."""
    plan = _load(plan_path)
    rot = RotationState(plan, state.journal, kind="sync", progress_fn=_progress(quiet))
    report = asyncio.run(_armed(rot, "sync", pipeline.check_drift if check_only else pipeline.sync))
    return _finish(report, as_json)


@cli.command()
@click.option("--plan", "plan_name", help="Only this secret's rotations.")
@click.option("-n", "--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def history(state: _State, plan_name: str | None, limit: int, as_json: bool) -> int:
    """List recent rotations and syncs."""
    rows = state.journal.history(plan_name, limit)
    if as_json:
        rows_out = [
            {**{k: v for k, v in r.__dict__.items() if k != "report"}, "resumable": r.state in RESUMABLE} for r in rows
        ]
        click.echo(json.dumps(rows_out, indent=2))
        return 0
    if not rows:
        err.print("no rotations yet")
        return 0
    for line in history_lines(rows):
        click.echo(line)
    return 0


@cli.command()
@click.argument("rotation_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(state: _State, rotation_id: str, as_json: bool) -> int:
    """Print one rotation: who, why, each step and target, timings, fingerprints."""
    row = state.journal.get(rotation_id)
    if row is None:
        raise Fail(f"no rotation {rotation_id} in the journal (see `rotator history`)", Exit.PLAN_INVALID)
    events = state.journal.events(row.id)
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
        for t in row.report.get("targets", []):
            extra = f" v{t['version']}" if t.get("version") else ""
            secs = f"{t['seconds'] * 1000:.1f} ms" if t.get("seconds") is not None else ""
            out.print(
                f"  {t['kind']:<8} {t['name']:<24} {t['status']:<11} {secs:>10}{extra}  {escape(t.get('detail') or '')}"
            )
        for w in row.report.get("warnings", []):
            out.print(f"  [yellow]warning:[/] {escape(w)}")
    out.print("journal:")
    for e in events:
        secs = f" {e['seconds'] * 1000:.1f} ms" if e["seconds"] is not None else ""
        fp = f" fp={e['fingerprint']}" if e["fingerprint"] else ""
        ver = f" v={e['version']}" if e["version"] else ""
        out.print(
            f"  {fmt_time(e['ts'])} {e['step']:<8} {e['target']:<20} {e['status']:<10}{secs}{fp}{ver} {escape(e['detail'] or '')}"
        )
    return 0


@cli.command()
def plugins() -> int:
    """List installed backends and consumers, and where each comes from."""
    from rotator.registry import installed

    for p in installed():
        click.echo(f"{p.kind:<9} {p.name:<10} {p.distribution} {p.version:<8} {p.target}")
    return 0


@cli.command()
@click.option("--keep", is_flag=True, help="Leave the demo's files in place and print where they are.")
@click.option("--json", "as_json", is_flag=True)
def demo(keep: bool, as_json: bool) -> int:
    """Run a whole rotation against local stand-ins: Adjutor, a consumer process, .env files."""
    from rotator.demo.run import run_demo

    return run_demo(keep=keep, as_json=as_json)


def main(argv: list[str] | None = None) -> None:
    os.umask(0o077)  # anything rotator creates is private to its user
    log = get_logger("rotator.cli")
    try:
        rv = cli.main(args=argv, prog_name="rotator", standalone_mode=False)
    except PlanError as exc:
        for line in exc.problems:
            click.echo(line, err=True)
        sys.exit(Exit.PLAN_INVALID)
    except Fail as exc:
        click.echo(f"rotator: {exc}", err=True)
        sys.exit(exc.code)
    except click.exceptions.Abort:
        click.echo("rotator: interrupted; nothing further was written", err=True)
        sys.exit(Exit.INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("rotator: interrupted; `rotator history` shows how far it got", err=True)
        sys.exit(Exit.INTERRUPTED)
    except click.ClickException as exc:
        click.echo(f"rotator: {exc.format_message()}", err=True)
        sys.exit(Exit.PLAN_INVALID)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        log.debug("internal error", exc_info=True)
        click.echo(f"rotator: internal error ({type(exc).__name__}); rerun with -vv for details", err=True)
        sys.exit(Exit.ERROR)
    sys.exit(rv if isinstance(rv, int) else 0)


from rotator.service.command import serve  # noqa: E402 - registered last: serve imports rotator.cli lazily

cli.add_command(serve)
