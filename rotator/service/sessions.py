"""The service's armed rotations: an `ArmedSession` each (the flow `rotator rotate`
also runs), plus what its watchers need: the events so far, and a way to follow them.

`Held` is the session's listener: every step of the session becomes an event
(`progress`, `armed`, `key`, `refused`, `report`, `closed`) that the page follows
over SSE; the session itself decides what a refused key, an expiry or a lost
lock does.

Every session runs a flow; what the page shows beside it is the flow's view: the
single-app rotation's (`SingleView`: the dashboard instruction, the buttons) or an
alternating plan's (`AlternatingView`, `pipeline.alternating_flow`), whose
events add `ask` (reset APP: why no consumer is affected; the slots then),
`rejected`, `notice` (the active app reset by mistake) and `step` for each
journaled step of the flow that the operator waits on: `promote` done, `rekey`
done, `revoked` proven, `rollback` done (`step` and `status` as journaled).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rotator.pipeline import leaked
from rotator.pipeline.alternating_flow import AlternatingFlow
from rotator.pipeline.instructions import PASTE_PAGE, RESET_STEPS
from rotator.pipeline.session import ArmedSession, Attempt, Flow, Listener, Status, instruction
from rotator.pipeline.slots import LastStep
from rotator.report import Step
from rotator.secret import scrub_data
from rotator.service import buttons
from rotator.service.views import preflight

if TYPE_CHECKING:
    from rotator.pipeline.ask import ResetAsk
    from rotator.pipeline.slots import Alternating
    from rotator.pipeline.state import RotationState
    from rotator.plan import Plan
    from rotator.report import Progress, Report
    from rotator.reset_watch import ResetDetected
    from rotator.secret import CleanKey

RESET_MESSAGE = "the old key stopped working — paste the new key now"
RESET_DETAIL = "every consumer still using the old key fails until the new key is written"


FLOW_STEPS = frozenset({Step.PROMOTE, Step.REKEY, Step.REVOKED, Step.ROLLBACK})


class Held(Listener):
    """One armed rotation in this replica, and its event log."""

    SILENT_END = 30.0  # seconds a follower waits for the last event of a session already over

    def __init__(
        self,
        state: RotationState,
        operator: str,
        *,
        arm_timeout: float,
        keep_warm_every: float,
        on_end: Callable[[Held, Report | None], None],
        flow: Flow,
    ) -> None:
        self.plan: Plan = state.plan
        self.operator = operator
        self.created_at = time.time()
        self.events: list[dict[str, Any]] = []
        self.last_refusal: dict[str, Any] | None = None
        self._on_end = on_end
        self._wake = asyncio.Event()
        self._told = False  # its last event (`report` or `closed`) is in the log
        self.flow = flow
        self._swapped: str | None = None  # a promote / roll back swapped the slots: its report is next
        state.progress_fn = self.progress
        self.session = ArmedSession(state, self, arm_timeout=arm_timeout, keep_warm_every=keep_warm_every, flow=flow)
        self.view: View = VIEWS.get(type(flow), SingleView)(self)

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
            "armed",
            {
                "state": "armed",
                "preflight": preflight(self.session.state),
                "expires_at": self.expires_at,
                **self.view.armed(),
            },
        )

    def key(self, clean: CleanKey) -> None:
        self.push("key", {"fingerprint": clean.secret.fingerprint, "warnings": clean.warnings})

    def refused(self, attempt: Attempt) -> None:
        probe = attempt.report.probe if attempt.report is not None else None
        self.last_refusal = scrub_data({"message": attempt.message, "probe": probe.as_dict() if probe else None})
        self.push("refused", {"message": attempt.message, "attempts_left": attempt.attempts_left})

    def finished(self, report: Report) -> None:
        self._told = True
        self.push("report", {"report": report.as_dict(), "timeline_svg": _timeline_svg(report)})
        self._on_end(self, report)

    def reset_detected(self, reset: ResetDetected) -> None:
        # The page runs its own counter from `at` ("the old key stopped working 1.2 s ago").
        self.push(
            "reset", {"reset": reset.as_dict(), "message": RESET_MESSAGE, "detail": RESET_DETAIL, **self.view.reset()}
        )

    def warning(self, text: str) -> None:
        self.push("warning", {"message": text})

    def closed(self, reason: str, resume: str | None = None) -> None:
        self._told = True
        self.push("closed", {"reason": reason, **({"resume": resume} if resume else {})})
        self._on_end(self, None)

    # -- an alternating flow's events -----------------------------------------
    def asked(self, ask: ResetAsk) -> None:
        self.push("ask", {**self.view.ask_dict(ask), "expires_at": self.expires_at, **self.view.armed()})

    def rejected(self, message: str) -> None:
        self.push("rejected", {"message": message})

    def received(self, fingerprint: str, warnings: list[str]) -> None:
        self.push("key", {"fingerprint": fingerprint, "warnings": warnings})

    def notice(self, line: str) -> None:
        self.push("notice", {"line": line})

    def journaled(self, step: str, status: str, fields: dict[str, Any]) -> None:
        """The flow's journal events the page waits on, as `step` events; a swap's report
        (every target holds the key now) as its step `done`."""
        keep = {k: fields.get(k) for k in ("target", "detail", "fingerprint") if fields.get(k) is not None}
        if step in FLOW_STEPS and status != "running":
            self.push("step", {"step": step, "status": status, **keep})
            self._swapped = step if step in (Step.PROMOTE, Step.ROLLBACK) and status == "ok" else None
        elif step == Step.REPORT and self._swapped is not None:
            self.push("step", {"step": self._swapped, "status": "done" if status == "done" else status, **keep})
            self._swapped = None

    # -- the event log -----------------------------------------------------
    def push(self, kind: str, data: dict[str, Any]) -> None:
        item = {"seq": len(self.events) + 1, "type": kind, "t": time.time(), **data}
        self.events.append(scrub_data(item))
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def follow(self, after: int = 0, heartbeat: float = 15.0) -> AsyncIterator[dict[str, Any] | None]:
        """Every event after `after`, then new ones as they come, until the last one
        (`report` or `closed`).  Yields None as a heartbeat when nothing happened.

        Not until the session is `done`: a closing session is done before its `closed`
        event (it releases the plan's lock first), and a follower woken in between (a
        heartbeat, another event) would end the stream without saying why.  Only a
        session that ended and stays silent for `SILENT_END` seconds (disarming raised
        before its last event) ends the stream without one."""
        i = after
        done_at: float | None = None
        while True:
            while i < len(self.events):
                i += 1
                yield self.events[i - 1]
            if self._told:
                return
            if self.done:
                done_at = done_at if done_at is not None else time.monotonic()
                if time.monotonic() - done_at >= self.SILENT_END:
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
                **self.view.summary(),
                "last_refusal": self.last_refusal,
                "closed_reason": self.session.closed_reason or None,
                "report": report.as_dict() if report else None,
                "reset": self.session.state.reset.as_dict() if self.session.state.reset else None,
                "timeline_svg": _timeline_svg(report),
            }
        )


class SingleView:
    """What the page shows beside a single-app rotation: the dashboard instruction and the buttons."""

    def __init__(self, held: Held) -> None:
        self.held = held

    def armed(self) -> dict[str, Any]:
        return {}

    def reset(self) -> dict[str, Any]:
        return {"buttons": buttons.single(reset_seen=True).as_dict()}

    def summary(self) -> dict[str, Any]:
        reset_seen = self.held.session.state.reset is not None
        return {"instruction": instruction(), "buttons": buttons.single(reset_seen=reset_seen).as_dict()}

    def ask_dict(self, ask: ResetAsk) -> dict[str, Any]:
        return {"app": ask.app, "why": ask.why, "instruction": ask.instruction, "slot": ask.slot}


class AlternatingView:
    """What the page shows beside an alternating plan's flow: the slots, what it waits for, Roll back."""

    def __init__(self, held: Held) -> None:
        assert isinstance(held.flow, AlternatingFlow)
        self.held = held
        self.flow: AlternatingFlow = held.flow
        held.session.state.event_fn = held.journaled  # its promote / re-key / revoked steps: `step` events

    def armed(self) -> dict[str, Any]:
        return {"alternating": self.alternating()}

    def reset(self) -> dict[str, Any]:
        return {}

    def summary(self) -> dict[str, Any]:
        return {"instruction": None, "buttons": None, "alternating": self.alternating()}

    def ask_dict(self, ask: ResetAsk) -> dict[str, Any]:
        alt = self.flow.alt
        safe = ask.slot == "standby" and alt is not None
        return {
            "app": ask.app,
            "why": ask.why,
            "instruction": ask.instruction,
            # The numbered steps the page shows under "Reset APP in the Adjutor dashboard".
            "steps": [f"Adjutor dashboard → {ask.instruction}", *RESET_STEPS[1:], PASTE_PAGE],
            "slot": ask.slot,
            "attempt": ask.attempt,
            "refused": ask.refused,
            # Why no consumer is affected (the standby), or what the reset of the active app costs.
            "safe": safe,
            "because": (
                f"{ask.app} is the standby: every backend and consumer uses {alt.active_app}'s key "
                f"({alt.slots.active.fingerprint if alt.slots.active else '?'}), so resetting {ask.app} "
                "fails no consumer call"
            )
            if safe and alt is not None
            else ask.why,
        }

    def alternating(self) -> dict[str, Any]:
        """The flow, its plan line, the slots now, what it waits for, whether Roll back is possible."""
        flow = self.flow
        alt = flow.alt
        asking = self.held.session.asking
        # Why Roll back is not possible now (an open incident: its leaked key is never put back), or None;
        # the page shows its button only on `can_roll_back` (`rollback_possible`, as `status --json` says it).
        refusal = flow.rollback_refusal() if asking is not None else "a step is running"
        return {
            "flow": flow.name.value,
            "choice": flow.choice.value if flow.choice else None,
            "plan_line": flow.plan_line,
            "slots": alt.as_dict() if alt is not None else None,
            "asking": self.ask_dict(asking) if asking is not None else None,
            "rollback_refusal": refusal,
            "can_roll_back": refusal is None,
            "rollback_possible": refusal is None,
            "incident": _incident(alt),
            "rolled_back": flow.rolled_back,
            "buttons": self._flow_buttons(asking),
        }

    def _flow_buttons(self, asking: ResetAsk | None) -> dict[str, Any] | None:
        """What the paste button and Cancel do while the flow waits for `asking`'s key."""
        alt = self.flow.alt
        if asking is None or alt is None:
            return None
        return buttons.alternating(
            flow=self.flow.name.value,
            app=asking.app,
            slot=asking.slot,
            promoted=alt.last_step is LastStep.PROMOTE,
            active_app=alt.active_app,
        ).as_dict()


View = SingleView | AlternatingView
# Each flow's view on the page (any other flow: the single-app rotation's).
VIEWS: dict[type, Callable[[Held], View]] = {AlternatingFlow: AlternatingView}


def _timeline_svg(report: Report | None) -> str | None:
    """The rotation's timeline as inline SVG for the page (rotator.timeline; no build step)."""
    if report is None:
        return None
    from rotator.timeline import build, render_svg

    tl = build(report.as_dict())
    return render_svg(tl) if tl is not None else None


def _incident(alt: Alternating | None) -> dict[str, Any] | None:
    """An open incident's leaked key (app, fingerprint, id) and where it is now; None when none is."""
    lk = leaked.leaked(alt) if alt is not None else None
    return {**lk.as_dict(), "where": leaked.where(alt)} if lk is not None and alt is not None else None
