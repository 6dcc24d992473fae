"""`RotationState`: everything one rotation (or resume, or sync) knows, in one place.

The steps (`arm`, `probe`, `write_primary`, `fan_out`, ...) are plain functions
over it; which steps run, in which order, is the flow in `pipeline/__init__.py`.
The state carries no mode: a resume is a state made for an existing journal entry
(`rotation_id`), run through the resume steps.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import getpass
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from rotator.journal import JournalWriter
from rotator.logs import get_logger
from rotator.report import Progress, ProgressFn, Report, TargetResult
from rotator.secret import scrub

if TYPE_CHECKING:
    import asyncio

    from rotator.journal import Journal
    from rotator.plan import Plan
    from rotator.plugin import Backend, Check, Consumer, PluginContext
    from rotator.probe import Prober, ProbeResult
    from rotator.report import ArmResult
    from rotator.reset_watch import ResetDetected, WatchResult
    from rotator.secret import Secret

T = TypeVar("T")
log = get_logger("rotator.rotation")


def operator_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "unknown"


def _no_progress(p: Progress) -> None:
    return None


@dataclass(eq=False)
class RotationState:
    """One rotation of one plan: its settings, its armed targets, its clocks, its results."""

    plan: Plan
    journal: Journal
    kind: str = "rotate"  # the journal's kind: a RunKind (rotate, sync, check, promote, rekey, rollback)
    reason: str = ""
    operator: str = field(default_factory=operator_name)
    force: bool = False  # write the primary without check-and-set
    accept_unprobed: bool = False  # write a key the probe could not check
    resync: bool = False  # the key the primary already holds may be written (a re-sync, not a rotation)
    incident: bool = False  # `rotate --incident` of a single-app plan: the old key leaked (its revocation is proven)
    progress_fn: ProgressFn = _no_progress
    # Told of every journal event as it is queued (the service turns an alternating flow's
    # promote / re-key / revoked events into its page's events); best effort, like progress_fn.
    event_fn: Callable[[str, str, dict[str, Any]], None] | None = None
    id: str = ""  # the journal entry; given: continue that entry (resume), else arm opens one

    # -- armed (arm.run) --
    ctx: PluginContext | None = None
    backends: dict[str, Backend] = field(default_factory=dict)
    consumers: dict[str, Consumer] = field(default_factory=dict)
    prober: Prober | None = None
    probe_check: Check | None = None  # the probe's answer at arm (reachable? 5xx?): shown, never blocking
    armed: ArmResult | None = None
    old_secret: Secret | None = None  # what the primary held at arm
    entry_opened: bool = False  # arm opened this state's journal entry (it was not given)
    locked: bool = False  # holds the plan's journal lock
    skipped: bool = False  # a sync that found the plan locked: journaled `skipped`, not aborted
    closed: bool = False

    # -- the window (clocks: perf_counter; deadline: loop time) --
    key_received: float | None = None
    key_received_wall: float | None = None
    deadline: float = 0.0
    key_journaled: bool = False  # the write-ahead record of the key is in the journal
    results: dict[str, TargetResult] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    probe: ProbeResult | None = None
    revocation: asyncio.Future[ProbeResult] | None = None
    report: Report | None = None  # the final report, once the journal entry is closed

    # -- the outage (pipeline.session's reset watch): before the window, same clocks --
    reset: ResetDetected | None = None  # the old key's first refusal while armed
    watch: WatchResult | None = None  # what the watch saw (probes, last pass) when the key arrived
    old_key_look: asyncio.Future[ProbeResult] | None = None  # the old key tried once more as the key arrived
    refused_keys: list[dict[str, Any]] = field(default_factory=list)  # refused/rejected pastes: when, why

    def __post_init__(self) -> None:
        self.key_journaled = bool(self.id)  # a given entry already has its key journaled
        self.writer = JournalWriter(self.journal)

    @property
    def primary(self) -> Backend:
        return self.backends[self.plan.primary.name]

    # -- the clock -------------------------------------------------------
    def key_arrived(self, *, restart: bool = False) -> None:
        """Start the window clock.  `restart` (each key the session offers): the window runs
        from the key that is accepted; a refused paste before it is the operator's share of
        the outage (`refused_keys`), not every target's start time."""
        if self.key_received is None or restart:
            self.key_received = time.perf_counter()
            self.key_received_wall = time.time()

    def since_key(self) -> float:
        assert self.key_received is not None
        return time.perf_counter() - self.key_received

    # -- progress and journal --------------------------------------------
    def emit(self, step: str, target: str, status: str, detail: str = "", seconds: float | None = None) -> None:
        try:
            self.progress_fn(Progress(step, target, status, scrub(detail), seconds))
        except Exception:  # noqa: BLE001 - a broken progress display must not break a rotation
            log.warning("progress callback failed", step=step)

    async def journal_call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """A journal write we wait for (it runs after every event queued before it)."""
        return await self.writer.call(fn, *args, **kw)

    async def journal_update(self, *, retry_for: float = 0.0, **values: Any) -> None:
        """This rotation's row, durable, with every event queued before it (one commit);
        `retry_for`: seconds to keep trying a database that cannot be reached."""
        await self.writer.update(self.id, retry_for=retry_for, **values)

    def event(self, step: str, status: str, **fields: Any) -> None:
        """Journal an event without waiting: written with the next batch, in order."""
        self.writer.event(self.id, step, status, **fields)
        if self.event_fn is not None:
            try:
                self.event_fn(step, status, fields)
            except Exception:  # noqa: BLE001 - a broken listener must not break a rotation
                log.warning("event callback failed", step=step)


_gc_pause = {"depth": 0, "was_enabled": True}


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
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


def in_window(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """A flow that runs in the window: no cyclic GC until it returns."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        with gc_paused():
            return await fn(*args, **kwargs)

    return wrapper
