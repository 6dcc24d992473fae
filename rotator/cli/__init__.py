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

import click

from rotator.cli import alternating, commands, journal_view, rotate
from rotator.cli.context import Context, Fail, err
from rotator.errors import CommandError, PlanError
from rotator.exitcodes import Exit
from rotator.service.command import serve

__all__ = ["Context", "Fail", "cli", "err", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="ROTATOR_DB", help="Journal database URL (default: SQLite in $ROTATOR_DATA_DIR).")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="rotator")
@click.pass_context
def cli(ctx: click.Context, db: str | None, verbose: int) -> None:
    """Rotate an API key into every backend and consumer with the shortest possible window."""
    from rotator.logs import configure

    configure(level={0: "warning", 1: "info"}.get(verbose, "debug"))
    ctx.obj = Context(db)


def main(argv: list[str] | None = None) -> None:
    """Run the command; map every outcome to its exit code (the one place that does)."""
    os.umask(0o077)  # anything rotator creates is private to its user
    try:
        rv = cli.main(args=argv, prog_name="rotator", standalone_mode=False)
    except PlanError as exc:
        for line in exc.problems:
            click.echo(line, err=True)
        sys.exit(Exit.PLAN_INVALID)
    except CommandError as exc:
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
    except Exception as exc:  # noqa: BLE001 - logged at debug; the operator gets one line
        from rotator.logs import get_logger

        get_logger("rotator.cli").debug("internal error", exc_info=True)
        click.echo(f"rotator: internal error ({type(exc).__name__}); rerun with -vv for details", err=True)
        sys.exit(Exit.ERROR)
    sys.exit(rv if isinstance(rv, int) else 0)


for command in (
    commands.check,
    rotate.rotate,
    commands.resume,
    alternating.rekey,
    alternating.rollback,
    alternating.status,
    commands.sync,
    journal_view.history,
    journal_view.show,
    commands.plugins,
    commands.demo,
    serve,
):
    cli.add_command(command)
