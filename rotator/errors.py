"""Every exception rotator raises on purpose, in one tree.

    Exception
    └── RotatorError              anything below: one line, never a traceback
        ├── PluginError           a target failed; `retryable` says whether trying again can help
        │   └── Conflict          the stored secret changed since arm (check-and-set): never retried
        ├── PlanError             a plan that cannot be used; `problems`, one line each
        ├── RotationError         a rotation stopped before writing; `details` (e.g. the lock)
        └── CommandError          a command failed; `report` for --json

An error that ends a command carries its exit code (rotator.exitcodes) as `exit_code`,
under that one name (RotationError, CommandError, the session's NotArmed); `code` is
an alias kept for callers written before.

Standard library only, so that `rotator --help` and a plugin's import stay cheap.
`PluginError` and `Conflict` are also importable from `rotator.plugin` (and
`rotator`), `PlanError` from `rotator.plan`, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.exitcodes import Exit


class RotatorError(Exception):
    """Base of every error rotator raises on purpose."""

    exit_code: Exit | None = None  # the exit code it ends a command with, when it carries one

    @property
    def code(self) -> Exit | None:
        """`exit_code` under its earlier name (CommandError, NotArmed)."""
        return self.exit_code


class PluginError(RotatorError):
    """A one-line, secret-free reason a target failed.

    `retryable` says whether trying again could help (a timeout, a 5xx) or not
    (access denied, a check-and-set conflict).
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Conflict(PluginError):
    """The stored secret changed between arm and write (check-and-set)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class PlanError(RotatorError):
    """A plan that cannot be used; `problems` are one line each."""

    def __init__(self, problems: list[str]) -> None:
        problems = [_one_line(p) for p in problems]
        super().__init__("\n".join(problems))
        self.problems = problems


def _one_line(text: str) -> str:
    """A key or value from the file may hold line breaks or control characters: escape them."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


class RotationError(RotatorError):
    """Stops a rotation before anything is written; carries the exit code."""

    exit_code: Exit

    def __init__(self, message: str, exit_code: Exit, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.details = details or {}  # e.g. {"lock": who holds the plan and since when}


class CommandError(RotatorError):
    """A one-line failure of a command with its exit code (was `rotator.cli.Fail`)."""

    exit_code: Exit

    def __init__(self, message: str, code: Exit, report: Any = None) -> None:
        super().__init__(message)
        self.exit_code = code
        self.report = report  # a rotator.report.Report, for --json: a script still gets one on stdout
