"""`rotator check`, `resume`, `sync`, `plugins`, `demo`: the commands that take no key."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from rotator.cli import output
from rotator.cli.context import Context, Fail, err
from rotator.exitcodes import Exit

if TYPE_CHECKING:
    from rotator.journal.store import RotationRow
    from rotator.pipeline.oneshot import OneShot
    from rotator.pipeline.state import RotationState
    from rotator.report import Report

from rotator.cli.flow import finish, load, plural, progress, run_flow


@click.command()
@click.argument("plans", nargs=-1, required=True, type=click.Path())
@output.json_option
@output.verbose_option
def check(plans: tuple[str, ...], as_json: bool) -> int:
    """Validate plan files, or every *.toml in a directory (no network); print each problem on one line."""
    from pathlib import Path

    from rotator.plan import PlanError

    files: list[str] = []
    for p in plans:
        if Path(p).is_dir():
            found = sorted(str(f) for f in Path(p).glob("*.toml") if f.is_file())
            if not found:
                raise Fail(f"{p}: no *.toml plan files in this directory", Exit.PLAN_INVALID)
            files += found
        else:
            files.append(p)
    results: list[dict[str, object]] = []
    for f in files:
        try:
            plan = load(f)
        except PlanError as exc:
            results.append({"path": f, "ok": False, "problems": exc.problems})
            for line in exc.problems:
                click.echo(line, err=True)
            continue
        hints = plan.hints()
        results.append(
            {
                "path": f,
                "ok": True,
                "plan": plan.name,
                "primary": plan.primary.name,
                "backends": len(plan.backends),
                "consumers": len(plan.consumers),
                "hints": hints,
            }
        )
        if not as_json:
            click.echo(
                f"{f}: ok ({plan.name}: primary {plan.primary.name}, "
                f"{plural(len(plan.backends), 'backend')}, {plural(len(plan.consumers), 'consumer')})"
            )
            for hint in hints:
                click.echo(hint)
    bad = sum(1 for r in results if not r["ok"])
    if as_json:
        output.emit({"plans": results, "exit_code": int(Exit.PLAN_INVALID) if bad else 0})
    return int(Exit.PLAN_INVALID) if bad else 0


async def _oneshot(state: RotationState, what: OneShot, row: RotationRow | None = None) -> Report:
    """`pipeline.oneshot.run` (arm, run, disarm: journaled as the service journals it); a target
    not ready or a refused arm is one line with its exit code (`cli.main` says it)."""
    from rotator.pipeline import oneshot

    return await oneshot.run(state, what, row=row, by=f"by {state.operator} (cli)")


@click.command()
@click.argument("rotation_id", metavar="ID")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False), help="Plan file, if it moved since the rotation.")
@output.json_option
@output.verbose_option
@output.quiet_option
@click.pass_obj
def resume(ctx: Context, rotation_id: str, plan_path: str | None, as_json: bool, quiet: bool) -> int:
    """Finish an interrupted or partial rotation from the key in the primary."""

    from rotator.pipeline.oneshot import OneShot, state_for
    from rotator.report import REKEY_LEFT_LINE, RESUMABLE, RunState

    row = ctx.journal.get(rotation_id)
    if row is None:
        from rotator.cli.journal_view import journal_where

        raise Fail(f"no rotation {rotation_id} in {journal_where(ctx)} (see `rotator history`)", Exit.PLAN_INVALID)
    if row.state == RunState.DONE:
        err().print(f"rotation {row.id} is already done")
        _alternating_note(plan_path or row.plan_path)
        return 0
    if row.state == RunState.REKEY_LEFT:  # the operator's reset is left: only an alternating flow asks for it
        err().print(f"rotation {row.id}: {REKEY_LEFT_LINE.format(plan=row.plan_path)}")
        _alternating_note(plan_path or row.plan_path)
        return int(Exit.NOTHING_TO_RESUME)
    if row.state not in RESUMABLE:
        raise Fail(
            f"rotation {row.id} never wrote the primary ({row.state}): the key must be entered again: "
            f"`rotator rotate {row.plan_path}`",
            Exit.NOTHING_TO_RESUME,
        )
    plan = load(plan_path or row.plan_path)
    # Killed during the primary write, or its answer lost: the write may have landed (the primary decides).
    state = state_for(OneShot.RESUME, plan, ctx.journal, row=row, progress_fn=progress(quiet))
    report = run_flow(state, _oneshot(state, OneShot.RESUME, row))
    code = finish(report, as_json, plan)
    _alternating_note(plan_path or row.plan_path)
    return code


def _alternating_note(plan_path: str) -> None:
    """Alternating plans: after a resume (or on a done entry), what is left, from the slots."""
    from rotator.plan import PlanError

    try:
        plan = load(plan_path)
    except PlanError:
        return
    if plan.alternating:
        from rotator.cli.alternating import resume_note

        resume_note(plan)


@click.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option("--check", "check_only", is_flag=True, help="Report drift only (exit 8 where any); write nothing.")
@output.json_option
@output.verbose_option
@output.quiet_option
@click.pass_obj
def sync(ctx: Context, plan_path: str, check_only: bool, as_json: bool, quiet: bool) -> int:
    """Copy the primary's key to every backend that differs; signal what changed."""

    from rotator.pipeline.oneshot import OneShot, state_for

    plan = load(plan_path)
    what = OneShot.CHECK if check_only else OneShot.SYNC  # a drift check is journaled as a check, as the service does
    state = state_for(what, plan, ctx.journal, progress_fn=progress(quiet))
    report = run_flow(state, _oneshot(state, what))
    return finish(report, as_json, plan)


@click.command()
@click.option(
    "--plan", "plan_path", type=click.Path(dir_okay=False), help="Instead: each target of this plan, and where it is."
)
@output.json_option
@output.verbose_option
def plugins(plan_path: str | None, as_json: bool) -> int:
    """List installed backends, consumers and notifiers, and where each comes from (or a plan's targets)."""
    from dataclasses import asdict

    if plan_path:
        import asyncio

        from rotator.targets import describe_plan, target_lines

        targets = asyncio.run(describe_plan(load(plan_path)))
        if as_json:
            output.emit({"targets": [asdict(t) for t in targets]})
        else:
            for line in target_lines(targets):
                click.echo(line)
        return 0
    from rotator.registry import installed

    found = installed()
    if as_json:
        output.emit({"plugins": [asdict(p) for p in found]})
        return 0
    for p in found:
        click.echo(f"{p.kind:<9} {p.name:<10} {p.distribution} {p.version:<8} {p.target}")
    return 0


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> int:
    """Print the shell completion script: `eval "$(rotator completion bash)"` (zsh: the same; fish: `| source`)."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # click ships all three
    root = click.get_current_context().find_root().command  # the group, without importing it (a cycle)
    click.echo(cls(root, {}, "rotator", "_ROTATOR_COMPLETE").source())
    return 0


@click.command()
@click.option("--keep", is_flag=True, help="Leave the demo's files in place and print where they are.")
@output.json_option
@output.verbose_option
@click.option(
    "--mode",
    type=click.Choice(["single", "alternating", "both"]),
    default="both",
    show_default=True,
    help="single: one app (the reset kills the key in use); alternating: two apps (0 failed calls); both side by side.",
)
@click.option(
    "--pause",
    type=click.FloatRange(0, 60),
    default=2.0,
    show_default=True,
    help="Seconds the demo's operator takes to copy and paste each new key.",
)
def demo(keep: bool, as_json: bool, mode: str, pause: float) -> int:
    """Run whole rotations against local stand-ins (Adjutor, consumer processes, .env files): one app and two."""
    from rotator.demo.run import DemoMode, run_demo

    return run_demo(keep=keep, as_json=as_json, mode=DemoMode(mode), pause=pause)
