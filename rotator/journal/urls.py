"""Where the journal lives, and its URL as messages may show it."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa


def data_dir() -> Path:
    env = os.environ.get("ROTATOR_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rotator"


def default_url() -> str:
    env = os.environ.get("ROTATOR_DB")
    if env:
        return env
    return f"sqlite:///{data_dir() / 'journal.db'}"


SUPPORTED_DIALECTS = ("sqlite", "postgresql")  # what the journal is tested on; a driver may follow (+psycopg)


class UnsupportedJournalURL(ValueError):
    """A journal URL naming a database rotator does not keep its journal in (or not a URL at all)."""


def require_supported(url: str) -> None:
    """Refuse a URL of another database before any driver is looked for (its missing driver is not the problem)."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme.split("+", 1)[0] not in SUPPORTED_DIALECTS:
        raise UnsupportedJournalURL(
            "rotator keeps its journal in SQLite (sqlite:///PATH) or PostgreSQL (postgresql://USER@HOST/DB)"
        )


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 (SQLAlchemy would pick psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL: say nothing of it
        return "(unparsable URL)"
