"""When a run is news: the one rule for telling a plan's `[[notify]]` entries about it.

A run is news when it failed or when it changed something (a target written).  A dry run
is never news, and neither is a sync or resume that found everything in place: "never page
for non-news".  A drift check is never news either: it writes nothing, and whoever ran it
reads its answer (exit 8 where a backend differs); the sync that repairs the drift is news.  The CLI applies it to every run it finishes, and so do the service
(`ServiceContext.tell`: a rotation or flow from the page, a resume, a sync, a drift check)
and its scheduler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotator.report import RunKind, RunState, TargetStatus

if TYPE_CHECKING:
    from rotator.report import Report


def is_news(report: Report) -> bool:
    """True when `report` failed or wrote something; never for a dry run or a drift check."""
    if report.state == RunState.DRY_RUN or report.kind == RunKind.CHECK:
        return False
    return report.exit_code != 0 or any(t.status == TargetStatus.OK for t in report.targets)
