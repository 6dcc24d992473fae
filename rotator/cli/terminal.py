"""What the operator sees on the terminal (stderr) of a flow's asks: which app to reset, where
its key goes, how to give it (prompt, stdin, clipboard), and what came of each paste.  The
single-app rotation's listener (`rotate._terminal`) is to join it here (issue 25)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rotator.cli.context import err

if TYPE_CHECKING:
    from rotator.pipeline.ask import ResetAsk
    from rotator.pipeline.session import Listener


def flow_listener(*, key_stdin: bool, clipboard: bool = False) -> Listener:
    """What the operator sees of the flow's asks on this terminal (stderr)."""
    from rich.markup import escape

    from rotator.pipeline.session import Listener

    class Terminal(Listener):
        def asked(self, ask: ResetAsk) -> None:
            if ask.refused:
                err().print(f"[red]✗ {escape(ask.refused)}[/]")
            where = "the standby" if ask.slot == "standby" else "the ACTIVE key"
            err().print(f"[bold]Reset {escape(ask.app)}[/] (its new key becomes {where}):")
            err().print(f"  1. Adjutor dashboard → {escape(ask.instruction)}")
            err().print("  2. Copy the new key the dashboard shows.")
            how = "Pipe it in: reading one line from stdin." if key_stdin else "Paste it here (hidden)."
            if clipboard:
                how = "Reset: the dashboard copies it; rotator takes it from the clipboard" + (
                    "." if key_stdin or not sys.stdin.isatty() else " (or paste it here, hidden)."
                )
            err().print("  3. " + how)

        def rejected(self, message: str) -> None:
            err().print(f"[red]✗ {escape(message)}[/]" + ("" if key_stdin else ": paste it again"))

        def received(self, fingerprint: str, warnings: list[str]) -> None:
            for w in warnings:
                err().print(f"[yellow]! {escape(w)}[/]")
            err().print(f"key received: fingerprint {fingerprint}")

        def notice(self, line: str) -> None:
            err().print(f"[bold red]! {escape(line)}[/]")

    return Terminal()
