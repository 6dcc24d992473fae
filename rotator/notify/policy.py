"""When a run is news: the one rule for telling a plan's `[[notify]]` entries about it.

A run is news when it failed or when it changed something (a target written).  A dry run
is never news, and neither is a sync or resume that found everything in place: "never page
for non-news".  The CLI applies it to every run it finishes; the service and its scheduler
are to apply the same rule (today they keep their own: see docs/design/flows.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotator.report import RunState, TargetStatus

if TYPE_CHECKING:
    from rotator.report import Report


def is_news(report: Report) -> bool:
    """True when `report` failed or wrote something; never for a dry run."""
    if report.state == RunState.DRY_RUN:
        return False
    return report.exit_code != 0 or any(t.status == TargetStatus.OK for t in report.targets)
