"""An alternating plan's flows as an `ArmedSession`'s flow hook (`session.Flow`).

The service runs them this way (the page's keys through the session's
operator), with the session's expiry, keep-warm and close.  The flows are
`rotator.pipeline`'s lists of steps; this adds what a front end needs around
them: the slots read at arm (`Alternating`), the line that says what the flow
will do, the incident's no-standby choice refused before anything changes, and
the Roll back between a promote and its re-key (`roll_back`: the pending ask
raises `RollBack`, and the session swaps back instead of waiting for the key).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.pipeline import alternating, finish, leaked, slots
from rotator.pipeline.alternating import IncidentChoice
from rotator.pipeline.rollback import refusal as rollback_refusal
from rotator.report import EmitStatus, RunKind, Step

if TYPE_CHECKING:
    from rotator.pipeline.session import ArmedSession, FlowOperator
    from rotator.pipeline.slots import Alternating
    from rotator.report import Report

__all__ = ["AlternatingFlow", "FlowName", "RollBack"]


class FlowName(StrEnum):
    ROTATE = "rotate"  # planned: promote, then re-key the retired app
    INCIDENT = "incident"  # promote at once, then re-key the leaked app
    REKEY = "rekey"  # re-key the standby only (seed it, or finish after a promote)
    PROMOTE = "promote"  # promote only (no key)
    ROLLBACK = "rollback"  # undo the last promote (no key)

    @property
    def kind(self) -> RunKind:
        """What the journal calls a run of this flow: an incident is a rotation."""
        return RunKind.ROTATE if self is FlowName.INCIDENT else RunKind(self.value)


class RollBack(RotationError):
    """The operator chose Roll back while the flow waited for the re-key after its promote."""

    def __init__(self) -> None:
        super().__init__("rolled back by the operator before the re-key", Exit.DONE)


class AlternatingFlow:
    """One of `FlowName`'s flows on an armed session of an alternating plan."""

    def __init__(self, name: FlowName, choice: IncidentChoice | None = None) -> None:
        self.name = name
        self.choice = choice
        self.alt: Alternating | None = None
        self.plan_line = ""
        self.rolled_back = False
        self.continuing: str | None = None  # the line saying which incident this run continues

    @property
    def what(self) -> str:
        return "roll back" if self.name is FlowName.ROLLBACK else self.name.value

    async def armed(self, session: ArmedSession) -> None:
        """Both slots read, both keys probed; a flow that cannot run is refused here, nothing changed."""
        alt = self.alt = await slots.arm(session.state, started_wall=session.started_wall)
        for rid in await leaked.close_stale(session.state, alt):
            session.state.emit(
                Step.SLOTS, rid, EmitStatus.WARNING, f"rotation {rid} ended before it moved anything: closed as aborted"
            )
        self._open_incident(alt, str(session.state.plan.path))
        if self.name is FlowName.ROLLBACK and (why := rollback_refusal(alt)) is not None:
            raise RotationError(why, Exit.PLAN_INVALID)
        if self.name is FlowName.PROMOTE and (problem := alt.standby_problem()) is not None:
            raise RotationError(f"cannot promote: {problem}; re-key the standby first", Exit.PLAN_INVALID)
        if (
            self.name is FlowName.INCIDENT
            and not alt.standby_valid
            and self.choice is None
            and leaked.where(alt) != "standby"
        ):
            raise RotationError(
                alternating.incident_choice_line(alt), Exit.PLAN_INVALID, {"choices": [c.value for c in IncidentChoice]}
            )
        if alt.behind and self.name in (FlowName.REKEY, FlowName.ROTATE) and alt.next() is slots.Next.REKEY:
            raise RotationError(slots.behind_line(alt), Exit.PARTIAL)
        self.plan_line = self._line(alt)

    def _open_incident(self, alt: Alternating, plan_path: str) -> None:
        """An incident recorded in the slot record: never put its leaked key back; continue it."""
        at = leaked.where(alt)
        if at is None:
            return
        if self.name in (FlowName.ROLLBACK, FlowName.PROMOTE):
            if (why := leaked.refusal(alt, self.what, plan_path)) is not None:
                raise RotationError(why, Exit.LEAKED_KEY)
            return
        if self.name is FlowName.REKEY and at == "active":
            lk = leaked.leaked(alt)
            assert lk is not None
            raise RotationError(
                f"incident {lk.incident} is open and its leaked key ({lk.app}, {lk.fingerprint}) is still the active "
                f"key: `rotator rotate {plan_path} --incident` continues it (promote {alt.standby_app}, then reset "
                f"{lk.app}); nothing was asked or written",
                Exit.LEAKED_KEY,
            )
        self.name = FlowName.INCIDENT  # rotate, rotate --incident, rekey, the page's arm: the incident goes on
        self.continuing = leaked.continuing(alt)

    def _line(self, alt: Alternating) -> str:
        if self.continuing is not None:
            return self.continuing
        if self.name is FlowName.INCIDENT:
            return alternating.plan_line(alt, incident=True, choice=self.choice)
        if self.name is FlowName.ROLLBACK:
            return f"roll back: {alt.standby_app} (the previous active key) becomes active again; 0 failed calls"
        if self.name is FlowName.PROMOTE:
            return f"promote: {alt.standby_app} becomes active, {alt.active_app} the standby; 0 failed calls"
        if self.name is FlowName.REKEY:
            return (
                f"re-key the standby: reset {alt.standby_app} ({slots.SAFE}); its new key is stored as the standby "
                "only; 0 failed calls"
            )
        return alternating.plan_line(alt)

    def rollback_refusal(self) -> str | None:
        """Why Roll back is not possible now (one line), or None."""
        if self.alt is None:
            return "not armed"
        if self.name is FlowName.ROLLBACK:
            return "this is a roll back already"
        return rollback_refusal(self.alt)

    def roll_back(self, session: ArmedSession) -> str | None:
        """Roll back instead of the pending re-key; the refusal's line when it cannot."""
        if (why := self.rollback_refusal()) is not None:
            return why
        if session.asking is None or not session.interrupt(RollBack()):
            return "the flow is not waiting for the re-key now (a step is running): wait for it"
        return None

    async def run(self, session: ArmedSession, operator: FlowOperator) -> Report:
        from rotator import pipeline

        state, alt = session.state, self.alt
        assert alt is not None, "armed() first"
        try:
            if self.name is FlowName.ROLLBACK:
                return await pipeline.rollback(state, alt)
            if self.name is FlowName.PROMOTE:
                return await pipeline.promote(state, alt)
            if self.name is FlowName.REKEY:
                return await pipeline.rekey_standby(state, alt, operator)
            if self.name is FlowName.INCIDENT:
                return await pipeline.incident(state, alt, operator, choice=self.choice)
            return await pipeline.rotate_alternating(state, alt, operator)
        except RollBack:
            promoted = state.report
            report = await pipeline.rollback(state, alt)
            self.rolled_back = True
            window = f" (promote window {promoted.window or 0:.3f}s)" if promoted is not None else ""
            report.message = f"promoted, then rolled back by the operator before the re-key{window}: {report.message}"
            report.alternating = {**(report.alternating or {}), "rolled_back": True}
            return await finish.close_journal(state, report, event=False)
