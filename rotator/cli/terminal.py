"""The terminal front end of an armed session, whatever its flow: what the operator sees on
stderr (`Terminal`, the session's `Listener`), where the keys come from (`feed`: a hidden
prompt, stdin, the clipboard raced with the prompt; `rotator.cli.key_input`), and the
terminal's modes put back at the end.  `rotate` (both kinds of plan), `rekey` and `rollback`
use it; the page is the service's front end (`service.sessions.Held`)."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from rotator.cli.context import Fail, err
from rotator.cli.key_input import Clipboard, LineStdin, Prompt, Stdin, start_clipboard
from rotator.exitcodes import Exit
from rotator.pipeline.session_types import Listener, Outcome

if TYPE_CHECKING:
    from rotator.pipeline.ask import Attempt, ResetAsk
    from rotator.pipeline.session import ArmedSession
    from rotator.report import Report
    from rotator.reset_watch import ResetDetected
    from rotator.secret import CleanKey

COUNTER = "the old key stopped working {ago:.1f} s ago — paste the new key now"
NO_TERMINAL = "no terminal to ask for the key on: pipe it in with --key-stdin, or use --key-from clipboard"


class Terminal(Listener):
    """What the operator sees of the session's events: a refused key, the reset seen (a live
    counter), each ask of a flow (which app to reset, where its key goes, how to give it)."""

    def __init__(self, *, prompting: bool, key_stdin: bool = False, clipboard: bool = False) -> None:
        self.prompting = prompting  # a hidden prompt waits at the end of the counter's line
        self.key_stdin = key_stdin
        self.clipboard = clipboard
        self.counter: asyncio.Task[None] | None = None

    # -- the old key's reset, a refused key ----------------------------------
    def reset_detected(self, reset: ResetDetected) -> None:
        console = err()
        if not console.is_terminal:
            console.print(f"! {COUNTER.format(ago=reset.ago())}")
            return
        self.counter = asyncio.ensure_future(self._count(reset))

    async def _count(self, reset: ResetDetected) -> None:
        """The same line, rewritten every 0.1 s (the prompt kept at its end)."""
        f = err().file
        tail = "  new key: " if self.prompting else ""
        try:
            while True:
                f.write(f"\r\x1b[2K\x1b[1;31m! {COUNTER.format(ago=reset.ago())}\x1b[0m{tail}")
                f.flush()
                await asyncio.sleep(0.1)
        finally:
            f.write("\n")
            f.flush()

    def _stop_counter(self) -> None:
        if self.counter is not None:
            self.counter.cancel()
            self.counter = None

    def warning(self, text: str) -> None:
        err().print(f"[yellow]! {escape(text)}[/]")

    def closed(self, reason: str, resume: str | None = None) -> None:
        self._stop_counter()

    def finished(self, report: Report) -> None:
        self._stop_counter()

    def key(self, clean: CleanKey) -> None:
        self._stop_counter()
        self.received(clean.secret.fingerprint, list(clean.warnings))

    def refused(self, attempt: Attempt) -> None:
        if attempt.final:
            return
        if attempt.outcome is Outcome.REJECTED:
            err().print(f"[red]✗ {escape(attempt.detail)}[/]: paste it again")
        else:
            err().print(f"[red]✗ {escape(attempt.message)}[/]: check the key and paste it again")

    # -- a flow's asks ----------------------------------------------------------
    def asked(self, ask: ResetAsk) -> None:
        if ask.refused:
            err().print(f"[red]✗ {escape(ask.refused)}[/]")
        where = "the standby" if ask.slot == "standby" else "the ACTIVE key"
        err().print(f"[bold]Reset {escape(ask.app)}[/] (its new key becomes {where}):")
        err().print(f"  1. Adjutor dashboard → {escape(ask.instruction)}")
        err().print("  2. Copy the new key the dashboard shows.")
        how = "Pipe it in: reading one line from stdin." if self.key_stdin else "Paste it here (hidden)."
        if self.clipboard:
            how = "Reset: the dashboard copies it; rotator takes it from the clipboard" + (
                "." if self.key_stdin or not sys.stdin.isatty() else " (or paste it here, hidden)."
            )
        err().print("  3. " + how)

    def rejected(self, message: str) -> None:
        err().print(f"[red]✗ {escape(message)}[/]" + ("" if self.key_stdin else ": paste it again"))

    def received(self, fingerprint: str, warnings: list[str]) -> None:
        for w in warnings:
            err().print(f"[yellow]! {escape(w)}[/]")
        err().print(f"key received: fingerprint {fingerprint}")

    def notice(self, line: str) -> None:
        err().print(f"[bold red]! {escape(line)}[/]")


def need_terminal(prompt: bool) -> None:
    """Before anything is armed: a hidden prompt needs a terminal."""
    if prompt and not sys.stdin.isatty():
        raise Fail(NO_TERMINAL, Exit.PLAN_INVALID)


async def feed(
    session: ArmedSession, *, prompt: bool, stdin: Stdin | LineStdin | None, clip: Clipboard | None, current: str | None
) -> None:
    """The session's key sources on this terminal: the hidden prompt, or stdin (`Stdin`: one key
    to the end of input; `LineStdin`: one a line), raced with the clipboard (`clip`, watched from
    now on; the key in use, `current`, on it is not a new one)."""
    if clip is not None:
        await start_clipboard(clip, current)
    if prompt:
        session.feed(Prompt())
    elif stdin is not None:
        session.feed(stdin)
    if clip is not None:
        session.feed(clip)


class Modes:
    """The terminal's modes at arm, put back at the end: a hidden prompt still pending when
    the clipboard won leaves echo off otherwise."""

    def __init__(self) -> None:
        self.saved: list[Any] | None = None
        try:
            import termios

            self.fd = sys.stdin.fileno()
            self.saved = termios.tcgetattr(self.fd)
        except Exception:  # noqa: BLE001 - termios.error: not a terminal
            self.saved = None

    def restore(self) -> None:
        if self.saved is None:
            return
        import contextlib
        import termios

        with contextlib.suppress(Exception):
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
