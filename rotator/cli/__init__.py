"""The `rotator` command: the group, its global options, and the exit-code map.

Every failure an operator can cause ends in one line naming what to fix and a
distinct exit code (rotator.exitcodes); a traceback is a bug.

Start-up is kept to what a command uses: this package and the command modules
import only click and standard-library-light rotator modules at the top, so
`rotator --help` and `--version` do not pay for sqlalchemy, httpx or pydantic
(`benchmarks/startup.py` measures it); each command imports its own.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

# First, before click and the commands load: a Ctrl-C meanwhile is one line and exit 130.
from rotator.cli import _startup

# isort: split
import click

from rotator.cli import adopt, alternating, commands, init, journal_view, output, reference, rotate, status
from rotator.cli.context import Context, Fail, err
from rotator.errors import CommandError, PlanError, RotatorError
from rotator.exitcodes import Exit
from rotator.proxy.command import proxy
from rotator.service.command import serve

__all__ = ["Context", "Fail", "cli", "err", "main"]


ENVIRONMENT = """\b
Environment:
  ROTATOR_DB              journal database URL (as --db; default SQLite in the data dir)
  ROTATOR_DATA_DIR        where the SQLite journal lives (default $XDG_STATE_HOME/rotator)
  ROTATOR_API_TOKEN       `serve`: the token the API and page require
  ROTATOR_API_TOKEN_FILE  `serve`: ...read from this file instead
  ROTATOR_HOST            `serve`: address to listen on (as --host)
  ROTATOR_PORT            `serve`: port to listen on (as --port)
A plan's `{ env = "NAME" }` settings read NAME from the environment too.
Exit codes: `rotator help exit-codes` (0 done, 1 a bug, 2 bad input, 130 interrupted...)."""


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,
    epilog=ENVIRONMENT,
)
@click.option("--db", envvar="ROTATOR_DB", help="Journal database URL (default: SQLite in $ROTATOR_DATA_DIR).")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug); also after the command.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the outcome line; also after the command.")
@click.version_option(None, "-V", "--version", package_name="rotator")
@click.pass_context
def cli(ctx: click.Context, db: str | None, verbose: int, quiet: bool) -> None:
    """Rotate an API key into every backend and consumer with the shortest possible window."""
    from rotator.logs import configure

    output.reset(quiet=quiet, verbose=verbose)
    configure(level={0: "warning", 1: "info"}.get(verbose, "debug"))
    ctx.obj = Context(db)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(0)


def _fail(message: str, code: int, extra: object = None, summary: str | None = None) -> NoReturn:
    """The one error line on stderr; with --json also the JSON error object on stdout (`summary` its error)."""
    for line in message.splitlines() or [message]:
        click.echo(line, err=True)
    if output.wants_json():
        output.emit_error(summary or message, code, extra)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the command; map every outcome to its exit code (the one place that does)."""
    os.umask(0o077)  # anything rotator creates is private to its user
    _startup.default_sigint()
    output.reset()
    try:
        rv = cli.main(args=argv, prog_name="rotator", standalone_mode=False)
    except PlanError as exc:
        n = len(exc.problems)
        summary = exc.problems[0] if n == 1 else f"the plan has {n} problems (see `problems`)"
        _fail("\n".join(exc.problems), Exit.PLAN_INVALID, {"problems": exc.problems}, summary)
    except CommandError as exc:
        _fail(f"rotator: {exc}", exc.exit_code, exc.report)
    except (click.exceptions.Abort, KeyboardInterrupt):
        # Commands that write catch Ctrl-C themselves and say what they left (commands.run_flow).
        _fail(_startup.INTERRUPTED_LINE, Exit.INTERRUPTED)
    except click.UsageError as exc:
        hint = f" (try '{exc.ctx.command_path} -h')" if exc.ctx is not None else ""
        _fail(f"rotator: {exc.format_message()}{hint}", Exit.PLAN_INVALID)
    except click.ClickException as exc:
        _fail(f"rotator: {exc.format_message()}", Exit.PLAN_INVALID)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - logged at debug; the operator gets one line
        if isinstance(exc, RotatorError) and exc.exit_code is not None:  # RotationError, NotArmed: their own code
            _fail(f"rotator: {exc}", exc.exit_code)
        from rotator.cli.context import db_reason, is_db_error
        from rotator.logs import get_logger

        get_logger("rotator.cli").debug("internal error", exc_info=True)
        if is_db_error(exc):
            _fail(f"rotator: the journal could not be written or read ({db_reason(exc)})", Exit.JOURNAL)
        _fail(f"rotator: internal error ({type(exc).__name__}); rerun with -vv for details", Exit.ERROR)
    sys.exit(rv if isinstance(rv, int) else 0)


for command in (
    init.init,
    commands.check,
    rotate.rotate,
    commands.resume,
    alternating.rekey,
    alternating.rollback,
    status.status,
    commands.sync,
    adopt.adopt,
    journal_view.history,
    journal_view.show,
    commands.plugins,
    commands.completion,
    commands.demo,
    serve,
    proxy,
    reference.schema,
    reference.help_topic,
):
    cli.add_command(command)

# `rotator --help` lists each command on one short, complete line (click would clip the docstring).
SHORT_HELP = {
    "check": "Validate plans (no network).",
    "rotate": "Arm, take the new key, write it everywhere.",
    "resume": "Finish an interrupted or partial rotation.",
    "rekey": "Alternating: re-key the standby app.",
    "rollback": "Alternating: undo the last promote.",
    "status": "Each key works, refused or unchecked; drift, lock.",
    "sync": "Copy the primary's key to backends that differ.",
    "history": "List recent rotations and syncs.",
    "show": "Print one rotation's audit trail.",
    "plugins": "List installed plugins, or a plan's targets.",
    "completion": "Print the shell completion script.",
    "demo": "Run whole rotations against local stand-ins.",
    "serve": "Run the service: schedules, API, web page.",
    "schema": "Print the plan's JSON Schema.",
    "help": "Print exit codes, or every plan setting.",
    "init": "Write a commented starter plan.",
    "proxy": "Serve the API locally with the key; hold refused calls.",
    "adopt": "Record when the key in use was set (its age).",
}
for name, command in cli.commands.items():
    command.short_help = SHORT_HELP.get(name, command.short_help)
