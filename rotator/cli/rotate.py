"""`rotator rotate`: arm, show the dashboard steps, take the key, write it everywhere.

The session is `pipeline.session.ArmedSession`, the service's too, running the plan's flow
from the registry (`pipeline.flows`: the single-app rotation, or `--flow NAME`); an
alternating plan's go to `cli.alternating`.  The terminal (what is printed, the key sources:
a hidden prompt, stdin, the clipboard racing the prompt) is `cli.terminal`'s, for both.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from rotator.cli import output
from rotator.cli.context import Context, Fail, err
from rotator.cli.flow import finish, load, notify, progress, run_flow
from rotator.cli.key_input import Clipboard, Stdin, clipboard_source
from rotator.exitcodes import Exit

if TYPE_CHECKING:
    from rotator.cli.terminal import Modes
    from rotator.pipeline.flows import FlowSpec
    from rotator.pipeline.session import ArmedSession, Flow, Listener
    from rotator.pipeline.state import RotationState
    from rotator.plan import Plan
    from rotator.report import ArmResult, Report

KEY_FROM = ("prompt", "stdin", "clipboard")


PASTE_CLIPBOARD = "Nothing more: rotator takes the key from the clipboard the moment the dashboard copies it."
PASTE_BOTH = "Nothing more: rotator takes it from the clipboard (or paste it here and press Enter; input is hidden)."


def dashboard_steps(interactive: bool, clipboard: bool = False) -> str:
    from rotator.pipeline.session import PASTE_PROMPT, PASTE_STDIN, instruction

    paste = PASTE_PROMPT if interactive else PASTE_STDIN
    if clipboard:
        paste = PASTE_BOTH if interactive else PASTE_CLIPBOARD
    head, *steps = instruction(paste)
    if clipboard:
        steps = [s for s in steps if not s.startswith("Copy the new key")]
    return "\n".join([f"[bold]Armed.[/] {head}", *(f"  {i}. {s}" for i, s in enumerate(steps, 1))])


DRY_RUN_STEPS = (
    "[bold yellow]DRY RUN — do NOT reset the key.[/] Nothing will be written anywhere: resetting the key now "
    "would cut every consumer off with nothing to replace it.\n"
    "  Paste the key in use now (or any key) to check the probe; every target was checked above."
)


def api_down(why: str, accept_unprobed: bool) -> str:
    """Said before the instruction to reset: a probe that cannot answer cannot check the new key."""
    from rich.markup import escape

    then = (
        "--accept-unprobed: the key will be written unchecked."
        if accept_unprobed
        else "Wait until it answers, or rerun with --accept-unprobed to write the key unchecked (an outage)."
    )
    return (
        f"[bold red]! The API looks down: {escape(why)}.[/] A key pasted now cannot be checked, and "
        f"resetting it now starts an outage that lasts until the API is back. {then}"
    )


async def _rotate(
    state: RotationState, flow: Flow, *, key_from: str, keep_clipboard: bool = False, dry_run: bool, quiet: bool
) -> Report:
    from rotator.cli.terminal import Modes, Terminal, feed, need_terminal

    # The clipboard races the hidden prompt when there is a terminal; alone when there is none.
    interactive = key_from == "prompt" or (key_from == "clipboard" and sys.stdin.isatty())
    clip = Clipboard(clipboard_source(state.plan)) if key_from == "clipboard" else None
    session = _session(
        state, flow, Terminal(prompting=interactive), interactive=interactive, clipboard=clip is not None
    )
    tty = Modes() if interactive else None
    try:
        need_terminal(interactive)
        armed = await session.arm(start=False)
        stdin = Stdin() if not interactive and clip is None else None  # one key, to the end of input
        await feed(session, prompt=interactive, stdin=stdin, clip=clip, current=armed.old_fingerprint)
        if not quiet or interactive or clip is not None:
            _say_armed(state, armed, clip, interactive=interactive, dry_run=dry_run)
        session.start()
        report = await session.wait()
        if clip is not None and report is not None and not dry_run and not keep_clipboard:
            await _clear_clipboard(clip, report)
        return _outcome(session, report)
    finally:  # a refused arm (NotArmed, RotationError) is one line with its code: `cli.main`
        await _end(session, clip, tty)


def _session(
    state: RotationState, flow: Flow, terminal: Listener, *, interactive: bool, clipboard: bool
) -> ArmedSession:
    """The armed session of a terminal's rotation: one key from stdin, up to the limit from a
    person (the prompt, the clipboard)."""
    from rotator.pipeline.session import MAX_KEY_ATTEMPTS, ArmedSession

    return ArmedSession(
        state,
        terminal,
        max_attempts=MAX_KEY_ATTEMPTS if interactive or clipboard else 1,
        flow=flow,
        handed_keys=False,  # the terminal's sources only
    )


def _find_flow(plan: Plan, name: str) -> FlowSpec:
    """The registered flow `name` for this plan (`pipeline.flows`); one line naming the others if none."""
    from rotator.pipeline import flows

    spec = flows.find(name, alternating=plan.alternating)
    if spec is None:
        known = ", ".join(flows.names(alternating=plan.alternating))
        raise Fail(f"--flow {name}: {plan.name} has no such flow (one of: {known})", Exit.PLAN_INVALID)
    return spec


async def _end(session: ArmedSession, clip: Clipboard | None, tty: Modes | None) -> None:
    """However the command ends: a write in flight stopped first (Ctrl-C), then disarmed, the
    clipboard no longer watched, the terminal's modes put back."""
    import asyncio

    if (task := session.in_flight) is not None and not task.done():
        task.cancel()  # Ctrl-C mid-write: stop the writes before the clients close under them
        await asyncio.gather(task, return_exceptions=True)
    await session.release()
    if clip is not None:
        clip.last = None
        await clip.source.aclose()
    if tty is not None:
        tty.restore()


def _incident_choice(incident: bool, revoke_now: bool, standby_first: bool) -> str | None:
    """--revoke-now or --standby-first (with --incident only, one of them)."""
    if (revoke_now or standby_first) and not incident:
        raise Fail("--revoke-now and --standby-first go with --incident", Exit.PLAN_INVALID)
    if revoke_now and standby_first:
        raise Fail("choose one of --revoke-now and --standby-first", Exit.PLAN_INVALID)
    return "revoke-now" if revoke_now else "standby-first" if standby_first else None


def _alternating(
    ctx: Context, plan: Plan, source: str, *, flow: str, choice: str | None, reason: str, quiet: bool, json: bool
) -> int:
    """An alternating plan's rotation (or incident), with the same key sources as a single-app one."""
    from rotator.cli import alternating

    for row in ctx.journal.unfinished(plan.name):
        err().print(f"[yellow]! rotation {row.id} did not finish ({row.state}): `rotator resume {row.id}`[/]")
    report = alternating.run_cli(
        plan,
        ctx.journal,
        flow=flow,
        key_stdin=source == "stdin",
        clipboard=source == "clipboard",
        reason=reason,
        quiet=quiet,
        choice=choice,
    )
    return alternating.finish_alternating(report, json, plan)


def _say_armed(
    state: RotationState, armed: ArmResult, clip: Clipboard | None, *, interactive: bool, dry_run: bool
) -> None:
    """What the operator reads once armed: the key in use, the API's state, the steps to take."""
    err().print(
        f"fingerprint now: {armed.old_fingerprint or '(no key in the primary yet)'}"
        + (f" (version {armed.old_version})" if armed.old_version else "")
    )
    if (probe := state.probe_check) is not None and probe.ok is not True:
        err().print(api_down(probe.detail, state.accept_unprobed))
    err().print(DRY_RUN_STEPS if dry_run else dashboard_steps(interactive, clip is not None))
    if clip is not None:
        from rotator.clipboard import HISTORY_WARNING

        err().print(f"watching the clipboard: {clip.source.describe()}")
        err().print(f"[yellow]! {HISTORY_WARNING}[/]")


async def _clear_clipboard(clip: Clipboard, report: Report) -> None:
    """The clipboard that still holds the key just written is cleared."""
    if clip.last is not None and report.new_fingerprint == clip.last.fingerprint:
        if await clip.source.clear_if_unchanged(clip.last):
            err().print("clipboard cleared (it still held the key)")


def _outcome(session: ArmedSession, report: Report | None) -> Report:
    """The session's end as the command's: its report, the last refusal's, or one line."""
    from rotator.pipeline.session import Outcome

    if session.error is not None:
        raise session.error
    if report is not None:
        return report
    attempt = session.last_refusal
    if attempt is None:
        raise Fail(f"the armed rotation was closed: {session.closed_reason}", Exit.ERROR)
    if attempt.outcome is Outcome.REJECTED or attempt.report is None:
        raise Fail(attempt.message, Exit.KEY_REFUSED, attempt.report)
    return attempt.report


@click.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option(
    "--key-from",
    type=click.Choice(KEY_FROM),
    default=None,
    help="Where the new key comes from: a hidden prompt (default), stdin, or the clipboard"
    " (the dashboard's reset copies it there; raced with the prompt on a terminal).",
)
@click.option("--key-stdin", is_flag=True, help="Same as --key-from stdin.")
@click.option("--keep-clipboard", is_flag=True, help="With --key-from clipboard: do not clear it afterwards.")
@click.option("--dry-run", is_flag=True, help="Arm and probe only; write nothing.")
@click.option("--reason", default="", help="Why (journaled), e.g. 'planned' or 'incident INC-42'.")
@click.option("--force", is_flag=True, help="Write the primary even if it changed since arm (no check-and-set).")
@click.option("--accept-unprobed", is_flag=True, help="Write even when the probe cannot reach the API (outage).")
@click.option("--resync", is_flag=True, help="The key the primary already holds may be pasted: copy it everywhere.")
@output.json_option
@output.verbose_option
@output.quiet_option
@click.option(
    "--incident",
    is_flag=True,
    help="The key in use leaked. Alternating plans: move off it first. Single-app: recorded as an incident"
    " (reason, report, journal, `show`) and the leaked key's revocation is always checked.",
)
@click.option("--revoke-now", is_flag=True, help="With --incident and no valid standby: the single-app flow (outage).")
@click.option("--standby-first", is_flag=True, help="With --incident and no valid standby: re-key the standby first.")
@click.option(
    "--flow",
    "flow_name",
    default=None,
    metavar="NAME",
    help="Run another registered flow of the plan (default: rotate; `incident` with --incident).",
)
@click.pass_obj
def rotate(
    ctx: Context,
    plan_path: str,
    key_from: str | None,
    key_stdin: bool,
    keep_clipboard: bool,
    dry_run: bool,
    reason: str,
    force: bool,
    accept_unprobed: bool,
    resync: bool,
    as_json: bool,
    quiet: bool,
    incident: bool,
    revoke_now: bool,
    standby_first: bool,
    flow_name: str | None,
) -> int:
    """Arm, take the new key, probe it, write it everywhere, signal consumers.

    On an alternating plan: promote the standby, then re-key the retired app (0 failed calls)."""

    choice = _incident_choice(incident, revoke_now, standby_first)
    if key_stdin and key_from not in (None, "stdin"):
        raise Fail(f"--key-stdin and --key-from {key_from} disagree: pick one", Exit.PLAN_INVALID)
    source = "stdin" if key_stdin else (key_from or "prompt")
    plan = load(plan_path)
    journal = ctx.journal
    if flow_name is not None and incident:
        raise Fail("--flow and --incident disagree: pick one", Exit.PLAN_INVALID)
    spec = _find_flow(plan, flow_name or ("incident" if incident and plan.alternating else "rotate"))
    if dry_run and not spec.dry_run and not plan.alternating:
        raise Fail(f"--dry-run does not apply to the {spec.name} flow", Exit.PLAN_INVALID)
    if plan.alternating:
        if dry_run or force or accept_unprobed:
            raise Fail("--dry-run, --force and --accept-unprobed are for single-app plans", Exit.PLAN_INVALID)
        return _alternating(ctx, plan, source, flow=spec.name, choice=choice, reason=reason, quiet=quiet, json=as_json)
    if standby_first:
        raise Fail(
            "--standby-first needs an alternating plan (this plan has one app: there is no standby)", Exit.PLAN_INVALID
        )
    if incident and "incident" not in reason.lower():
        reason = f"incident: {reason}" if reason else "incident"
    for row in journal.unfinished(plan.name):
        err().print(
            f"[yellow]! rotation {row.id} of {plan.name} did not finish ({row.state}); "
            f"`rotator resume {row.id}` completes it from the primary[/]"
        )
    from rotator.pipeline.state import RotationState

    state = RotationState(
        plan,
        journal,
        kind=spec.kind,
        reason=reason,
        force=force,
        accept_unprobed=accept_unprobed,
        resync=resync,
        incident=incident,
        progress_fn=progress(quiet),
    )
    from rotator.pipeline.flows import FlowOptions

    flow = spec.make(FlowOptions(dry_run=dry_run, unavailable_keeps_armed=False))  # unchecked: rerun, --accept-unprobed
    running = _rotate(state, flow, key_from=source, keep_clipboard=keep_clipboard, dry_run=dry_run, quiet=quiet)
    try:
        report = run_flow(state, running)
    except Fail as exc:
        if exc.report is not None:  # a rejected paste: nothing written, but the plan's people hear of it
            notify(plan, exc.report)
        raise
    return finish(report, as_json, plan)
