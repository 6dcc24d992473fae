"""The rotations armed in this replica, waiting for a key: arm, hand a key, close, roll back.

An armed rotation is an `ArmedSession` (`rotator.pipeline.session`, the flow `rotator rotate`
runs too): clients built, connections open, preflights passed, the plan's journal lock held.
It waits here for the key (pasted into the page or POSTed to the API); a key the probe
refuses keeps it armed so the operator can paste again; one that gets no key within
`arm_timeout` seconds is closed (journaled as aborted).  While it waits, the probe's
connection is kept warm and the journal lock's lease renewed.  The session owns its run,
not the HTTP request: a client that disconnects does not stop a rotation half-way.

Everything here answers in domain terms (`KeyAnswer`, `replicas.Closed`, the errors of
`service.errors`); `routes` says it in HTTP.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rotator.errors import RotationError, RotatorError
from rotator.exitcodes import Exit
from rotator.logs import get_logger
from rotator.pipeline import flows, leaked
from rotator.pipeline.alternating import IncidentChoice
from rotator.pipeline.alternating_flow import AlternatingFlow
from rotator.pipeline.session import KEEP_WARM_EVERY, MAX_KEY_ATTEMPTS, Flow, NotArmed, Outcome, SessionBusy, Status
from rotator.pipeline.state import RotationState
from rotator.report import KeyOutcome, RunKind
from rotator.service import replicas
from rotator.service.errors import Invalid, Refused, Stopped
from rotator.service.sessions import Held
from rotator.service.views import preflight

if TYPE_CHECKING:
    from rotator.plan import Plan
    from rotator.report import Report
    from rotator.service.context import ServiceContext

log = get_logger("rotator.service")

ARM_TIMEOUT = 900.0  # seconds an armed rotation waits for its key
KEEP_FINISHED = 600.0  # seconds a finished or closed rotation stays in memory (then: the journal)


@dataclass(frozen=True)
class KeyAnswer:
    """What became of a key given to a held rotation, once the flow is done with it."""

    held: Held
    outcome: KeyOutcome
    message: str  # the whole line (a rejected paste's says when the rotation is closed for it)
    report: Report | None


class Rotations:
    """The armed rotations this replica holds (`held`), by id."""

    def __init__(
        self, ctx: ServiceContext, *, arm_timeout: float = ARM_TIMEOUT, keep_warm_every: float = KEEP_WARM_EVERY
    ) -> None:
        self.ctx = ctx
        self.arm_timeout = arm_timeout
        self.keep_warm_every = keep_warm_every
        self.held: dict[str, Held] = {}

    def _count_armed(self) -> None:
        self.ctx.metrics.armed.set(sum(1 for h in self.held.values() if h.state == Status.ARMED))

    # -- arm -------------------------------------------------------------
    async def arm(
        self,
        plan_name: str,
        *,
        operator: str,
        reason: str = "",
        flow: str | None = None,
        choice: str | None = None,
    ) -> Held:
        """Arm a rotation of the plan.  An alternating plan's `flow` (rotate | incident |
        rekey | promote | rollback; default rotate) starts at once (`alternating_flow`)."""
        ctx = self.ctx
        ctx.refuse_if_draining()
        plan = ctx.plan(plan_name)
        kind, run = self._flow(plan, flow, choice)
        if (h := self.armed_in(plan)) is not None:
            raise Refused(
                f"{plan.name} is already armed (rotation {h.id}, by {h.operator}): open it, or close it",
                rotation=h.id,
                held_here=True,
                operator=h.operator,
            )
        state = RotationState(plan, ctx.journal, kind=kind, reason=reason or "web", operator=operator)
        held = Held(
            state,
            operator,
            arm_timeout=self.arm_timeout,
            keep_warm_every=self.keep_warm_every,
            on_end=self._ended,
            flow=run,
        )
        try:
            armed = await held.session.arm()
        except NotArmed as exc:
            ctx.metrics.observe_arm(plan.name, "rotate", exc.armed.seconds)
            raise Stopped(str(exc), exit_code=exc.exit_code, preflight=preflight(state)) from None
        except RotationError as exc:
            raise Stopped(str(exc), exit_code=exc.exit_code, preflight=preflight(state), **exc.details) from None
        ctx.metrics.observe_arm(plan.name, "rotate", armed.seconds)
        self.held[held.id] = held
        held.armed()
        self._count_armed()
        log.info("armed", plan=plan.name, rotation=held.id, operator=operator)
        return held

    @staticmethod
    def _flow(plan: Plan, flow: str | None, choice: str | None) -> tuple[RunKind, Flow]:
        """The flow asked for, from the flows registered (`pipeline.flows`); a name that does
        not apply is `Invalid`."""
        spec = flows.find(flow or "rotate", alternating=plan.alternating)
        single_only = f"{plan.name} is a single-app plan: only the planned rotation (no flow) applies"
        if spec is None:
            if not plan.alternating and flows.names(alternating=False) == ["rotate"]:
                raise Invalid(single_only)
            raise Invalid(f"flow must be one of: {', '.join(flows.names(alternating=plan.alternating))}")
        if choice is not None and not spec.takes_choice and not plan.alternating:
            raise Invalid(single_only)
        try:
            picked = IncidentChoice(choice) if choice else None
        except ValueError:
            raise Invalid(f"choice must be one of: {', '.join(IncidentChoice)}") from None
        if picked is not None and not spec.takes_choice:
            raise Invalid("choice goes with the incident flow")
        return spec.kind, spec.make(flows.FlowOptions(choice=picked))

    async def roll_back(self, rid: str) -> Held:
        """Roll back instead of the re-key an armed alternating rotation waits for."""
        held = self.get(rid)
        alternating = held.flow
        if not isinstance(alternating, AlternatingFlow):
            raise Refused(f"rotation {rid} is a single-app rotation: there is nothing to roll back")
        if held.done:
            raise Refused(f"rotation {rid} is {held.state}: arm the plan's roll back instead")
        if (why := alternating.roll_back(held.session)) is not None:
            alt = alternating.alt
            leaked_key = alt is not None and leaked.refusal(alt, "roll back") is not None
            raise Refused(why, exit_code=Exit.LEAKED_KEY if leaked_key else None)
        return held

    def _ended(self, held: Held, report: Report | None) -> None:
        """A session finished or closed: count it, tell it if it is news, and forget it after a
        while (then: the journal)."""
        if report is not None:
            self.ctx.metrics.observe_report(report)
            log.info("rotation finished", plan=held.plan.name, rotation=held.id, state=report.state)
            self.ctx.tell(held.plan, report)
        self._count_armed()
        asyncio.get_running_loop().call_later(KEEP_FINISHED, self.held.pop, held.id, None)

    def get(self, rid: str) -> Held:
        held = self.held.get(rid)
        if held is None:
            raise replicas.not_here(self.ctx.journal, rid)
        return held

    def armed_in(self, plan: Plan) -> Held | None:
        """The plan's rotation held here that is not over yet, if any."""
        return next((h for h in self.held.values() if h.plan.name == plan.name and not h.done), None)

    # -- the key ---------------------------------------------------------
    async def submit_key(self, rid: str, raw: str, *, accept_unprobed: bool = False) -> KeyAnswer:
        """The key for the held rotation's pending ask (`hand`), answered once its flow is done
        with it: a refused key keeps the rotation armed.  `accept_unprobed`: write it even if
        the probe cannot reach the API (an outage; the page asks for an explicit confirmation first)."""
        held = self.get(rid)
        if held.state == Status.ARMED:  # per key: a later paste is probed as usual unless asked again
            held.session.state.accept_unprobed = accept_unprobed
            if accept_unprobed:
                log.warning("key to be written even unprobed", rotation=held.id, operator=held.operator)
        try:
            attempt = await held.session.hand(raw)
        except SessionBusy as exc:
            raise Refused(str(exc)) from None
        finally:
            del raw
        error = held.session.error
        if attempt.outcome is Outcome.CLOSED and error is not None and not isinstance(error, RotatorError):
            raise Stopped(  # the journal says how far it got
                f"the rotation failed ({type(error).__name__}); see `rotator show {rid}`", exit_code=Exit.ERROR
            )
        message = attempt.message
        if attempt.outcome is Outcome.REJECTED and attempt.final:
            message += f"; {MAX_KEY_ATTEMPTS} keys refused, the rotation is closed: arm again"
        return KeyAnswer(held, attempt.outcome, message, attempt.report or held.session.report)

    # -- close -----------------------------------------------------------
    async def close(self, rid: str, why: str) -> None:
        """Close an armed rotation that will get no key (journaled as aborted, or as
        refused when its last key was refused)."""
        held = self.held.get(rid)
        if held is not None:
            await held.session.close(why)

    async def close_here(self, held: Held, who: str) -> replicas.Closed:
        """Close a rotation held here, unless it is writing its key."""
        if held.state == Status.ROTATING:
            raise Refused(f"rotation {held.id} is writing its key: it cannot be closed now")
        await self.close(held.id, f"closed by {who}")
        return replicas.Closed(held.id, rotation=held.summary())

    def waiting(self) -> list[Held]:
        """The rotations still waiting for a key (closed when the service shuts down)."""
        return [h for h in self.held.values() if h.state == Status.ARMED]

    def in_flight(self) -> list[asyncio.Task[Any]]:
        """The runs the held sessions have in flight (shutdown waits for them)."""
        return [t for h in self.held.values() if (t := h.session.in_flight) is not None]

    def writing(self) -> list[str]:
        """The ids of rotations writing a key now."""
        return [h.id for h in self.held.values() if h.state == Status.ROTATING]


__all__ = ["ARM_TIMEOUT", "KEEP_FINISHED", "KeyAnswer", "Rotations"]
