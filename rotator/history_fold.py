"""Syncs in a history: the ones that repaired drift are news, the ones that found nothing are not.

A schedule syncing every few minutes fills a history with identical no-op rows;
`rotator history` and the page fold each run of them into one line ("N syncs,
no drift since …") and show what each repairing sync repaired.  Read from the
journal's copy of the report (`drift`, else the backends it wrote).
"""

from __future__ import annotations

import time
from typing import Any

from rotator.report import RunState


def repaired(row: Any) -> list[dict[str, Any]]:
    """The backends a sync repaired: [{backend, before, after, changed_at, ...}] (empty: none)."""
    if row.kind != "sync" or not isinstance(row.report, dict):
        return []
    drift = row.report.get("drift")
    if isinstance(drift, list):
        return [d for d in drift if isinstance(d, dict)]
    # A report from before drift was recorded: the backends it wrote.
    return [
        {"backend": t.get("name"), "before": None, "after": t.get("fingerprint")}
        for t in row.report.get("targets") or []
        if isinstance(t, dict) and t.get("kind") == "backend" and not t.get("primary") and t.get("status") == "ok"
    ]


def is_noop_sync(row: Any) -> bool:
    """A sync that finished with every backend already in line: nothing to tell."""
    return row.kind == "sync" and row.state == RunState.DONE and not repaired(row)


def repaired_text(row: Any) -> str:
    return ", ".join(
        f"{d.get('backend')} ({d.get('before') or 'absent'} → {d.get('after') or '?'})" for d in repaired(row)
    )


def folded_line(rows: list[Any]) -> str:
    """One line for a run of no-op syncs (newest first, as the history lists them)."""
    oldest = rows[-1]
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(oldest.created_at))
    plans = sorted({r.plan for r in rows})
    return f"{'':<26} {'sync':<6} {', '.join(plans):<20} {len(rows)} syncs, no drift since {since}"


def fold(rows: list[Any]) -> list[tuple[Any, list[Any]]]:
    """The rows with each run of consecutive no-op syncs of one plan grouped:
    [(row, []) for a row shown as it is, (first, run) for a folded run of 2 or more]."""
    out: list[tuple[Any, list[Any]]] = []
    run: list[Any] = []

    def flush() -> None:
        if len(run) >= 2:
            out.append((run[0], list(run)))
        else:
            out.extend((r, []) for r in run)
        run.clear()

    for r in rows:
        if is_noop_sync(r) and (not run or run[0].plan == r.plan):
            run.append(r)
            continue
        flush()
        if is_noop_sync(r):
            run.append(r)
        else:
            out.append((r, []))
    flush()
    return out
