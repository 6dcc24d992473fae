"""Alternating plans on the terminal: `rotate` (planned, `--incident`), `rekey`, `rollback`.

The flows are `rotator.pipeline`'s (the service calls the same ones); this
module is their terminal: the `Operator` that shows which app to reset and why
it is safe and reads the key (a hidden prompt, or one line of stdin per reset),
and the printing of the slots.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from rotator.cli import output
from rotator.cli.context import Context, Fail, err
from rotator.cli.flow import finish, load, progress
from rotator.exitcodes import Exit

if TYPE_CHECKING:
    from rotator.journal import Journal
    from rotator.pipeline.slots import Alternating
    from rotator.plan import Plan
    from rotator.report import Report


async def run(
    plan: Plan,
    journal: Journal,
    *,
    flow: str,
    key_stdin: bool = False,
    clipboard: bool = False,
    reason: str = "",
    quiet: bool = False,
    choice: str | None = None,
    seen: dict[str, Any] | None = None,
) -> Report:
    """Arm, say what the flow will do, run it, disarm.  `flow`: rotate | incident | rekey | rollback.

    The flow runs in an `ArmedSession` (its flow hook, `pipeline.alternating_flow`), as the
    service runs it; the keys come from the terminal: a hidden prompt, stdin one a line, or the
    clipboard (raced with the prompt on a terminal), the same sources as a single-app rotation's."""
    from rotator.cli.key_input import Clipboard, LineStdin, clipboard_source, done_with_clipboard
    from rotator.cli.terminal import Modes, Terminal, feed, need_terminal
    from rotator.errors import RotationError
    from rotator.pipeline import flows
    from rotator.pipeline.alternating import IncidentChoice
    from rotator.pipeline.alternating_flow import AlternatingFlow
    from rotator.pipeline.ask import KEEP_WARM_EVERY, MAX_PASTES
    from rotator.pipeline.session import ArmedSession, NotArmed
    from rotator.pipeline.state import RotationState

    seen = seen if seen is not None else {}
    spec = flows.find(flow, alternating=True)
    the_flow = spec.make(flows.FlowOptions(choice=IncidentChoice(choice) if choice else None)) if spec else None
    if spec is None or not isinstance(the_flow, AlternatingFlow):
        raise Fail(f"{flow}: not a flow of an alternating plan this command runs", Exit.PLAN_INVALID)
    state = RotationState(plan, journal, kind=spec.kind, reason=reason or flow, progress_fn=progress(quiet))
    clip = Clipboard(clipboard_source(plan)) if clipboard else None
    # The hidden prompt unless the key is piped in; raced with the clipboard on a terminal only.
    prompt = not key_stdin and (clip is None or sys.stdin.isatty())
    session = ArmedSession(
        state,
        Terminal(prompting=prompt, key_stdin=key_stdin, clipboard=clipboard),
        flow=the_flow,
        keep_warm_every=KEEP_WARM_EVERY,  # the operator may take minutes in the dashboard
        handed_keys=False,  # the terminal's sources only: their end ends the ask
        max_pastes=1 if key_stdin else MAX_PASTES,
    )
    tty = Modes() if prompt and spec.takes_key else None  # the hidden prompt leaves echo off until the end
    try:
        seen["state"] = state
        if spec.takes_key:
            need_terminal(prompt)
        await session.arm(start=False)
        alt = the_flow.alt
        assert alt is not None
        seen["token"] = alt.slots.token  # what the slots were at arm: an interruption says what changed since
        if spec.takes_key:
            active = alt.slots.active.fingerprint if alt.slots.active else None
            stdin = LineStdin() if key_stdin else None  # one key a line: a flow may ask for two
            await feed(session, prompt=prompt, stdin=stdin, clip=clip, current=active)
            if clip is not None:
                err().print(f"watching the clipboard: {clip.source.describe()}")
        err().print(f"slots: {alt.describe()}")
        if flow in ("rotate", "incident") or the_flow.continuing:
            err().print(the_flow.plan_line)
        session.start()
        report = await session.wait()
        if report is not None:
            return report
        if session.error is not None:
            raise session.error
        raise Fail(f"the flow was closed: {session.closed_reason}", Exit.ERROR)
    except NotArmed as exc:
        raise Fail(str(exc), exc.exit_code) from None
    except (RotationError, Fail) as exc:
        line = _what_is_left(str(exc), plan, the_flow.alt, flow)
        raise Fail(line, exc.exit_code, getattr(exc, "report", None)) from None
    finally:
        await session.release()
        if clip is not None:
            await done_with_clipboard(clip)
        if tty is not None:
            tty.restore()


def _what_is_left(line: str, plan: Plan, alt: Alternating | None, flow: str) -> str:
    """A flow stopped: its one line, and what is left to do (an open incident, a re-key after a promote)."""
    from rotator.pipeline import leaked, slots

    if alt is not None and (line_left := leaked.continuing(alt)) is not None:
        return line + f"; incident open: {line_left}: `rotator rotate {plan.path} --incident` continues it"
    if alt is not None and flow != "rollback" and alt.next() is slots.Next.REKEY and not alt.behind:
        from rotator.pipeline.slot_status import left_lines

        return line + "; " + "; ".join(left_lines(plan, alt, []))  # stopped after its promote: say what is left
    return line


def run_cli(plan: Plan, journal: Journal, **kw: Any) -> Report:
    """`run` on its own event loop; Ctrl-C or SIGTERM ends it with one truthful line (`interrupted_line`)."""
    import signal

    seen: dict[str, Any] = {}

    def terminated(signum: int, frame: Any) -> None:
        seen["terminated"] = True
        # As Ctrl-C: asyncio.run's SIGINT handler cancels the main task, which ends with KeyboardInterrupt.
        # Raised here instead, it would land in whatever task runs (a probe of the reset watch), and
        # that task's exception would be logged as a traceback after the interrupted line.
        on_sigint = signal.getsignal(signal.SIGINT)
        if callable(on_sigint) and on_sigint is not signal.default_int_handler:
            on_sigint(signal.SIGINT, frame)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        return asyncio.run(run(plan, journal, seen=seen, **kw))
    except KeyboardInterrupt:
        prefix = "terminated (SIGTERM)" if seen.get("terminated") else "interrupted"
        raise Fail(interrupted_line(plan, journal, seen, prefix), Exit.INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_line(plan: Plan, journal: Journal, seen: dict[str, Any], prefix: str) -> str:
    """What an interrupted alternating flow left, from the slots as they are now (read again) and the
    journal: what moved, what is left, the command that finishes it; never "nothing was written" unless so."""
    from rotator.errors import RotationError
    from rotator.pipeline.slot_status import left_lines, survey

    if "token" not in seen:
        return f"{prefix} while arming: nothing was written"
    try:
        alt = asyncio.run(survey(plan))
    except (RotationError, Exception):  # noqa: BLE001 - the line says it could not tell
        state = seen.get("state")
        rid = getattr(state, "id", "") or "?"
        return (
            f"{prefix}: the slots could not be read again to say what moved; `rotator status {plan.path}` shows "
            f"them, `rotator show {rid}` what was journaled"
        )
    rows = [{"id": r.id, "state": r.state, "resume": f"rotator resume {r.id}"} for r in journal.unfinished(plan.name)]
    left = left_lines(plan, alt, rows)
    changed = alt.slots.token != seen["token"]
    what = f"the slots changed: {alt.describe()}" if changed else "the slots are as they were"
    if not changed and not rows:
        return f"{prefix} while waiting for the key: nothing was written ({alt.describe()})"
    return f"{prefix}: {what}" + ("; left: " + "; ".join(left) if left else "; nothing is left to do")


def print_summary(report: Report) -> None:
    """The lines only an alternating flow has: which app is active, the incident's clock."""
    info = report.alternating
    if not info:
        return
    for who in ("active", "standby"):
        s = info.get(who) or {}
        err().print(f"{who:<8} {s.get('app')}  {s.get('fingerprint') or '(empty)'}")
    inc = info.get("incident")
    if inc and inc.get("leaked_in_use_s") is not None:
        err().print(
            f"incident: the leaked key ({inc.get('leaked_fingerprint')}) stayed in use "
            f"{inc['leaked_in_use_s']:.3f}s after the command started; "
            + (
                f"proven revoked at {_clock(inc['revoked_at'])} ({inc['revoked_after_s']:.1f}s after the start)"
                if inc.get("revoked_at")
                else "NOT proven revoked"
            )
        )
    if mistake := info.get("mistaken_reset"):
        window = mistake.get("failed_call_window_s")
        err().print(
            f"mistaken reset of {mistake.get('app')}: consumers failed "
            + (f"for about {window:.2f}s" if window is not None else "until its new key was written")
        )


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3] + "Z"


def finish_alternating(report: Report, as_json: bool, plan: Plan | None = None) -> int:
    code = finish(report, as_json, plan)
    print_summary(report)
    return code


# -- commands -----------------------------------------------------------------------------------


def _alternating_plan(plan_path: str, what: str) -> Plan:
    plan = load(plan_path)
    if not plan.alternating:
        raise Fail(
            f'{plan_path}: `rotator {what}` needs an alternating plan ([secret] strategy = "alternating")',
            Exit.PLAN_INVALID,
        )
    return plan


@click.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option("--key-stdin", is_flag=True, help="Read the key from standard input (one line) instead of a prompt.")
@click.option(
    "--key-from",
    type=click.Choice(["prompt", "stdin", "clipboard"]),
    default=None,
    help="Where the new key comes from: a hidden prompt (default), stdin, or the clipboard (raced with the prompt).",
)
@click.option("--reason", default="", help="Why (journaled).")
@output.json_option
@output.verbose_option
@output.quiet_option
@click.pass_obj
def rekey(
    ctx: Context, plan_path: str, key_stdin: bool, key_from: str | None, reason: str, as_json: bool, quiet: bool
) -> int:
    """Alternating plans: reset the standby app (no consumer uses it) and store its new key as the standby."""
    if key_stdin and key_from not in (None, "stdin"):
        raise Fail(f"--key-stdin and --key-from {key_from} disagree: pick one", Exit.PLAN_INVALID)
    plan = _alternating_plan(plan_path, "rekey")
    source = "stdin" if key_stdin else (key_from or "prompt")
    report = run_cli(
        plan,
        ctx.journal,
        flow="rekey",
        key_stdin=source == "stdin",
        clipboard=source == "clipboard",
        reason=reason,
        quiet=quiet,
    )
    return finish_alternating(report, as_json, plan)


@click.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option("--reason", default="", help="Why (journaled).")
@output.json_option
@output.verbose_option
@output.quiet_option
@click.pass_obj
def rollback(ctx: Context, plan_path: str, reason: str, as_json: bool, quiet: bool) -> int:
    """Alternating plans: undo the last promote (only before the re-key after it)."""
    plan = _alternating_plan(plan_path, "rollback")
    report = run_cli(plan, ctx.journal, flow="rollback", reason=reason, quiet=quiet)
    return finish_alternating(report, as_json, plan)


def _survey(plan: Plan, journal: Journal | None = None) -> Alternating:
    from rotator.errors import RotationError
    from rotator.pipeline.slot_status import survey

    try:
        return asyncio.run(survey(plan, journal))
    except RotationError as exc:
        raise Fail(str(exc), exc.exit_code) from None


def resume_note(plan: Plan) -> None:
    """After `rotator resume` on an alternating plan: what is left (from the slots)."""
    from rich.markup import escape

    from rotator.pipeline.slot_status import left_lines

    alt = _survey(plan)
    lines = left_lines(plan, alt, [])
    for line in lines:
        err().print(f"[yellow]left: {escape(line)}[/]")
    if not lines:
        err().print(f"nothing left: {alt.describe()}")
