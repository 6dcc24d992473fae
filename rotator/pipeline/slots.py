"""Alternating plans at arm: both slots of the primary, each key probed on every URL.

`arm` reads the primary's slots (`Backend.read_slots`) and probes the active and
the standby key on every `[probe]` URL at once (`ProbeSpec.urls()`: the plan's
url and each of its `paths`), so that a promote never moves consumers to an app
that lacks one of the API services they call.  What it finds decides the flow:
a standby accepted everywhere and different from the active key can be promoted;
anything else (empty, refused, unknown app, equal keys) means "re-key the
standby first", said before anything changes.

Which step last changed the slots is in their metadata (the write token's
prefix, `promote:` / `rekey:` / `rollback:`), so a new machine with an empty
journal knows whether a roll back is still possible and what is left to do.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.key_state import KeyState, verdict_of
from rotator.pipeline.attempts import TOKEN_NAMESPACE, reason
from rotator.pipeline.instructions import reset_path
from rotator.probe import ProbeOutcome, Prober, ProbeResult
from rotator.report import EmitStatus, Step

if TYPE_CHECKING:
    import httpx

    from rotator.pipeline.state import RotationState
    from rotator.plan import Plan
    from rotator.plugin import Backend, Slot, Slots
    from rotator.secret import Secret


class LastStep(StrEnum):
    """The step that last wrote the slots (from the metadata's token)."""

    PROMOTE = "promote"
    REKEY = "rekey"
    ROLLBACK = "rollback"
    UNKNOWN = "unknown"  # no metadata, or written by something other than rotator's flows


class Next(StrEnum):
    """What the next `rotator rotate` does, from the slots alone."""

    PROMOTE = "promote the standby, then re-key the retired app"
    REKEY = "re-key the standby (the promote is done; the standby still holds the previous active key)"
    STANDBY_FIRST = "re-key the standby first, then promote, then re-key the retired app"


@dataclass
class KeyCheck:
    """One key probed on every URL of the plan."""

    fingerprint: str
    results: dict[str, ProbeResult]

    @property
    def ok(self) -> bool:
        """Accepted everywhere (a plan without a probe cannot say: not ok)."""
        return bool(self.results) and all(r.outcome is ProbeOutcome.ACCEPTED for r in self.results.values())

    @property
    def refused(self) -> bool:
        return any(r.outcome is ProbeOutcome.REFUSED for r in self.results.values())

    @property
    def state(self) -> KeyState:
        return verdict_of(self.results.values())

    def problem(self) -> str:
        """Where it failed, in one line ('' when accepted everywhere)."""
        bad = [
            f"{url}: {r.outcome.value} ({r.detail})" for url, r in self.results.items() if r.outcome.value != "accepted"
        ]
        return "; ".join(bad) if bad else ("" if self.results else "no probe in the plan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "works": self.ok,
            "urls": {u: {"outcome": r.outcome.value, "detail": r.detail} for u, r in self.results.items()},
        }


@dataclass
class Alternating:
    """What an alternating flow knows about the two apps, kept current after every slot write."""

    apps: tuple[str, str]
    slots: Slots
    active_app: str
    standby_app: str
    active: KeyCheck | None = None
    standby: KeyCheck | None = None
    started_wall: float = field(default_factory=time.time)  # the command began (incident: the leaked key's clock)
    probers: list[Prober] = field(default_factory=list, repr=False)
    writes: int = 0  # slot writes by this flow (each its own token)
    checks: dict[str, KeyCheck] = field(default_factory=dict, repr=False)  # every key probed, by fingerprint
    marks: dict[str, float] = field(default_factory=dict)
    # Targets that may still use the standby's key (a promote that did not finish): a re-key would cut them off.
    behind: list[str] = field(default_factory=list)  # time.time() of a flow's moments (window_start, promoted_at)
    notes: dict[str, Any] = field(default_factory=dict)  # what a flow's report adds (a mistaken reset's figures)

    @property
    def last_step(self) -> LastStep:
        prefix = (self.slots.token or "").partition(":")[0]
        return LastStep(prefix) if prefix in ("promote", "rekey", "rollback") else LastStep.UNKNOWN

    def standby_problem(self) -> str | None:
        """Why the standby cannot be promoted now; None when it can."""
        s = self.slots
        if s.standby is None or s.standby_secret is None:
            return "the standby slot is empty"
        if s.active is not None and s.standby.fingerprint == s.active.fingerprint:
            return "both slots hold the same key"
        if s.standby.app is None:
            return f"the standby key ({s.standby.fingerprint}) was changed outside rotator: its app is unknown"
        if self.standby is not None and not self.standby.ok:
            return (
                f"the standby key ({self.standby_app}, {s.standby.fingerprint}) does not work: {self.standby.problem()}"
            )
        return None

    @property
    def standby_valid(self) -> bool:
        return self.standby_problem() is None

    def next(self) -> Next:
        if not self.standby_valid:
            return Next.STANDBY_FIRST
        return Next.REKEY if self.last_step is LastStep.PROMOTE else Next.PROMOTE

    def token(self, step: LastStep) -> str:
        """A distinct token per slot write of this flow (a promote and its roll back are both swaps)."""
        self.writes += 1
        return f"{step.value}:{uuid.uuid5(TOKEN_NAMESPACE, f'{self.slots.token}/{step.value}/{self.writes}')}"

    def describe(self) -> str:
        """The two slots in one line: apps and fingerprints, never a key."""
        a, s = self.slots.active, self.slots.standby
        return (
            f"active {self.active_app} ({a.fingerprint if a else 'empty'}), "
            f"standby {self.standby_app} ({s.fingerprint if s else 'empty'})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "active": _slot_dict(self.active_app, self.slots.active, self.active),
            "standby": _slot_dict(self.standby_app, self.slots.standby, self.standby),
            "last_step": self.last_step.value,
            "standby_problem": self.standby_problem(),
            "next": self.next().value,
        }


def _slot_dict(app: str, slot: Slot | None, check: KeyCheck | None) -> dict[str, Any]:
    return {
        "app": app,
        "app_recorded": slot is not None and slot.app is not None,
        "fingerprint": slot.fingerprint if slot else None,
        "set_at": slot.set_at if slot else None,
        # works / refused / could not check: an API that did not answer never makes a key "not working"
        "works": check.state.works if check else None,
        "state": check.state.value if check else None,
        "problem": (check.problem() or None) if check else None,
    }


def dashboard_reset(app: str, why: str) -> str:
    """The dashboard instruction naming exactly the app to reset, and why it is safe."""
    return f"{reset_path(app)}: {why}"


SAFE = "no consumer uses this key"


def resolve_apps(apps: tuple[str, str], slots: Slots) -> tuple[str, str]:
    """(active app, standby app) from the metadata; a slot the metadata does not describe
    is the other app's; with none described (first use) the plan's first app is active."""
    known = {a.casefold(): a for a in apps}

    def named(slot: Slot | None) -> str | None:
        return known.get(slot.app.casefold()) if slot is not None and slot.app else None

    active, standby = named(slots.active), named(slots.standby)
    if active is None:
        active = apps[1] if standby == apps[0] else apps[0]
    other = apps[1] if active == apps[0] else apps[0]
    return active, other


async def probe_all(alt: Alternating, secret: Secret) -> KeyCheck:
    """`secret` on every URL at once (one warm connection per origin)."""
    results = await asyncio.gather(*(p.probe(secret) for p in alt.probers))
    check = KeyCheck(secret.fingerprint, {p.spec.url or "": r for p, r in zip(alt.probers, results, strict=True)})
    alt.checks[check.fingerprint] = check
    return check


async def survey(
    plan: Plan, primary: Backend, http: httpx.AsyncClient, active: Secret | None, slots: Slots
) -> Alternating:
    """Both slots as `slots` says, the apps resolved, both keys probed on every URL.
    Needs no journal and no armed rotation (`rotator status` runs it too)."""
    apps = (plan.secret.apps[0], plan.secret.apps[1])
    alt = Alternating(apps, slots, *resolve_apps(apps, slots))
    alt.probers = [Prober(plan.probe.model_copy(update={"url": u}), http) for u in plan.probe.urls()]
    standby = slots.standby_secret
    alt.active, alt.standby = await asyncio.gather(
        probe_all(alt, active) if active is not None else _none(),
        probe_all(alt, standby) if standby is not None else _none(),
    )
    return alt


async def arm(state: RotationState, *, started_wall: float | None = None) -> Alternating:
    """After `arm.run`: the standby location checked, both slots read, both keys probed.
    Raises RotationError (exit PREFLIGHT_FAILED) when the standby location is missing or
    not writable, or the primary holds no active key: nothing changed."""
    plan, primary = state.plan, state.primary
    assert state.ctx is not None
    try:
        check = await asyncio.wait_for(primary.preflight_standby(), primary.settings.timeout)
    except Exception as exc:  # noqa: BLE001
        raise RotationError(f"cannot arm: {primary.name}: standby slot: {reason(exc)}", Exit.PREFLIGHT_FAILED) from None
    if check.ok is False:
        raise RotationError(f"cannot arm: {primary.name}: standby slot: {check.detail}", Exit.PREFLIGHT_FAILED)
    current = await read(state)
    await verify(state, current)
    if current.active is None:
        raise RotationError(
            f"cannot arm: the primary ({primary.name}) holds no active key; store the key {plan.secret.apps[0]} "
            "uses now with a first `rotator rotate` of a single-app plan, then switch the plan to alternating",
            Exit.PREFLIGHT_FAILED,
        )
    alt = await survey(plan, primary, state.ctx.http, state.old_secret, current)
    if started_wall is not None:
        alt.started_wall = started_wall
    alt.behind = await behind(state, alt)
    for who, app, kc in (("active", alt.active_app, alt.active), ("standby", alt.standby_app, alt.standby)):
        if kc is not None:
            line = f"{who} key ({app}, {kc.fingerprint}) " + ("works on every URL" if kc.ok else kc.problem())
            state.emit(Step.SLOTS, who, EmitStatus.OK if kc.ok else EmitStatus.WARNING, line)
    if alt.active is not None and alt.active.refused:
        state.warnings.append(
            f"the active key ({alt.active_app}, {alt.active.fingerprint}) is refused now: consumers on it are failing"
        )
    state.emit(Step.SLOTS, primary.name, EmitStatus.OK if alt.standby_valid else EmitStatus.WARNING, alt.describe())
    state.event(Step.SLOTS, "ok" if alt.standby_valid else "standby_invalid", detail=alt.describe())
    return alt


async def verify(state: RotationState, current: Slots) -> None:
    """The slot record checked against the keys and the journal's last slot change
    (`slot_record.problem`); RotationError exit SLOT_RECORD before anything is asked.
    A leaked key the journal recorded whose primary write never landed (killed between the
    two) is carried over: the incident is continued, not forgotten."""
    from rotator.pipeline import slot_record

    journaled = await state.journal_call(slot_record.last_journaled, state.journal, state.plan.name)
    if (line := slot_record.problem(state.plan, current, journaled)) is not None:
        state.event(Step.SLOTS, "record_problem", detail=line)
        raise RotationError(line, Exit.SLOT_RECORD)
    if current.leaked is None and journaled is not None and journaled.record.leaked:
        fps = {s.fingerprint for s in (current.active, current.standby) if s is not None}
        if journaled.record.leaked.get("fp") in fps:
            current.leaked = {**journaled.record.leaked, "carried": True}  # `leaked.mark` writes it


async def behind(state: RotationState, alt: Alternating) -> list[str]:
    """Who may still use the standby's key: backends that held it at arm, and the journal's
    unfinished rotations of this plan (a promote killed or failed half-way)."""
    standby = alt.slots.standby.fingerprint if alt.slots.standby else None
    primary = state.plan.primary.name
    armed = state.armed.current if state.armed else {}
    out = [name for name, fp in armed.items() if name != primary and standby is not None and fp == standby]
    rows = await state.journal_call(state.journal.unfinished, state.plan.name)
    active = alt.slots.active.fingerprint if alt.slots.active else None
    out += [
        f"rotation {r.id} ({r.state}: `rotator resume {r.id}`)"
        for r in rows
        if r.id != state.id and landed(r.state, r.new_fp, active)
    ]
    return out


def landed(run_state: str, new_fp: str | None, active_fp: str | None) -> bool:
    """Whether an unfinished run's slot write may have landed: one stopped before it (the journal
    has its key accepted, the primary's active key is another) left nothing behind."""
    from rotator.report import PRIMARY_UNSURE

    return run_state not in PRIMARY_UNSURE or new_fp is None or new_fp == active_fp


def behind_line(alt: Alternating) -> str:
    return (
        f"not re-keying {alt.standby_app}: the last promote has not reached every target "
        f"({', '.join(alt.behind)}), so some may still use {alt.standby_app}'s key; finish it first "
        "(`rotator resume ID`, or `rotator sync PLAN`), or undo it with `rotator rollback PLAN`"
    )


async def _none() -> None:
    return None


async def read(state: RotationState) -> Slots:
    primary = state.primary
    try:
        return await asyncio.wait_for(primary.read_slots(), primary.settings.timeout)
    except Exception as exc:  # noqa: BLE001
        raise RotationError(f"{primary.name}: cannot read the slots: {reason(exc)}", Exit.PREFLIGHT_FAILED) from None


async def refresh(state: RotationState, alt: Alternating) -> None:
    """After a slot write: the slots, and what a single-style write would check-and-set on."""
    alt.slots = await read(state)
    alt.active_app, alt.standby_app = resolve_apps(alt.apps, alt.slots)
    # What each slot's key answered when last probed (a promote swaps them; a re-key probed the new one).
    a, s = alt.slots.active, alt.slots.standby
    alt.active = alt.checks.get(a.fingerprint) if a else None
    alt.standby = alt.checks.get(s.fingerprint) if s else None
    stored = await state.primary.read()
    state.old_secret = stored.secret
    if state.armed is not None:
        state.armed.old_version = stored.version
        state.armed.old_fingerprint = stored.secret.fingerprint if stored.secret else None
