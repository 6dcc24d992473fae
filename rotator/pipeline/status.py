"""`rotator status PLAN`: what a plan's backends hold now and whether each key works, for every plan.

Read-only: every backend is opened and read (no preflight, no lock, nothing
written), so it may run beside an armed rotation of the same plan and from cron.
Each distinct key is probed once on the plan's probe endpoint (Adjutor bills per
call); an alternating plan's active and standby keys are probed once on each
`[probe]` URL, as a promote needs (`pipeline.slots.survey`).

A key is `works` (accepted), `refused` (the API said no: consumers on it fail)
or `could not check` (no answer, a 5xx, no probe in the plan): never "does not
work" when the API did not say so, and never advice to reset a key it could not
check.  `PlanStatus.exit_code` is what cron and monitoring read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.key_age import KeyAge, key_age_with
from rotator.key_record import PrimaryRecord, primary_record_of
from rotator.key_state import KeyState, verdict_of
from rotator.pipeline.attempts import reason
from rotator.probe import Prober

if TYPE_CHECKING:
    from rotator.journal import Journal
    from rotator.pipeline.slots import KeyCheck
    from rotator.plan import Plan
    from rotator.plugin import Backend, PluginContext, Slots
    from rotator.secret import Secret

__all__ = ["BackendStatus", "KeyState", "KeyStatus", "PlanStatus", "collect", "verdict_of"]

HISTORY_LOOKUP = 500  # journal rows searched for when a key was first stored


def _check_state(check: KeyCheck | None) -> tuple[KeyState, str]:
    if check is None or not check.results:
        return KeyState.UNCHECKED, "no probe in the plan"
    state = verdict_of(list(check.results.values()))
    return state, check.problem() if state is not KeyState.WORKS else ""


@dataclass
class KeyStatus:
    """One distinct key found in the plan's backends (or its standby slot)."""

    role: str  # "current" (single-app), "active", "standby", or "other" (a backend that drifted)
    fingerprint: str
    state: KeyState
    detail: str  # why, when it is not `works` ("" when it works)
    held_by: list[str]  # the backends holding it
    # The primary's key: the plan's key age (`rotator.key_age`, as the page and /metrics say it);
    # a standby: its slot's set_at; a drifted key: when a rotation first stored it.  None: unknown.
    age_s: float | None
    app: str | None = None  # alternating plans: the Adjutor app whose key it is
    probe_calls: int = 0  # calls to the API this check cost
    age_from: str = ""  # where age_s comes from, in words ("" when unknown)

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "fingerprint": self.fingerprint,
            "state": self.state.value,
            "detail": self.detail,
            "held_by": self.held_by,
            "age_seconds": None if self.age_s is None else round(self.age_s, 1),
            "age_from": self.age_from or None,
            "app": self.app,
            "probe_calls": self.probe_calls,
        }


@dataclass
class BackendStatus:
    name: str
    type: str
    primary: bool
    fingerprint: str | None  # None: holds no key, or could not be read (see `error`)
    drift: bool | None  # differs from the primary's key; None: could not tell
    error: str = ""  # why it could not be read ("" when read)
    age_s: float | None = None  # the age of the key it holds

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "primary": self.primary,
            "fingerprint": self.fingerprint,
            "drift": self.drift,
            "error": self.error or None,
            "key_age_seconds": None if self.age_s is None else round(self.age_s, 1),
        }


@dataclass
class PlanStatus:
    """Everything `rotator status` says about one plan, and its exit code."""

    plan: str
    path: str
    strategy: str  # single | alternating
    keys: list[KeyStatus] = field(default_factory=list)
    backends: list[BackendStatus] = field(default_factory=list)
    last_rotation: dict[str, Any] | None = None  # the journal's newest entry of this plan
    lock: dict[str, Any] | None = None  # who holds the plan's lock (None: nobody)
    unfinished: list[dict[str, Any]] = field(default_factory=list)
    alternating: dict[str, Any] | None = None  # slot_status.status_data, with each key's `state`
    notes: list[str] = field(default_factory=list)  # what is left to do (never a reset of an unchecked key)
    key_age: KeyAge | None = None  # the plan's key age: the page's and /metrics' (`rotator.key_age`)

    @property
    def probe_calls(self) -> int:
        return sum(k.probe_calls for k in self.keys)

    @property
    def drifted(self) -> list[str]:
        return [b.name for b in self.backends if b.drift]

    @property
    def exit_code(self) -> Exit:
        """Most urgent first: a refused key (consumers on it fail), drift, then anything unchecked."""
        if any(k.state is KeyState.REFUSED for k in self.keys):
            return Exit.STATUS_REFUSED
        if self.drifted:
            return Exit.DRIFT
        if (
            not self.keys
            or any(k.state is KeyState.UNCHECKED for k in self.keys)
            or any(b.error for b in self.backends)
        ):
            return Exit.STATUS_UNCHECKED  # no key at all is not "every key works" either
        return Exit.DONE

    def summary(self) -> str:
        """The one outcome line."""
        refused = [k.fingerprint for k in self.keys if k.state is KeyState.REFUSED]
        unchecked = [k.fingerprint for k in self.keys if k.state is KeyState.UNCHECKED]
        unread = [b.name for b in self.backends if b.error]
        parts = []
        if refused:
            parts.append(f"REFUSED by the API: {', '.join(refused)}")
        if self.drifted:
            parts.append(f"drift in {', '.join(self.drifted)}")
        if unchecked:
            parts.append(f"could not check {', '.join(unchecked)} (the API did not say: no reason to reset it)")
        if unread:
            parts.append(f"could not read {', '.join(unread)}")
        if not self.keys:
            parts.append("no key to check: no backend holds one")
        return "; ".join(parts) if parts else "every key works and every backend matches the primary"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.alternating is not None:
            out.update(self.alternating)  # the slots' fields at the top, as before (active, standby, next...)
        out.update(
            {
                "plan": self.plan,
                "path": self.path,
                "strategy": self.strategy,
                "exit_code": int(self.exit_code),
                "summary": self.summary(),
                "keys": [k.as_dict() for k in self.keys],
                "backends": [b.as_dict() for b in self.backends],
                "drift": self.drifted,
                "probe_calls": self.probe_calls,
                "key_age": self.key_age.as_dict() if self.key_age is not None else None,
                "last_rotation": self.last_rotation,
                "lock": self.lock,
                "unfinished": self.unfinished,
                "notes": self.notes,
            }
        )
        return out


# -- reading -----------------------------------------------------------------------------------------


@dataclass
class _Read:
    backend: Backend
    secret: Secret | None = None
    error: str = ""
    changed_at: str | None = None  # what the backend records of its value's date (`key_record`)


async def _read(b: Backend) -> _Read:
    timeout = b.settings.timeout
    try:
        await asyncio.wait_for(b.open(), timeout)
        stored = await asyncio.wait_for(b.read(), timeout)
        return _Read(b, stored.secret, changed_at=stored.changed_at)
    except Exception as exc:  # noqa: BLE001 - one line per backend, never a traceback
        return _Read(b, error=reason(exc))


def _first_stored(journal: Journal | None, plan: Plan) -> dict[str, float]:
    """fingerprint -> when rotator first received it (from the journal's rows of this plan)."""
    if journal is None:
        return {}
    out: dict[str, float] = {}
    for row in journal.history(plan.name, limit=HISTORY_LOOKUP):  # newest first: the oldest row wins
        # A rotation that got the key into the primary (a sync only copies one: not its birth).
        if row.new_fp and row.kind != "sync" and row.state in ("done", "partial", "fanning_out"):
            at = row.key_received_at or row.finished_at
            if at is not None:
                out[row.new_fp] = at
    return out


async def _probe_once(prober: Prober | None, secret: Secret) -> tuple[KeyState, str, int]:
    if prober is None:
        return KeyState.UNCHECKED, "no probe in the plan", 0
    result = await prober.probe(secret)
    state = verdict_of([result])
    return state, ("" if state is KeyState.WORKS else result.detail), result.attempts


async def collect(plan: Plan, journal: Journal | None) -> PlanStatus:
    """Read every backend, probe each distinct key once, and read the journal: the plan's status now."""
    from rotator.plugin import PluginContext
    from rotator.registry import backend_class

    now = time.time()
    # One call per key (per URL): no retries; a transient failure is "could not check", and cron runs again.
    plan = dataclasses.replace(plan, probe=plan.probe.model_copy(update={"retries": 0}))
    status = PlanStatus(plan.name, str(plan.path), "alternating" if plan.alternating else "single")
    ctx = PluginContext(max_threads=max(4, min(len(plan.backends) * 2, 64)))
    try:
        backends = [backend_class(b.type)(b, ctx) for b in plan.backends]
        reads = await asyncio.gather(*(_read(b) for b in backends))
        prober = Prober(plan.probe, ctx.http) if plan.probe.enabled else None
        slots = await _alternating(status, plan, ctx, reads, journal) if plan.alternating else None
        primary = next(r for r in reads if r.backend.settings.primary)
        await _keys(status, plan, prober, primary, reads)
        await _close(backends)
    finally:
        await ctx.aclose()
    record = None
    if not primary.error:
        fp = primary.secret.fingerprint if primary.secret else None
        record = primary_record_of(plan, primary.backend, fp, primary.changed_at, slots)
    _key_age(status, plan, journal, record, now)
    _journal_facts(status, plan, journal, now)
    return status


def _key_age(status: PlanStatus, plan: Plan, journal: Journal | None, record: PrimaryRecord | None, now: float) -> None:
    """The primary's key: the plan's key age from its one source (the journal's rotation or
    adoption, else the primary's own record), the age the page, /metrics and reminders say."""
    age = key_age_with(journal, plan, record, now)
    status.key_age = age
    held = record.fingerprint if record is not None else None
    for k in status.keys:
        if k.role in ("current", "active") and k.fingerprint == held:
            k.age_s, k.age_from = age.age_seconds, age.counted_from


async def _close(backends: list[Backend]) -> None:
    for b in backends:
        try:
            await asyncio.wait_for(b.close(), 5)
        except Exception:  # noqa: BLE001, S110 - closing is best effort
            pass


async def _keys(status: PlanStatus, plan: Plan, prober: Prober | None, primary: _Read, reads: list[_Read]) -> None:
    """Each backend against the primary; each distinct key not yet checked, probed once."""
    primary_fp = primary.secret.fingerprint if primary.secret else None
    holders: dict[str, list[str]] = {}
    secrets: dict[str, Secret] = {}
    for r in reads:
        fp = r.secret.fingerprint if r.secret else None
        drift = None if r.error or primary.error else fp != primary_fp
        status.backends.append(
            BackendStatus(r.backend.name, r.backend.settings.type, r.backend.settings.primary, fp, drift, r.error)
        )
        if r.secret is not None and fp is not None:
            holders.setdefault(fp, []).append(r.backend.name)
            secrets.setdefault(fp, r.secret)
    known = {k.fingerprint: k for k in status.keys}
    for k in status.keys:
        k.held_by = holders.get(k.fingerprint, k.held_by)
    todo = [fp for fp in secrets if fp not in known]
    results = await asyncio.gather(*(_probe_once(prober, secrets[fp]) for fp in todo))
    for fp, (state, detail, calls) in zip(todo, results, strict=True):
        role = "current" if fp == primary_fp and not plan.alternating else ("active" if fp == primary_fp else "other")
        status.keys.append(KeyStatus(role, fp, state, detail, holders[fp], None, probe_calls=calls))
        if state is KeyState.REFUSED:
            where = ", ".join(holders[fp])
            status.notes.append(
                f"the key in {where} ({fp}) is refused: whatever reads it is failing; "
                + (
                    f"reset the app key in the dashboard and `rotator rotate {plan.path}`"
                    if role == "current"
                    else f"`rotator sync {plan.path}` copies the primary's key there"
                )
            )
    if primary.error:
        status.notes.append(f"the primary ({primary.backend.name}) could not be read: {primary.error}")
    elif primary.secret is None:
        status.notes.append(
            f"the primary ({primary.backend.name}) holds no key: `rotator rotate {plan.path}` stores the one in use"
        )


async def _alternating(
    status: PlanStatus, plan: Plan, ctx: PluginContext, reads: list[_Read], journal: Journal | None
) -> Slots | None:
    """The slots (`pipeline.slots.survey`: both keys probed on every URL) and what is left, from
    `pipeline.slot_status`; a standby that could not be checked is never called broken.  Returns
    the slots read (None: they could not be)."""
    from rotator.pipeline import slot_record
    from rotator.pipeline.slot_status import status_data
    from rotator.pipeline.slots import survey

    primary = next(r for r in reads if r.backend.settings.primary)
    if primary.error:
        return None
    try:
        slots = await asyncio.wait_for(primary.backend.read_slots(), primary.backend.settings.timeout)
        slot_record.check(plan, slots, journal)  # never a guess: a disagreeing record stops here (SLOT_RECORD)
        alt = await survey(plan, primary.backend, ctx.http, primary.secret, slots)
    except RotationError:
        raise
    except Exception as exc:  # noqa: BLE001
        primary.error = f"cannot read the slots: {reason(exc)}"
        return None
    data = status_data(plan, alt, journal)
    calls = len(alt.probers)
    for role, app, slot, check in (
        ("active", alt.active_app, slots.active, alt.active),
        ("standby", alt.standby_app, slots.standby, alt.standby),
    ):
        if slot is None:
            data[role]["state"] = None  # an empty slot holds no key
            continue
        state, detail = _check_state(check)
        data[role]["works"] = {KeyState.WORKS: True, KeyState.REFUSED: False}.get(state)
        data[role]["state"] = state.value
        if state is KeyState.UNCHECKED:
            data[role]["problem"] = f"could not check: {detail}"
        held = [] if role == "standby" else [primary.backend.name]
        # The standby's age as the slot table says it; the active key's is the plan's (`_key_age`).
        age, age_from = (data[role]["age_s"], data[role]["age_from"] or "") if role == "standby" else (None, "")
        status.keys.append(KeyStatus(role, slot.fingerprint, state, detail, held, age, app, calls, age_from))
    standby = next((k for k in status.keys if k.role == "standby"), None)
    active = next((k for k in status.keys if k.role == "active"), None)
    if active is not None and active.state is KeyState.REFUSED:
        fix = f"`rotator rotate {plan.path}`" + (
            f" promotes the standby ({alt.standby_app}) first"
            if standby is not None and standby.state is KeyState.WORKS
            else " re-keys the standby, then promotes it"
        )
        status.notes.append(f"the active key ({alt.active_app}) is refused: consumers on it are failing; {fix}")
    status.notes.extend(data["left"])
    status.alternating = data
    return slots


def _journal_facts(status: PlanStatus, plan: Plan, journal: Journal | None, now: float) -> None:
    if journal is None:
        return
    first = _first_stored(journal, plan)
    for k in status.keys:  # a drifted key (the primary's and the standby's are dated already)
        if k.role == "other" and k.fingerprint in first:
            k.age_s, k.age_from = max(now - first[k.fingerprint], 0.0), "the rotation that first stored it"
    ages = {k.fingerprint: k.age_s for k in status.keys}
    for b in status.backends:
        b.age_s = ages.get(b.fingerprint or "")
    rows = journal.history(plan.name, limit=1)
    if rows:
        r = rows[0]
        status.last_rotation = {
            "id": r.id,
            "kind": r.kind,
            "state": r.state,
            "started_at": r.created_at,
            "finished_at": r.finished_at,
            "new_fingerprint": r.new_fp,
            "reason": r.reason,
        }
    status.lock = journal.lock_info(plan.name)
    if status.alternating is None:
        status.unfinished = [
            {"id": r.id, "state": r.state, "resume": f"rotator resume {r.id}"} for r in journal.unfinished(plan.name)
        ]
        status.notes.extend(
            f"rotation {u['id']} did not finish ({u['state']}): `{u['resume']}` finishes it" for u in status.unfinished
        )
    else:
        status.unfinished = status.alternating.get("unfinished", [])
