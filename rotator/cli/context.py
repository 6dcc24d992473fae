"""What every command shares: the journal context, the stderr console, `Fail`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rotator.errors import CommandError
from rotator.exitcodes import Exit

if TYPE_CHECKING:
    from rich.console import Console

    from rotator.journal import Journal

Fail = CommandError  # the name every command raises


class Context:
    """What every command gets: the journal's URL, opened on first use."""

    def __init__(self, db: str | None) -> None:
        self.db = db
        self._journal: Journal | None = None

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            from rotator.journal import Journal, default_url, safe_url

            try:
                self._journal = Journal(self.db)
            except Exception as exc:  # noqa: BLE001
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                raise Fail(
                    f"cannot open the journal ({safe_url(self.db or default_url())}): {type(exc).__name__}: {first}",
                    Exit.ERROR,
                ) from None
        return self._journal


_err: list[Console] = []


def err() -> Console:
    """The console on stderr for progress, warnings and reports (made on first use: rich is not free)."""
    if not _err:
        from rich.console import Console

        _err.append(
            Console(
                stderr=True, highlight=False, emoji=False, soft_wrap=True, width=None if sys.stderr.isatty() else 120
            )
        )
    return _err[0]
