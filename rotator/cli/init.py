"""`rotator init`: write a commented starter plan (rotator.starter)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from rotator.cli.context import Fail
from rotator.exitcodes import Exit
from rotator.starter import ALTERNATING_PRIMARIES, Primary, starter_plan


def _ask(primary: str | None, alternating: bool) -> tuple[Primary, bool]:
    """On a terminal, the questions a flag did not answer; elsewhere the defaults."""
    if primary is not None or not sys.stdin.isatty():
        return Primary(primary or Primary.ENVFILE), alternating
    if not alternating:
        alternating = click.confirm(
            "Two Adjutor apps with the same API services (alternating mode: a reset fails no call)?", default=False
        )
    choices = [p.value for p in (ALTERNATING_PRIMARIES if alternating else Primary)]
    answer = click.prompt(
        "Where does the key live (the primary)?", type=click.Choice(choices), default=Primary.ENVFILE.value
    )
    return Primary(answer), alternating


@click.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--alternating", is_flag=True, help="Two apps, the standby key kept on the primary.")
@click.option(
    "--primary",
    type=click.Choice([p.value for p in Primary]),
    help="The primary backend (asked on a terminal; default envfile).",
)
@click.option("--name", help="The secret's name (default: the file's name).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: str, alternating: bool, primary: str | None, name: str | None, force: bool) -> int:
    """Write a commented starter plan that passes `rotator check` as written; its placeholders say CHANGE-ME."""
    import tomllib

    from rotator.plan import parse_plan

    target = Path(path)
    if target.exists() and not force:
        raise Fail(f"{path}: already exists; give another path, or --force to overwrite it", Exit.PLAN_INVALID)
    chosen, alternating = _ask(primary, alternating)
    if alternating and chosen not in ALTERNATING_PRIMARIES:
        raise Fail(
            f"--alternating needs a primary that can hold a standby key ({', '.join(ALTERNATING_PRIMARIES)}), "
            f"not {chosen}",
            Exit.PLAN_INVALID,
        )
    secret = name or re.sub(r"[^A-Za-z0-9_.:/-]+", "-", target.stem) or "adjutor"
    text = starter_plan(path, secret, chosen, alternating)
    plan = parse_plan(tomllib.loads(text), target)  # as `rotator check` reads it, before anything is written
    target.write_text(text)
    mode = "alternating apps" if alternating else "single app"
    click.echo(f"wrote {path} ({mode}, primary {plan.primary.type}); fill in what it marks CHANGE-ME:")
    for where, what in plan.placeholders():
        click.echo(f"  {where}: {what}")
    click.echo(f"then: rotator check {path} && rotator rotate {path} --dry-run")
    return 0
