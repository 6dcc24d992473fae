"""The service's armed rotations: an `ArmedSession` each (the flow `rotator rotate`
also runs), plus what its watchers need: the events so far, and a way to follow them.

`Held` is the session's listener: every step of the session becomes an event
(`progress`, `armed`, `key`, `refused`, `report`, `closed`) that the page follows
over SSE; the session itself decides what a refused key, an expiry or a lost
lock does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rotator.pipeline.session import ArmedSession, Attempt, Listener, Status, instruction
from rotator.secret import scrub_data
from rotator.service.views import preflight

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.plan import Plan
    from rotator.report import Progress, Report
    from rotator.reset_watch import ResetDetected
    from rotator.secret import CleanKey

RESET_MESSAGE = "the old key stopped working — paste the new key now"


class Held(Listener):
    """One armed rotation in this replica, and its event log."""

    def __init__(
        self,
        state: RotationState,
        operator: str,
        *,
        arm_timeout: float,
        keep_warm_every: float,
        on_end: Callable[[Held, Report | None], None],
    ) -> None:
        self.plan: Plan = state.plan
        self.operator = operator
        self.created_at = time.time()
        self.events: list[dict[str, Any]] = []
        self.last_refusal: dict[str, Any] | None = None
        self._on_end = on_end
        self._wake = asyncio.Event()
        state.progress_fn = self.progress
        self.session = ArmedSession(state, self, arm_timeout=arm_timeout, keep_warm_every=keep_warm_every)

    @property
    def id(self) -> str:
        return self.session.id

    @property
    def state(self) -> Status:
        return self.session.status

    @property
    def done(self) -> bool:
        return self.session.done

    # -- the session's events ---------------------------------------------
    def progress(self, p: Progress) -> None:
        self.push("progress", asdict(p))

    def armed(self) -> None:
        self.push(
            "armed", {"state": "armed", "preflight": preflight(self.session.state), "expires_at": self.expires_at}
        )

    def key(self, clean: CleanKey) -> None:
        self.push("key", {"fingerprint": clean.secret.fingerprint, "warnings": clean.warnings})

    def refused(self, attempt: Attempt) -> None:
        probe = attempt.report.probe
        self.last_refusal = scrub_data({"message": attempt.message, "probe": probe.as_dict() if probe else None})
        self.push("refused", {"message": attempt.message, "attempts_left": attempt.attempts_left})

    def finished(self, report: Report) -> None:
        self.push("report", {"report": report.as_dict(), "timeline_svg": _timeline_svg(report)})
        self._on_end(self, report)

    def reset_detected(self, reset: ResetDetected) -> None:
        # The page runs its own counter from `at` ("the old key stopped working 1.2 s ago").
        self.push("reset", {"reset": reset.as_dict(), "message": RESET_MESSAGE})

    def warning(self, text: str) -> None:
        self.push("warning", {"message": text})

    def closed(self, reason: str, resume: str | None = None) -> None:
        self.push("closed", {"reason": reason, **({"resume": resume} if resume else {})})
        self._on_end(self, None)

    # -- the event log -----------------------------------------------------
    def push(self, kind: str, data: dict[str, Any]) -> None:
        item = {"seq": len(self.events) + 1, "type": kind, "t": time.time(), **data}
        self.events.append(scrub_data(item))
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def follow(self, after: int = 0, heartbeat: float = 15.0) -> AsyncIterator[dict[str, Any] | None]:
        """Every event after `after`, then new ones as they come, until the rotation is
        finished or closed.  Yields None as a heartbeat when nothing happened."""
        i = after
        while True:
            while i < len(self.events):
                i += 1
                yield self.events[i - 1]
            if self.done:
                return
            wake = self._wake
            try:
                await asyncio.wait_for(wake.wait(), heartbeat)
            except TimeoutError:
                yield None

    @property
    def expires_at(self) -> float | None:
        return self.session.expires_at

    def summary(self) -> dict[str, Any]:
        armed = self.session.state.armed
        report = self.session.report
        return scrub_data(
            {
                "id": self.id,
                "plan": self.plan.name,
                "state": self.state,
                "operator": self.operator,
                "created_at": self.created_at,
                "expires_at": self.expires_at if not self.done else None,
                "attempts": self.session.attempts,
                "old_fingerprint": armed.old_fingerprint if armed else None,
                "old_version": armed.old_version if armed else None,
                "preflight": preflight(self.session.state),
                "instruction": instruction(),
                "last_refusal": self.last_refusal,
                "closed_reason": self.session.closed_reason or None,
                "report": report.as_dict() if report else None,
                "reset": self.session.state.reset.as_dict() if self.session.state.reset else None,
                "timeline_svg": _timeline_svg(report),
            }
        )


def _timeline_svg(report: Report | None) -> str | None:
    """The rotation's timeline as inline SVG for the page (rotator.timeline; no build step)."""
    if report is None:
        return None
    from rotator.timeline import build, render_svg

    tl = build(report.as_dict())
    return render_svg(tl) if tl is not None else None
