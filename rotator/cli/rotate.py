"""`rotator rotate`: arm, show the dashboard steps, take the key, write it everywhere.

The flow is `pipeline.session.ArmedSession`'s, the same as the service's; this
module is its terminal: the key sources (a hidden prompt, or stdin) and what is
printed when a key is refused.
"""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING

import click

from rotator.cli.commands import finish, load, progress
from rotator.cli.context import Context, Fail, err
from rotator.exitcodes import Exit

if TYPE_CHECKING:
    from rotator.journal import Journal
    from rotator.pipeline.session import Attempt
    from rotator.plan import Plan
    from rotator.report import Report
    from rotator.secret import CleanKey


class Prompt:
    """A hidden prompt on the terminal, asked again after each refused key."""

    name = "prompt"

    async def read(self) -> str:
        import asyncio

        return await asyncio.to_thread(getpass.getpass, "new key: ")


class Stdin:
    """The key piped in: one key, read once."""

    name = "stdin"

    def __init__(self) -> None:
        self.used = False

    async def read(self) -> bytes | None:
        if self.used:
            return None
        self.used = True
        import asyncio

        return await asyncio.to_thread(_read_key_stdin)


def _read_key_stdin() -> bytes:
    from rotator.secret import MAX_KEY_LENGTH

    data = sys.stdin.buffer.read(MAX_KEY_LENGTH * 4 + 1)
    # Drain the rest without keeping it, so a huge paste does not hang the writer.
    while sys.stdin.buffer.read(65536):
        data = data[: MAX_KEY_LENGTH * 4 + 1] + b"x"
    return data


def _terminal() -> type:
    from rich.markup import escape

    from rotator.pipeline.session import Listener, Outcome

    class Terminal(Listener):
        """What the operator sees of the session's events."""

        def key(self, clean: CleanKey) -> None:
            for w in clean.warnings:
                err().print(f"[yellow]! {escape(w)}[/]")
            err().print(f"key received: fingerprint {clean.secret.fingerprint}")

        def refused(self, attempt: Attempt) -> None:
            if attempt.final:
                return
            if attempt.outcome is Outcome.REJECTED:
                err().print(f"[red]✗ {escape(attempt.detail)}[/]: paste it again")
            else:
                err().print(f"[red]✗ {escape(attempt.message)}[/]: check the key and paste it again")

    return Terminal


def dashboard_steps(interactive: bool) -> str:
    from rotator.pipeline.session import PASTE_PROMPT, PASTE_STDIN, instruction

    head, *steps = instruction(PASTE_PROMPT if interactive else PASTE_STDIN)
    return "\n".join([f"[bold]Armed.[/] {head}", *(f"  {i}. {s}" for i, s in enumerate(steps, 1))])


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
) -> Report:
    from rotator.errors import RotationError
    from rotator.pipeline.session import MAX_KEY_ATTEMPTS, ArmedSession, NotArmed, Outcome
    from rotator.pipeline.state import RotationState

    state = RotationState(
        plan, journal, reason=reason, force=force, accept_unprobed=accept_unprobed, progress_fn=progress(quiet)
    )
    interactive = not key_stdin
    session = ArmedSession(
        state,
        _terminal()(),
        max_attempts=MAX_KEY_ATTEMPTS if interactive else 1,
        unavailable_keeps_armed=False,  # its exit code says: rerun with --accept-unprobed
        dry_run=dry_run,
    )
    try:
        armed = await session.arm()
        if interactive and not sys.stdin.isatty():
            raise Fail("no terminal to ask for the key on: pipe it in with --key-stdin", Exit.PLAN_INVALID)
        if not quiet or interactive:
            err().print(
                f"fingerprint now: {armed.old_fingerprint or '(no key in the primary yet)'}"
                + (f" (version {armed.old_version})" if armed.old_version else "")
            )
            err().print(dashboard_steps(interactive))
        session.feed(Prompt() if interactive else Stdin())
        report = await session.wait()
        if session.error is not None:
            raise session.error
        if report is not None:
            return report
        attempt = session.last_refusal
        if attempt is None:
            raise Fail(f"the armed rotation was closed: {session.closed_reason}", Exit.ERROR)
        if attempt.outcome is Outcome.REJECTED:
            raise Fail(attempt.message, Exit.KEY_REFUSED, attempt.report)
        return attempt.report
    except NotArmed as exc:
        raise Fail(str(exc), exc.code) from None
    except RotationError as exc:
        raise Fail(str(exc), exc.exit_code) from None
    finally:
        await session.release()


@click.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option("--key-stdin", is_flag=True, help="Read the key from standard input instead of a hidden prompt.")
@click.option("--dry-run", is_flag=True, help="Arm and probe only; write nothing.")
@click.option("--reason", default="", help="Why (journaled), e.g. 'planned' or 'incident INC-42'.")
@click.option("--force", is_flag=True, help="Write the primary even if it changed since arm (no check-and-set).")
@click.option("--accept-unprobed", is_flag=True, help="Write even when the probe cannot reach the API (outage).")
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No live progress.")
@click.option("--incident", is_flag=True, help="Alternating plans: the active key leaked; move off it first.")
@click.option("--revoke-now", is_flag=True, help="With --incident and no valid standby: the single-app flow (outage).")
@click.option("--standby-first", is_flag=True, help="With --incident and no valid standby: re-key the standby first.")
@click.pass_obj
def rotate(
    ctx: Context,
    plan_path: str,
    key_stdin: bool,
    dry_run: bool,
    reason: str,
    force: bool,
    accept_unprobed: bool,
    as_json: bool,
    quiet: bool,
    incident: bool,
    revoke_now: bool,
    standby_first: bool,
) -> int:
    """Arm, take the new key, probe it, write it everywhere, signal consumers.

    On an alternating plan: promote the standby, then re-key the retired app (0 failed calls)."""
    import asyncio

    if (revoke_now or standby_first) and not incident:
        raise Fail("--revoke-now and --standby-first go with --incident", Exit.PLAN_INVALID)
    if revoke_now and standby_first:
        raise Fail("choose one of --revoke-now and --standby-first", Exit.PLAN_INVALID)
    plan = load(plan_path)
    journal = ctx.journal
    if plan.alternating:
        from rotator.cli import alternating

        if dry_run or force or accept_unprobed:
            raise Fail("--dry-run, --force and --accept-unprobed are for single-app plans", Exit.PLAN_INVALID)
        for row in journal.unfinished(plan.name):
            err().print(f"[yellow]! rotation {row.id} did not finish ({row.state}): `rotator resume {row.id}`[/]")
        choice = "revoke-now" if revoke_now else "standby-first" if standby_first else None
        report = asyncio.run(
            alternating.run(
                plan,
                journal,
                flow="incident" if incident else "rotate",
                key_stdin=key_stdin,
                reason=reason,
                quiet=quiet,
                choice=choice,
            )
        )
        return alternating.finish_alternating(report, as_json)
    for row in journal.unfinished(plan.name):
        err().print(
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
            from rotator.render import report_json

            click.echo(report_json(exc.report))
        raise
    return finish(result, as_json)
