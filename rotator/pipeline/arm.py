"""Arm: everything that can be done before the key exists; and disarm.

Plugins are imported and constructed, clients made, connections opened,
preflights run, the current values read, the probe's connection warmed, the
journal entry opened and the plan's lock taken.  After this, the window needs
no import, no connection set-up and no first read.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.journal import LockHeld
from rotator.logs import get_logger
from rotator.pipeline.attempts import reason
from rotator.plugin import Check, PluginContext, Stored
from rotator.probe import Prober
from rotator.registry import backend_class, consumer_class
from rotator.report import ArmResult, EmitStatus, RunState, Step
from rotator.secret import compact, scrub

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.plugin import Backend, Consumer

ARM_CONCURRENCY = 64  # targets opened and checked at once (the rest wait their turn)
log = get_logger("rotator.arm")


async def run(state: RotationState) -> ArmResult:
    """Ready every target; journal the entry (unless the state continues one) and lock the plan.
    Raises RotationError (exit BUSY) when another rotation holds the plan."""
    t0 = time.perf_counter()
    plan = state.plan
    state.emit(Step.ARM, "", EmitStatus.RUNNING, f"{len(plan.backends)} backends, {len(plan.consumers)} consumers")
    _construct(state)
    ready = _Readying(state)
    await asyncio.gather(
        *(ready.backend(b) for b in state.backends.values()),
        *(ready.consumer(c) for c in state.consumers.values()),
        ready.probe(),
    )
    old_fp = None
    old_version = None
    if (stored := ready.primary_stored) is not None:
        state.old_secret = stored.secret
        old_version = stored.version
        old_fp = stored.secret.fingerprint if stored.secret else None
    checks = ready.checks
    ok = all(c.ok is not False for c in checks.values())
    armed = state.armed = ArmResult(
        ok, checks, old_fp, old_version, time.perf_counter() - t0, ready.current, ready.changed
    )
    if ok:
        await _open_entry(state)
        # The values read at arm into full matchers, off the loop: the pasted key then costs
        # a one-value matcher in the window, never a full rebuild.
        await asyncio.to_thread(compact)
    state.emit(Step.ARM, "", EmitStatus.OK if ok else EmitStatus.FAILED, f"{armed.seconds:.2f}s", armed.seconds)
    return armed


def _construct(state: RotationState) -> None:
    """The plugin context, every target's plugin and the prober, constructed (nothing opened yet)."""
    plan = state.plan
    n_targets = len(plan.backends) + len(plan.consumers)
    ctx = state.ctx = PluginContext(
        max_threads=max(plan.rotation.max_threads, min(n_targets * 2 + 4, 1024)), plan=plan.name
    )
    for b in plan.backends:
        state.backends[b.name] = backend_class(b.type)(b, ctx)
    for c in plan.consumers:
        state.consumers[c.name] = consumer_class(c.type)(c, ctx)
    if plan.probe.enabled:
        state.prober = Prober(plan.probe, ctx.http)


class _Readying:
    """Each target opened, preflighted and (a backend) read, a bounded number at once; what they said."""

    def __init__(self, state: RotationState) -> None:
        self.state = state
        self.checks: dict[str, Check] = {}
        self.current: dict[str, str | None] = {}
        self.changed: dict[str, dict[str, str | None]] = {}
        self.primary_stored: Stored | None = None
        # A bounded number of targets readied at once, so each one's timeout measures its
        # own requests, not a queue: 900 consumers started together needed ~2,700 requests
        # of event-loop CPU (~1 ms each on a loaded 2-core VM) and all timed out at 10 s.
        self.slots = asyncio.Semaphore(ARM_CONCURRENCY)

    async def backend(self, b: Backend) -> None:
        async with self.slots:
            start = time.perf_counter()
            try:
                await asyncio.wait_for(b.open(), b.settings.timeout)
                check = await asyncio.wait_for(b.preflight(), b.settings.timeout)
                if check.ok is not False:
                    self._stored(b, await asyncio.wait_for(b.read(), b.settings.timeout))
            except Exception as exc:  # noqa: BLE001 - one line per target, never a traceback
                check = Check(False, reason(exc))
            self._said(b.name, check, start)

    def _stored(self, b: Backend, stored: Stored) -> None:
        self.current[b.name] = stored.secret.fingerprint if stored.secret else None
        self.changed[b.name] = {
            "version": stored.version,
            "changed_at": stored.changed_at,
            "changed_by": stored.changed_by,
        }
        if b.settings.primary:
            self.primary_stored = stored

    async def consumer(self, c: Consumer) -> None:
        async with self.slots:
            start = time.perf_counter()
            try:
                await asyncio.wait_for(c.open(), c.settings.timeout)
                check = await asyncio.wait_for(c.preflight(), c.settings.timeout)
            except Exception as exc:  # noqa: BLE001
                check = Check(False, reason(exc))
            self._said(c.name, check, start)

    def _said(self, name: str, check: Check, start: float) -> None:
        check = _keep(self.checks, name, _scrubbed(check))
        self.state.emit(Step.ARM, name, _check_status(check), _check_detail(check), time.perf_counter() - start)

    async def probe(self) -> None:
        """The probe's connection warmed (its answer shown, never blocking)."""
        state = self.state
        if state.prober:
            detail = await state.prober.warm()
            check = state.probe_check = Check(*state.prober.readiness(detail))
            state.emit(Step.ARM, "probe", _check_status(check), _check_detail(check))


async def _open_entry(state: RotationState) -> None:
    """Journal the rotation (a new entry unless it continues one) and take the plan's lock."""
    assert state.armed is not None
    plan, armed = state.plan, state.armed
    if not state.id:
        state.id = await state.journal_call(
            lambda: state.journal.begin(
                kind=state.kind,
                plan=plan.name,
                plan_path=str(plan.path.resolve()),
                reason=state.reason,
                operator=state.operator,
                old_fp=armed.old_fingerprint,
            ),
        )
        state.entry_opened = True
    try:
        await state.journal_call(state.journal.acquire, plan.name, state.id)
        state.locked = True
    except LockHeld as exc:
        skipped = state.kind in ("sync", "check")  # a tick during a rotation: skipped, not failed
        if state.entry_opened:
            if skipped:
                state.skipped = True
                message = f"skipped: {exc}"
                state.event(Step.ARM, RunState.SKIPPED, detail=message)
                await state.journal_update(
                    state=RunState.SKIPPED,
                    exit_code=int(Exit.BUSY),
                    finished_at=time.time(),
                    report={"state": RunState.SKIPPED, "kind": state.kind, "message": message, "lock": exc.as_dict()},
                )
            else:
                await state.journal_update(state=RunState.ABORTED, finished_at=time.time())
        raise RotationError(str(exc), Exit.BUSY, {"lock": exc.as_dict(), "skipped": skipped}) from None
    await state.journal_call(
        state.journal.record,
        state.id,
        Step.ARM,
        "ok",
        detail=f"{len(armed.checks)} targets ready in {armed.seconds:.3f}s",
        fingerprint=armed.old_fingerprint,
        version=armed.old_version,
    )


async def keep_warm(state: RotationState) -> None:
    """While armed: keep the probe's connection open and renew the plan lock's lease.
    Raises LockHeld when the hold ended and someone else has the plan now."""
    if state.prober is not None:
        await state.prober.warm()
    if state.ctx is not None:
        await state.ctx.warm()  # the plugins' touches: webhooks, Vault, AWS (no key, nothing billed)
    if state.locked:
        # Same holder: extends the lease.  On the rotation's own journal thread, so
        # it is ordered before the release in disarm().
        await state.journal_call(state.journal.acquire, state.plan.name, state.id)


async def disarm(state: RotationState) -> None:
    """Close every client, journal a rotation that never took a key as aborted, release the lock."""
    if state.closed:
        return
    state.closed = True
    for p in list(state.backends.values()) + list(state.consumers.values()):
        try:
            await asyncio.wait_for(p.close(), 5)
        except Exception:  # noqa: BLE001, S110 - closing is best effort
            pass
    if state.ctx:
        await state.ctx.aclose()
    if state.revocation is not None and not state.revocation.done():
        state.revocation.cancel()
    # Only a rotation that never took a key is "aborted"; one that failed after the
    # key was journaled keeps its state, so `resume` can finish it.
    # A journal that cannot be written (disk full) must not keep the lock's release from being tried.
    if (
        state.id
        and state.report is None
        and not state.key_journaled
        and not state.skipped
        and state.armed
        and state.armed.ok
    ):
        await _best_effort(state, state.journal.update, state.id, state=RunState.ABORTED, finished_at=time.time())
    if state.locked:
        await _best_effort(state, state.journal.release, state.plan.name, state.id)
    await asyncio.get_running_loop().run_in_executor(None, state.writer.close)
    state.old_secret = None  # keep no copy of the old key around


async def _best_effort(rotation: RotationState, fn: Any, *args: Any, **kw: Any) -> None:
    try:
        await rotation.journal_call(fn, *args, **kw)
    except Exception as exc:  # noqa: BLE001 - the caller already reports why the journal failed
        log.warning("journal write at disarm failed", rotation=rotation.id, error=type(exc).__name__)


def _keep(checks: dict[str, Check], name: str, check: Check) -> Check:
    """Record a target's arm check; a second target of the same name (a plan built
    without `load_plan`'s checks) can never mask the first one's failure."""
    if name in checks:
        check = Check(False, f"two targets are named {name!r}; names must be unique across backends and consumers")
    checks[name] = check
    return check


def _scrubbed(c: Check) -> Check:
    return Check(c.ok, scrub(c.detail), [scrub(w) for w in c.warnings])


def _check_status(c: Check) -> str:
    if c.ok is False:
        return "failed"
    if c.warnings or c.ok is None:
        return "warning"
    return "ok"


def _check_detail(c: Check) -> str:
    parts = [c.detail] if c.detail else []
    parts += [f"warning: {w}" for w in c.warnings]
    return "; ".join(parts)
