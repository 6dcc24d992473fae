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
            from rotator.journal.urls import UnsupportedJournalURL

            where = safe_url(self.db or default_url())
            try:
                self._journal = Journal(self.db)
            except UnsupportedJournalURL as exc:
                raise Fail(f"unsupported journal URL {where}: {exc}; check --db / ROTATOR_DB", Exit.JOURNAL) from None
            except ModuleNotFoundError as exc:
                raise Fail(
                    f"the journal ({where}) needs {exc.name}, which is not installed: "
                    "pip install 'rotator[postgres]' (the PostgreSQL driver)",
                    Exit.MISSING_EXTRA,
                ) from None
            except Exception as exc:  # noqa: BLE001
                raise Fail(
                    f"cannot open the journal ({where}): {db_reason(exc)}; check --db / ROTATOR_DB",
                    Exit.JOURNAL,
                ) from None
        return self._journal


def is_db_error(exc: BaseException) -> bool:
    """A database error (SQLAlchemy's, or its driver's) without importing SQLAlchemy to ask."""
    return any(c.__module__.split(".")[0] in ("sqlalchemy", "sqlite3", "psycopg") for c in type(exc).__mro__)


def db_reason(exc: BaseException) -> str:
    """The database's own words, first line only (SQLAlchemy appends the statement and a link)."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()[0][:200] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {first}" if first else type(orig).__name__


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
