"""How commands report: `-o/--output json|table` (`--json` its alias), `-v`/`-q`
after any subcommand, and the one JSON shape every command prints.

Every JSON object on stdout has `schema` (bumped when a field changes meaning or
goes away) and the same field names, whichever command printed it (a journal row's
`old_fp`/`window_s` are printed as the report's `old_fingerprint`/`window_seconds`).
A failure prints `{"schema", "error", "exit_code", ...}` on stdout too, so a script
reading stdout always gets one object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rotator.report import Report

SCHEMA = 1
F = TypeVar("F", bound=Callable[..., Any])

# journal column -> the report's name for it
_NAMES = {
    "old_fp": "old_fingerprint",
    "new_fp": "new_fingerprint",
    "window_s": "window_seconds",
    "fp": "fingerprint",
}


class Options:
    """This invocation's output choices (set by the options' callbacks; `reset` per run)."""

    json = False
    quiet = False
    verbose = 0


OPTS = Options()


def reset(*, quiet: bool = False, verbose: int = 0) -> None:
    """The group's own -q/-v; a subcommand's add to them."""
    OPTS.json, OPTS.quiet, OPTS.verbose = False, quiet, verbose


def _set_output(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        OPTS.json = value == "json"


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        OPTS.json = True
    return OPTS.json


def _set_quiet(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    OPTS.quiet = OPTS.quiet or value
    return OPTS.quiet


def _set_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:
        from rotator.logs import configure

        OPTS.verbose += value
        configure(level={1: "info"}.get(OPTS.verbose, "debug"))


def json_option(f: F) -> F:
    """`--json` (as `as_json`) and `-o/--output json|table`."""
    f = click.option("--json", "as_json", is_flag=True, callback=_set_json, help="Same as --output json.")(f)
    return click.option(  # type: ignore[return-value]
        "-o",
        "--output",
        type=click.Choice(["table", "json"]),
        is_eager=True,
        expose_value=False,
        callback=_set_output,
        help="json: one JSON object on stdout (docs/reference/json.md); table: text (default).",
    )(f)


def quiet_option(f: F) -> F:
    """`-q/--quiet` as `quiet` (also true when given before the subcommand)."""
    return click.option(  # type: ignore[return-value]
        "-q", "--quiet", is_flag=True, callback=_set_quiet, help="Print nothing but errors and the outcome line."
    )(f)


def verbose_option(f: F) -> F:
    return click.option(  # type: ignore[return-value]
        "-v", "--verbose", count=True, expose_value=False, callback=_set_verbose, help="More log output (-vv debug)."
    )(f)


def reporting(f: F) -> F:
    """The options of a command that reports: -o/--json, -v."""
    return verbose_option(json_option(f))


def wants_json() -> bool:
    return OPTS.json


def dumps(obj: dict[str, Any]) -> str:
    import json  # not at the top: --help and --version do not need it

    return json.dumps({"schema": SCHEMA, **obj}, indent=2, default=str)


def emit(obj: dict[str, Any]) -> None:
    click.echo(dumps(obj))


def report_dict(report: Report) -> dict[str, Any]:
    return report.as_dict()


def emit_report(report: Report, notifications: list[dict[str, Any]] | None = None) -> None:
    """A report; one that did not end done also has `error` (its outcome line), as a failure's JSON has."""
    body = report_dict(report)
    if notifications:
        body["notifications"] = notifications
    if report.exit_code:
        body["error"] = report.message
    emit(body)


def renamed(row: dict[str, Any]) -> dict[str, Any]:
    """A journal row (or event) under the report's field names."""
    return {_NAMES.get(k, k): v for k, v in row.items()}


def emit_error(message: str, code: int, extra: Any = None) -> None:
    """A failure as JSON on stdout: the error line, the exit code, and what is known (a report, the rotation)."""
    body: dict[str, Any] = {}
    if extra is not None and hasattr(extra, "as_dict"):
        body.update(extra.as_dict())  # a report: its fields, as a successful run prints them
    elif isinstance(extra, dict):
        body.update(extra)
    emit({**body, "error": message.removeprefix("rotator: "), "exit_code": int(code)})
