"""`rotator check`, `resume`, `sync`, `plugins`, `demo`: the commands that take no key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import click

from rotator.cli.context import Context, Fail, err
from rotator.exitcodes import Exit

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.plan import Plan
    from rotator.report import Progress, Report


def load(path: str) -> Plan:
    from rotator.plan import load_plan

    return load_plan(path)


def progress(quiet: bool) -> Callable[[Progress], None]:
    from rotator.render import ProgressPrinter

    return (lambda p: None) if quiet else ProgressPrinter(err())


def finish(report: Report, as_json: bool) -> int:
    from rotator.render import print_report, report_json

    if as_json:
        click.echo(report_json(report))
    print_report(err(), report)
    return report.exit_code


@click.command()
@click.argument("plans", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check(plans: tuple[str, ...]) -> int:
    """Validate plan files (no network); print each problem on one line."""
    from rotator.plan import PlanError

    bad = 0
    for p in plans:
        try:
            plan = load(p)
        except PlanError as exc:
            bad += 1
            for line in exc.problems:
                click.echo(line, err=True)
            continue
        click.echo(
            f"{p}: ok ({plan.name}: primary {plan.primary.name}, "
            f"{len(plan.backends)} backends, {len(plan.consumers)} consumers)"
        )
        for hint in plan.hints():
            click.echo(hint)
    return int(Exit.PLAN_INVALID) if bad else 0


async def _armed(state: RotationState, what: str, flow: Callable[[RotationState], Awaitable[Report]]) -> Report:
    """Arm `state`, run one flow on it, disarm it; failures become one-line `Fail`s."""
    from rotator.errors import RotationError
    from rotator.pipeline import arm
    from rotator.pipeline.session import not_armed_message

    try:
        armed = await arm.run(state)
        if not armed.ok:
            raise Fail(not_armed_message(armed, what), Exit.PREFLIGHT_FAILED)
        return await flow(state)
    except RotationError as exc:
        raise Fail(str(exc), exc.exit_code) from None
    finally:
        await arm.disarm(state)


@click.command()
@click.argument("rotation_id", metavar="ID")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False), help="Plan file, if it moved since the rotation.")
@click.option("--json", "as_json", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.pass_obj
def resume(ctx: Context, rotation_id: str, plan_path: str | None, as_json: bool, quiet: bool) -> int:
    """Finish an interrupted or partial rotation from the key in the primary."""
    import asyncio

    from rotator import pipeline
    from rotator.pipeline.state import RotationState
    from rotator.report import PRIMARY_UNSURE, RESUMABLE, RunState

    row = ctx.journal.get(rotation_id)
    if row is None:
        raise Fail(f"no rotation {rotation_id} in the journal (see `rotator history`)", Exit.PLAN_INVALID)
    if row.state == RunState.DONE:
        err().print(f"rotation {row.id} is already done")
        _alternating_note(plan_path or row.plan_path)
        return 0
    if row.state not in RESUMABLE:
        raise Fail(
            f"rotation {row.id} never wrote the primary ({row.state}): the key must be entered again: "
            f"`rotator rotate {row.plan_path}`",
            Exit.ERROR,
        )
    plan = load(plan_path or row.plan_path)
    # Killed during the primary write, or its answer lost: the write may have landed.  The primary decides.
    unsure = row.state in PRIMARY_UNSURE
    state = RotationState(plan, ctx.journal, id=row.id, progress_fn=progress(quiet))
    report = asyncio.run(_armed(state, "resume", lambda s: pipeline.resume(s, row.new_fp, primary_unsure=unsure)))
    code = finish(report, as_json)
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
@click.option("--json", "as_json", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.pass_obj
def sync(ctx: Context, plan_path: str, check_only: bool, as_json: bool, quiet: bool) -> int:
    """Copy the primary's key to every backend that differs; signal what changed."""
    import asyncio

    from rotator import pipeline
    from rotator.pipeline.state import RotationState

    plan = load(plan_path)
    state = RotationState(plan, ctx.journal, kind="sync", progress_fn=progress(quiet))
    report = asyncio.run(_armed(state, "sync", pipeline.check_drift if check_only else pipeline.sync))
    return finish(report, as_json)


@click.command()
def plugins() -> int:
    """List installed backends and consumers, and where each comes from."""
    from rotator.registry import installed

    for p in installed():
        click.echo(f"{p.kind:<9} {p.name:<10} {p.distribution} {p.version:<8} {p.target}")
    return 0


@click.command()
@click.option("--keep", is_flag=True, help="Leave the demo's files in place and print where they are.")
@click.option("--json", "as_json", is_flag=True)
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
