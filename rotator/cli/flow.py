"""What every command that runs a flow shares: loading a plan, the progress printer, the
report and its exit code, notifications, running a flow under Ctrl-C, and what an
interruption left.  Its own module so that `commands`, `rotate` and `alternating` import it,
not each other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from rotator.cli import output
from rotator.cli.context import Fail, err
from rotator.exitcodes import Exit

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.plan import Plan
    from rotator.report import Progress, Report

T = TypeVar("T")


def load(path: str) -> Plan:
    from rotator.plan import load_plan

    return load_plan(path)


def progress(quiet: bool) -> Callable[[Progress], None]:
    from rotator.render import ProgressPrinter

    return (lambda p: None) if quiet else ProgressPrinter(err())


def finish(report: Report, as_json: bool, plan: Plan | None = None) -> int:
    """The report: the table on stderr (-q: only the outcome line, when it is not done), the
    plan's notifications, JSON on stdout (--json, with how each notification went)."""
    from rotator.render import print_report

    if not output.OPTS.quiet:
        print_report(err(), report)
    elif report.exit_code:
        err().print(report.message, markup=False)
    sent = notify(plan, report) if plan is not None else []
    if as_json:
        output.emit_report(report, notifications=sent)
    return report.exit_code


def notify(plan: Plan, report: Report) -> list[dict[str, object]]:
    """Tell the plan's `[[notify]]` entries about a run that changed something or failed.

    A dry run, or a sync or resume that found everything in place, is not news.  A
    notification that fails is one line here and never changes the exit code."""
    from rotator.notify.policy import is_news

    if not plan.notify or not is_news(report):
        return []
    import asyncio

    from rotator.notify import notify_all
    from rotator.notify.send import CLI_WAIT

    try:  # at most CLI_WAIT seconds: the exit and --json never wait longer for a receiver
        results = asyncio.run(notify_all(plan, report.as_dict(), wait=CLI_WAIT))
    except Exception as exc:  # noqa: BLE001 - notify_all never raises; this is belt and braces
        err().print(f"! notifications not sent: {type(exc).__name__}", markup=False)
        return []
    for r in results:
        if not r.ok:
            err().print(f"! notification {r.name} ({r.type}) failed: {r.detail}", markup=False)
    return [r.as_dict() for r in results]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def run_flow(state: RotationState, flow: Awaitable[T]) -> T:
    """`asyncio.run(flow)`, with Ctrl-C (SIGINT) and a journal that cannot be written
    told as what they left: asyncio cancels the flow (every `finally` runs: the lock
    is released, a never-keyed entry aborted); the line says what holds the key."""
    import asyncio

    from rotator.cli.context import db_reason, is_db_error

    try:
        return asyncio.run(flow)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        message, details = interrupted(state)
        raise Fail(message, Exit.INTERRUPTED, details) from None
    except Exception as exc:
        if not is_db_error(exc):
            raise
        message, details = interrupted(state, prefix=f"the journal could not be written ({db_reason(exc)})")
        raise Fail(message, Exit.JOURNAL, details) from None


def interrupted(state: RotationState, prefix: str = "interrupted") -> tuple[str, dict[str, object]]:
    """What a rotation stopped part-way left, in the words exit 5 uses; and the same for --json."""
    from rotator.report import GOOD, RunKind

    primary = state.results.get(state.plan.primary.name)
    landed = primary is not None and primary.status in GOOD and primary.finished is not None
    left = [r for name, r in state.results.items() if name != state.plan.primary.name and r.status not in GOOD]
    details: dict[str, object] = {"id": state.id or None, "primary_written": landed, "resumable": False}
    if landed:
        details.update(resumable=True, not_finished=[r.name for r in left])
        names = ", ".join(f"{r.name} ({r.status})" for r in left) or "none (only the journal's close)"
        what = "the new key" if state.kind == RunKind.ROTATE else "the key"
        return f"{prefix}: the primary holds {what}; not finished: {names}; run `rotator resume {state.id}`", details
    if state.key_journaled and state.id:
        details["resumable"] = True
        return (
            f"{prefix} while writing the primary ({state.plan.primary.name}): it may hold the new key; "
            f"`rotator resume {state.id}` finishes from what it holds (or asks for the key again)",
            details,
        )
    if state.key_received is not None:
        return f"{prefix} before the key was journaled: nothing was written; the key must be entered again", details
    return f"{prefix} while waiting for the key: nothing was written; the rotation is closed", details
