"""A rotation, as named steps over one state: arm, probe, write primary, fan out,
signal, confirm, report.

Everything slow happens in `arm`, before the operator resets the key: plugins
are imported and constructed, clients made, connections opened, preflights run,
the current values read.  Once the key arrives, the critical path is the probe,
the primary write, then every other write and every signal at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import getpass
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from rotator.exitcodes import Exit
from rotator.journal import Journal, JournalWriter, LockHeld
from rotator.logs import get_logger
from rotator.plan import Plan
from rotator.plugin import (
    Backend,
    Check,
    Conflict,
    Consumer,
    PluginContext,
    PluginError,
    RotationEvent,
    Stored,
)
from rotator.probe import ProbeOutcome, Prober, ProbeResult
from rotator.registry import backend_class, consumer_class
from rotator.report import BAD, ArmResult, Progress, ProgressFn, Report, TargetResult
from rotator.secret import Secret, scrub

T = TypeVar("T")
log = get_logger("rotator.rotation")
TOKEN_NAMESPACE = uuid.UUID("5b0d1f0e-4c1a-4f7e-9d59-7a1f3c2b9e10")


_gc_pause = {"depth": 0, "was_enabled": True}


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while the window is open.

    A full collection walks every object the armed clients hold (botocore's
    service models alone are hundreds of thousands of objects): measured at
    200-250 ms with 21 backends armed, stalling the event loop and every worker
    thread mid fan-out.  A window allocates little, so collecting after it costs nothing.
    """
    if _gc_pause["depth"] == 0:
        _gc_pause["was_enabled"] = gc.isenabled()
        gc.disable()
    _gc_pause["depth"] += 1
    try:
        yield
    finally:
        _gc_pause["depth"] -= 1
        if _gc_pause["depth"] == 0 and _gc_pause["was_enabled"]:
            gc.enable()


def _no_gc_in_window(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        with _gc_paused():
            return await fn(*args, **kwargs)

    return wrapper


class RotationError(Exception):
    """Stops a rotation before anything is written; carries the exit code."""

    def __init__(self, message: str, exit_code: Exit, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.details = details or {}  # e.g. {"lock": who holds the plan and since when}


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, PluginError):
        return exc.retryable
    return isinstance(exc, TimeoutError | OSError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PluginError):
        return scrub(str(exc))  # a plugin may echo its input: no live secret gets through
    if isinstance(exc, TimeoutError):
        return "timed out"
    # Never echo an arbitrary library exception's text: it may hold a request body.
    return f"{type(exc).__name__} (details withheld: may hold secret material)"


def write_token(rotation_id: str, backend: str) -> str:
    """Stable per rotation and backend: a retried write is the same write."""
    return str(uuid.uuid5(TOKEN_NAMESPACE, f"{rotation_id}/{backend}"))


class Rotation:
    """One rotation (or sync, or resume) of one plan."""

    def __init__(
        self,
        plan: Plan,
        journal: Journal,
        *,
        kind: str = "rotate",
        reason: str = "",
        operator: str | None = None,
        force: bool = False,
        accept_unprobed: bool = False,
        progress: ProgressFn | None = None,
        rotation_id: str | None = None,
    ) -> None:
        self.plan = plan
        self.journal = journal
        self.kind = kind
        self.reason = reason
        self.operator = operator or _operator()
        self.force = force
        self.accept_unprobed = accept_unprobed
        self._progress = progress or (lambda p: None)
        self.id = rotation_id or ""
        self._resuming = rotation_id is not None  # continue a journaled rotation, no new entry
        self._primary_done = False  # resume and sync: the primary already holds the key
        self._key_journaled = self._resuming
        self.ctx: PluginContext | None = None
        self.backends: dict[str, Backend] = {}
        self.consumers: dict[str, Consumer] = {}
        self.prober: Prober | None = None
        self.armed: ArmResult | None = None
        self.old_secret: Secret | None = None
        self.key_received: float | None = None  # perf_counter
        self.report: Report | None = None
        self._locked = False
        self._closed = False
        self._writer = JournalWriter(journal)

    # -- helpers ---------------------------------------------------------
    def emit(self, step: str, target: str, status: str, detail: str = "", seconds: float | None = None) -> None:
        try:
            self._progress(Progress(step, target, status, scrub(detail), seconds))
        except Exception:  # noqa: BLE001 - a broken progress display must not break a rotation
            log.warning("progress callback failed", step=step)

    def _since_key(self) -> float:
        assert self.key_received is not None
        return time.perf_counter() - self.key_received

    async def _journal(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """A journal write we wait for (it runs after every event queued before it)."""
        return await self._writer.call(fn, *args, **kw)

    def _event(self, step: str, status: str, **fields: Any) -> None:
        """Journal an event without waiting: written with the next batch, in order."""
        self._writer.event(self.id, step, status, **fields)

    # -- arm -------------------------------------------------------------
    async def arm(self) -> ArmResult:
        """Everything that can be done before the key exists."""
        t0 = time.perf_counter()
        self._armed_once = True
        plan = self.plan
        self.emit("arm", "", "running", f"{len(plan.backends)} backends, {len(plan.consumers)} consumers")
        n_targets = len(plan.backends) + len(plan.consumers)
        self.ctx = PluginContext(max_threads=max(plan.rotation.max_threads, min(n_targets * 2 + 4, 1024)))
        for b in plan.backends:
            self.backends[b.name] = backend_class(b.type)(b, self.ctx)
        for c in plan.consumers:
            self.consumers[c.name] = consumer_class(c.type)(c, self.ctx)
        if plan.probe.enabled:
            self.prober = Prober(plan.probe, self.ctx.http)

        checks: dict[str, Check] = {}
        current: dict[str, str | None] = {}
        primary_stored: Stored | None = None

        async def ready_backend(b: Backend) -> None:
            nonlocal primary_stored
            start = time.perf_counter()
            try:
                await asyncio.wait_for(b.open(), b.settings.timeout)
                check = await asyncio.wait_for(b.preflight(), b.settings.timeout)
                if check.ok is not False:
                    stored = await asyncio.wait_for(b.read(), b.settings.timeout)
                    current[b.name] = stored.secret.fingerprint if stored.secret else None
                    if b.settings.primary:
                        primary_stored = stored
            except Exception as exc:  # noqa: BLE001 - one line per target, never a traceback
                check = Check(False, _reason(exc))
            check = _keep(checks, b.name, _scrubbed(check))
            self.emit("arm", b.name, _check_status(check), _check_detail(check), time.perf_counter() - start)

        async def ready_consumer(c: Consumer) -> None:
            start = time.perf_counter()
            try:
                await asyncio.wait_for(c.open(), c.settings.timeout)
                check = await asyncio.wait_for(c.preflight(), c.settings.timeout)
            except Exception as exc:  # noqa: BLE001
                check = Check(False, _reason(exc))
            check = _keep(checks, c.name, _scrubbed(check))
            self.emit("arm", c.name, _check_status(check), _check_detail(check), time.perf_counter() - start)

        async def warm_probe() -> None:
            if self.prober:
                detail = await self.prober.warm()
                self.emit("arm", "probe", "ok", detail)

        await asyncio.gather(
            *(ready_backend(b) for b in self.backends.values()),
            *(ready_consumer(c) for c in self.consumers.values()),
            warm_probe(),
        )
        old_fp = None
        old_version = None
        if primary_stored is not None:
            self.old_secret = primary_stored.secret
            old_version = primary_stored.version
            old_fp = primary_stored.secret.fingerprint if primary_stored.secret else None
        ok = all(c.ok is not False for c in checks.values())
        self.armed = ArmResult(ok, checks, old_fp, old_version, time.perf_counter() - t0, current)
        if ok and not self._resuming:
            self.id = await self._journal(
                lambda: self.journal.begin(
                    kind=self.kind,
                    plan=plan.name,
                    plan_path=str(plan.path.resolve()),
                    reason=self.reason,
                    operator=self.operator,
                    old_fp=old_fp,
                ),
            )
        if ok:
            try:
                await self._journal(self.journal.acquire, plan.name, self.id)
                self._locked = True
            except LockHeld as exc:
                if not self._resuming:
                    await self._journal(self.journal.update, self.id, state="aborted", finished_at=time.time())
                raise RotationError(str(exc), Exit.BUSY, {"lock": exc.as_dict()}) from None
            await self._journal(
                self.journal.record,
                self.id,
                "arm",
                "ok",
                detail=f"{len(checks)} targets ready in {self.armed.seconds:.3f}s",
                fingerprint=old_fp,
                version=old_version,
            )
        self.emit("arm", "", "ok" if ok else "failed", f"{self.armed.seconds:.2f}s", self.armed.seconds)
        return self.armed

    # -- the key ---------------------------------------------------------
    def key_arrived(self) -> None:
        """Start the window clock (first key only: retyping a key is part of the outage)."""
        if self.key_received is None:
            self.key_received = time.perf_counter()
            self._key_received_wall = time.time()

    async def probe(self, secret: Secret) -> ProbeResult:
        self.key_arrived()
        if self.prober is None:
            return ProbeResult(ProbeOutcome.SKIPPED, "no probe in the plan")
        self.emit("probe", "", "running")
        result = await self.prober.probe(secret)
        status = {"accepted": "ok", "refused": "failed", "unavailable": "failed"}.get(result.outcome.value, "skipped")
        self.emit("probe", "", status, f"{result.outcome.value}: {result.detail}", result.seconds)
        for w in result.warnings:
            self.emit("probe", "", "warning", w)
        self._event(
            "probe",
            result.outcome.value,
            detail=result.detail,
            fingerprint=secret.fingerprint,
            seconds=result.seconds,
        )
        return result

    @_no_gc_in_window
    async def rotate(self, secret: Secret) -> Report:
        """Probe, then (if the key is good) write and signal.  A refused key leaves
        the rotation armed, so the caller may ask for the key again."""
        assert self.armed is not None and self.armed.ok, "arm() first"
        self.key_arrived()
        probe_start = self._since_key()
        result = await self.probe(secret)
        steps = {"probe": self._since_key() - probe_start}
        if result.outcome is ProbeOutcome.REFUSED:
            return self.not_written(f"the API refused this key ({result.detail}); nothing was written", probe=result)
        if result.outcome is ProbeOutcome.UNAVAILABLE and not self.accept_unprobed:
            return self.not_written(
                f"the probe could not check the key ({result.detail}); nothing was written "
                "(--accept-unprobed writes it anyway, during an API outage)",
                state="unavailable",
                code=Exit.PROBE_UNAVAILABLE,
                probe=result,
            )
        warnings = list(result.warnings)
        if result.outcome is ProbeOutcome.UNAVAILABLE:
            warnings.append("WRITTEN WITHOUT A SUCCESSFUL PROBE (--accept-unprobed): the key was not verified")
            self.emit("probe", "", "warning", warnings[-1])
        if self.old_secret is not None and self.old_secret == secret:
            warnings.append("the new key is the same as the one in the primary: was the key really reset?")
            self.emit("key", "", "warning", warnings[-1])
        return await self._commit(secret, result, steps, warnings)

    def not_written(
        self, message: str, *, state: str = "refused", code: Exit = Exit.KEY_REFUSED, probe: ProbeResult | None = None
    ) -> Report:
        """The report of an attempt that wrote nothing (a refused or rejected key, a dry run)."""
        return Report(
            id=self.id,
            kind=self.kind,
            plan=self.plan.name,
            state=state,
            exit_code=int(code),
            reason=self.reason,
            operator=self.operator,
            old_fingerprint=self.armed.old_fingerprint if self.armed else None,
            probe=probe,
            message=message,
        )

    async def abandon(self, report: Report) -> Report:
        """Close the journal entry of a rotation that wrote nothing."""
        self.report = report
        await self._journal(
            self.journal.update,
            self.id,
            state=report.state,
            exit_code=report.exit_code,
            finished_at=time.time(),
            report=report.as_dict(),
        )
        return report

    # -- write and signal ------------------------------------------------
    async def _attempts(
        self, target: TargetResult, timeout: float, retries: int, deadline: float, fn: Callable[[], Awaitable[T]]
    ) -> T:
        loop = asyncio.get_running_loop()
        budget = max(deadline - loop.time(), 0.001)
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(retries + 1) | stop_after_delay(budget),
            wait=wait_random_exponential(multiplier=0.05, max=2.0),
            retry=retry_if_exception(_retryable),
            reraise=True,
        ):
            with attempt:
                target.attempts = attempt.retry_state.attempt_number
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError
                return await asyncio.wait_for(fn(), min(timeout, remaining))
        raise AssertionError("unreachable")

    async def _write_backend(
        self, b: Backend, secret: Secret, res: TargetResult, deadline: float, expected: str | None
    ) -> None:
        res.started = self._since_key()
        self.emit("primary" if res.primary else "write", b.name, "running")
        token = write_token(self.id, b.name)

        async def once() -> tuple[str | None, str, str | None]:
            written = await b.write(secret, token=token, expected_version=expected)
            back = await b.read()
            fp = back.secret.fingerprint if back.secret else None
            if fp != secret.fingerprint:
                raise PluginError(f"{b.name}: read back fingerprint {fp} != {secret.fingerprint}")
            return written.version or back.version, written.detail, fp

        try:
            version, detail, fp = await self._attempts(res, b.settings.timeout, b.settings.retries, deadline, once)
            res.status, res.version, res.fingerprint, res.detail = "ok", version, fp, scrub(detail) or "verified"
        except Exception as exc:  # noqa: BLE001
            res.status, res.detail = ("conflict" if isinstance(exc, Conflict) else "failed"), _reason(_unwrap(exc))
        res.finished = self._since_key()
        self.emit(
            "primary" if res.primary else "write",
            b.name,
            "ok" if res.status == "ok" else "failed",
            res.detail,
            res.seconds,
        )

    async def _signal_consumer(self, c: Consumer, event: RotationEvent, res: TargetResult, deadline: float) -> None:
        res.started = self._since_key()
        self.emit("signal", c.name, "running")
        try:
            res.detail = scrub(
                await self._attempts(res, c.settings.timeout, c.settings.retries, deadline, lambda: c.signal(event))
            )
            res.status = "ok"
        except Exception as exc:  # noqa: BLE001
            res.status, res.detail = "failed", _reason(_unwrap(exc))
            res.finished = self._since_key()
            self.emit("signal", c.name, "failed", res.detail, res.seconds)
            return
        self.emit("signal", c.name, "ok", res.detail, self._since_key() - res.started)
        self._event("signal", "ok", target=c.name, fingerprint=event.fingerprint)
        if c.can_confirm:
            loop = asyncio.get_running_loop()
            until = min(deadline, loop.time() + c.settings.confirm_timeout)
            try:
                conf = await c.confirm(event.fingerprint, until)
            except Exception as exc:  # noqa: BLE001
                conf = None
                res.status, res.detail = "unconfirmed", _reason(exc)
            if conf is not None:
                res.fingerprint = conf.reported_fingerprint
                if conf.confirmed:
                    res.detail = scrub(conf.detail) or "confirmed"
                else:
                    res.status = "unconfirmed"
                    res.detail = scrub(conf.detail) or (
                        f"still reports {conf.reported_fingerprint or 'nothing'}, not {event.fingerprint}"
                    )
            self.emit(
                "confirm", c.name, "ok" if res.status == "ok" else "failed", res.detail, self._since_key() - res.started
            )
        res.finished = self._since_key()

    async def _commit(
        self, secret: Secret, probe: ProbeResult | None, steps: dict[str, float], warnings: list[str]
    ) -> Report:
        assert self.armed is not None and self.key_received is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.plan.rotation.deadline
        fp = secret.fingerprint
        # Write-ahead: the journal knows the key's fingerprint before any backend does.
        received = {} if self._resuming else {"key_received_at": self._key_received_wall}  # keep the first one
        # (An event queued before an awaited write is written before it.)
        self._event("key", "accepted", fingerprint=fp)
        await self._journal(self.journal.update, self.id, state="key_accepted", new_fp=fp, **received)
        self._key_journaled = True

        revocation_task = None
        if self.plan.probe.check_old_key and self.prober and self.old_secret and self.old_secret != secret:
            revocation_task = asyncio.ensure_future(self.prober.old_key_revoked(self.old_secret))

        primary_settings = self.plan.primary
        primary = self.backends[primary_settings.name]
        results: dict[str, TargetResult] = {}
        for b in self.backends.values():
            results[b.name] = TargetResult(b.name, "backend", b.settings.type, primary=b.settings.primary)
        for c in self.consumers.values():
            results[c.name] = TargetResult(c.name, "consumer", c.settings.type)

        t = self._since_key()
        pres = results[primary.name]
        if self._primary_done:
            pres.status, pres.detail, pres.fingerprint = "unchanged", "source of the key", fp
            pres.started = pres.finished = t
        else:
            expected = None if self.force else (self.armed.old_version or "0")
            await self._write_backend(primary, secret, pres, deadline, expected)
        steps["primary"] = self._since_key() - t
        if pres.status not in ("ok", "unchanged"):
            report = self._finish_report(secret, probe, steps, warnings, results, None)
            report.state = "conflict" if pres.status == "conflict" else "failed"
            report.exit_code = int(Exit.CONFLICT if pres.status == "conflict" else Exit.ERROR)
            report.message = f"the primary ({primary.name}) was not written: {pres.detail}; nothing else was written"
            await self._close_journal(report)
            return report
        self._event("primary", pres.status, target=primary.name, fingerprint=fp, version=pres.version)
        await self._journal(self.journal.update, self.id, state="fanning_out", primary_version=pres.version)

        # Fan out: every other backend at once; each consumer as soon as what it reads from is written.
        t = self._since_key()
        written: dict[str, asyncio.Future[None]] = {}

        async def fan_backend(b: Backend) -> None:
            res = results[b.name]
            current = self.armed.current.get(b.name) if self.armed else None
            if self._primary_done and current == fp:
                res.status, res.detail, res.fingerprint = "unchanged", "already holds the key", fp
                res.started = res.finished = self._since_key()
                self.emit("write", b.name, "ok", res.detail, 0.0)
            else:
                await self._write_backend(b, secret, res, deadline, None)
            self._event(
                "write",
                "ok" if res.status in ("ok", "unchanged") else res.status,
                target=b.name,
                detail=res.detail,
                fingerprint=res.fingerprint,
                version=res.version,
                seconds=res.seconds,
            )

        for b in self.backends.values():
            if b is not primary:
                written[b.name] = asyncio.ensure_future(fan_backend(b))
        event = RotationEvent(
            secret_name=self.plan.name,
            fingerprint=fp,
            rotation_id=self.id,
            timestamp=int(time.time()),
            reason=self.kind,
        )

        async def fan_consumer(c: Consumer) -> None:
            res = results[c.name]
            deps = c.settings.reads_from or [n for n in self.backends if n != primary.name]
            waits = [written[n] for n in deps if n in written]
            if waits:
                await asyncio.gather(*waits)
            failed = [n for n in deps if results[n].status not in ("ok", "unchanged")]
            if self.kind == "sync" and not failed and all(results[n].status == "unchanged" for n in deps):
                res.status, res.detail = "unchanged", "nothing it reads from changed"
                self.emit("signal", c.name, "ok", res.detail)
            elif failed:
                res.status, res.detail = "skipped", f"not signalled: {', '.join(failed)} not written"
                self.emit("signal", c.name, "skipped", res.detail)
            else:
                await self._signal_consumer(c, event, res, deadline)
            self._event(
                "consumer",
                res.status,
                target=c.name,
                detail=res.detail,
                fingerprint=res.fingerprint,
                seconds=res.seconds,
            )

        await asyncio.gather(*written.values(), *(fan_consumer(c) for c in self.consumers.values()))
        steps["fan_out"] = self._since_key() - t
        revocation = await revocation_task if revocation_task else None
        report = self._finish_report(secret, probe, steps, warnings, results, revocation)
        await self._close_journal(report)
        return report

    def _finish_report(
        self,
        secret: Secret,
        probe: ProbeResult | None,
        steps: dict[str, float],
        warnings: list[str],
        results: dict[str, TargetResult],
        revocation: ProbeResult | None,
    ) -> Report:
        ends = [r.finished for r in results.values() if r.finished is not None]
        window = max(ends) if ends else self._since_key()
        bad = [r for r in results.values() if r.status in BAD]
        state = "partial" if bad else "done"
        if revocation is not None:
            if revocation.outcome is ProbeOutcome.REFUSED:
                warnings.append("the OLD key still works against the API: it has NOT been revoked")
            elif revocation.outcome is not ProbeOutcome.ACCEPTED:
                warnings.append(f"could not check that the old key is revoked: {revocation.detail}")
        if bad:
            names = ", ".join(f"{r.name} ({r.status})" for r in bad)
            message = f"the primary holds the new key; not finished: {names}; run `rotator resume {self.id}`"
        else:
            message = f"every target holds the new key; window {window:.3f}s"
        return Report(
            id=self.id,
            kind=self.kind,
            plan=self.plan.name,
            state=state,
            exit_code=int(Exit.PARTIAL if bad else Exit.DONE),
            reason=self.reason,
            operator=self.operator,
            old_fingerprint=self.armed.old_fingerprint if self.armed else None,
            new_fingerprint=secret.fingerprint,
            window=window,
            steps=steps,
            probe=probe,
            revocation=revocation,
            targets=list(results.values()),
            warnings=warnings,
            message=message,
        )

    async def _close_journal(self, report: Report) -> None:
        self.report = report
        self._event("report", report.state, detail=report.message, seconds=report.window)
        await self._journal(
            self.journal.update,
            self.id,
            state=report.state,
            exit_code=report.exit_code,
            finished_at=time.time(),
            window_s=report.window,
            report=report.as_dict(),
        )

    # -- resume ----------------------------------------------------------
    @_no_gc_in_window
    async def resume(self, expected_fp: str | None, *, primary_unsure: bool = False) -> Report:
        """Finish a rotation whose primary holds the key: re-read it from there.

        `primary_unsure`: the journal does not say whether the primary write landed
        (killed during it); a primary without the journaled key means it did not."""
        assert self.armed is not None
        primary = self.backends[self.plan.primary.name]
        stored = await primary.read()
        held = stored.secret.fingerprint if stored.secret else None
        if primary_unsure and (held is None or held != expected_fp):
            raise RotationError(
                f"rotation {self.id} never wrote the primary ({primary.name} holds {held or 'no key'}, "
                f"not {expected_fp}): the key must be entered again with `rotator rotate`",
                Exit.ERROR,
            )
        if stored.secret is None:
            raise RotationError(
                f"the primary ({primary.name}) holds no key: enter the key again with `rotator rotate`", Exit.ERROR
            )
        if expected_fp and stored.secret.fingerprint != expected_fp:
            raise RotationError(
                f"the primary ({primary.name}) holds {stored.secret.fingerprint}, not {expected_fp} as journaled: "
                "the key changed since; run `rotator sync` to copy what the primary holds, or rotate again",
                Exit.CONFLICT,
            )
        self.key_arrived()
        self._primary_done = True
        return await self._commit(stored.secret, None, {}, [])

    # -- sync ------------------------------------------------------------
    @_no_gc_in_window
    async def sync(self, check_only: bool = False) -> Report:
        """Copy the primary's key to every backend that drifted; signal only the
        consumers of what changed.  `check_only` reports drift and writes nothing."""
        assert self.armed is not None
        primary = self.plan.primary.name
        secret = self.old_secret
        if secret is None:
            raise RotationError(f"the primary ({primary}) holds no key: nothing to sync from", Exit.ERROR)
        self.key_arrived()
        if not check_only:
            self._primary_done = True
            return await self._commit(secret, None, {}, [])
        targets = []
        for name, fp in self.armed.current.items():
            if name == primary:
                continue
            b = self.backends[name]
            drift = fp != secret.fingerprint
            detail = f"holds {fp or 'nothing'}, primary holds {secret.fingerprint}" if drift else "in sync"
            targets.append(
                TargetResult(
                    name, "backend", b.settings.type, "drift" if drift else "unchanged", detail, fingerprint=fp
                )
            )
            self.emit("check", name, "failed" if drift else "ok", detail)
        drifted = [t.name for t in targets if t.status == "drift"]
        report = Report(
            id=self.id,
            kind=self.kind,
            plan=self.plan.name,
            state="drift" if drifted else "done",
            exit_code=int(Exit.DRIFT if drifted else Exit.DONE),
            old_fingerprint=secret.fingerprint,
            new_fingerprint=secret.fingerprint,
            targets=targets,
            message=f"drift in {', '.join(drifted)}" if drifted else "every backend matches the primary",
        )
        await self._close_journal(report)
        return report

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for p in list(self.backends.values()) + list(self.consumers.values()):
            try:
                await asyncio.wait_for(p.close(), 5)
            except Exception:  # noqa: BLE001, S110 - closing is best effort
                pass
        if self.ctx:
            await self.ctx.aclose()
        if getattr(self, "_armed_once", False):
            # Only a rotation that never took a key is "aborted"; one that failed after
            # the key was journaled keeps its state, so `resume` can finish it.
            if self.id and self.report is None and not self._key_journaled and self.armed and self.armed.ok:
                await self._journal(self.journal.update, self.id, state="aborted", finished_at=time.time())
            if self._locked:
                await self._journal(self.journal.release, self.plan.name, self.id)
        await asyncio.get_running_loop().run_in_executor(None, self._writer.close)


def _unwrap(exc: BaseException) -> BaseException:
    if isinstance(exc, RetryError) and exc.last_attempt.failed:
        inner = exc.last_attempt.exception()
        if inner is not None:
            return inner
    return exc


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


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "unknown"
