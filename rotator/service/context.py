"""What the service's parts share: the plans, the journal, the metrics, the tasks the service
owns (so shutdown can wait for them) and the plans' notifications.

`Service` (`core`) is one of these; `rotations`, `runs` and the scheduler's jobs are given it
and use only what is here.  Notifications follow the one rule for every front end
(`notify.policy.is_news`): a run is told when it failed or wrote something, never otherwise.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from rotator.service.errors import NoSuch, ShuttingDown

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from rotator.journal import Journal
    from rotator.key_record import PrimaryRecord
    from rotator.plan import Plan
    from rotator.report import Report
    from rotator.service.metrics import Metrics


class ServiceContext:
    """Plans, journal, metrics, the tasks in flight and the notifications."""

    def __init__(self, plans: list[Plan], journal: Journal, metrics: Metrics) -> None:
        self.plans: dict[str, Plan] = {p.name: p for p in plans}
        self.journal = journal
        self.metrics = metrics
        self.public_url: str | None = None  # the page's address, for the links in notifications
        self.draining = False
        self.primary_records: dict[str, PrimaryRecord] = {}  # the primary's own date of its value (key_age)
        self._tasks: set[asyncio.Task[Any]] = set()  # runs, closes and notifications in flight

    def plan(self, name: str) -> Plan:
        plan = self.plans.get(name)
        if plan is None:
            raise NoSuch(f"no plan named {name!r}")
        return plan

    def refuse_if_draining(self) -> None:
        if self.draining:
            raise ShuttingDown("the service is shutting down")

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` as the service's task (not the request's): shutdown waits for it."""
        task = asyncio.ensure_future(coro)
        self.track(task)
        return task

    @property
    def in_flight(self) -> list[asyncio.Task[Any]]:
        return [t for t in self._tasks if not t.done()]

    # -- notifications -----------------------------------------------------
    def link(self, rid: str | None = None) -> str | None:
        """The page's view of a rotation (of the page itself without `rid`), when the URL is known."""
        if not self.public_url:
            return None
        return self.public_url.rstrip("/") + "/" + (f"#rotation={rid}" if rid else "")

    def tell(self, plan: Plan, report: Report) -> None:
        """The plan's ``[[notify]]`` entries, when the run is news (it failed or wrote something)."""
        from rotator.notify.policy import is_news

        if is_news(report):
            self.notify(plan, report.as_dict())

    def notify(self, plan: Plan, report: dict[str, Any]) -> None:
        """Every ``[[notify]]`` of the plan, in the background: never holds up or fails the run."""
        if not getattr(plan, "notify", None):
            return
        from rotator.notify import notify_all

        self.spawn(notify_all(plan, report, link=self.link(report.get("id"))))


__all__ = ["ServiceContext"]
