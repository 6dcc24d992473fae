"""`rotator schema` and `rotator help`: the reference the docs publish, from the code."""

from __future__ import annotations

import click

TOPICS = ("exit-codes", "plan")


@click.command()
def schema() -> None:
    """Print the JSON Schema of a plan file (for editors: a `#:schema` line)."""
    from rotator.reference.plan_doc import plan_schema_text

    click.echo(plan_schema_text(), nl=False)


@click.command(name="help")
@click.argument("topic", type=click.Choice(TOPICS))
def help_topic(topic: str) -> None:
    """Print a reference topic: exit-codes, or plan (every setting and default)."""
    if topic == "exit-codes":
        from rotator.reference.exit_doc import exit_codes_text

        click.echo(exit_codes_text(), nl=False)
    else:
        from rotator.reference.plan_doc import plan_reference_markdown

        click.echo(plan_reference_markdown().replace("&lt;", "<").replace("&gt;", ">"), nl=False)
