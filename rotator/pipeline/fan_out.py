"""Fan out: every other backend at once; each consumer as soon as what it reads from is written.

Parameterised rather than tied to one flow: which backends and consumers, and
whether a target that already holds the key is left alone (resume, sync), are
arguments, so that other flows (promote a standby, re-key) reuse it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from rotator.pipeline import signal, write
from rotator.plugin import RotationEvent
from rotator.report import GOOD, EmitStatus, Step, TargetStatus

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.plugin import Backend, Consumer
    from rotator.secret import Secret


async def run(
    state: RotationState,
    secret: Secret,
    *,
    backends: Iterable[Backend] | None = None,
    consumers: Iterable[Consumer] | None = None,
    skip_current: bool = False,
    signal_unchanged: bool = True,
) -> None:
    """Write `secret` to `backends` (default: all but the primary) and signal `consumers`
    (default: all).  `skip_current`: a backend that held the key at arm is not written.
    `signal_unchanged`: a consumer whose sources all already held the key is still signalled."""
    start = state.since_key()
    primary = state.plan.primary.name
    if backends is None:
        backends = [b for b in state.backends.values() if b.name != primary]
    written = {b.name: asyncio.ensure_future(_backend(state, b, secret, skip_current)) for b in backends}
    event = RotationEvent(
        secret_name=state.plan.name,
        fingerprint=secret.fingerprint,
        rotation_id=state.id,
        timestamp=int(time.time()),
        reason=state.kind,
    )
    todo = state.consumers.values() if consumers is None else consumers
    keyed = replace(event, secret=secret)  # only for a consumer that hands the key over itself (`takes_key`)
    await asyncio.gather(
        *written.values(),
        *(_consumer(state, c, keyed if c.takes_key else event, written, signal_unchanged) for c in todo),
    )
    state.steps["fan_out"] = state.since_key() - start


async def _backend(state: RotationState, b: Backend, secret: Secret, skip_current: bool) -> None:
    res = state.results[b.name]
    current = state.armed.current.get(b.name) if state.armed else None
    if skip_current and current == secret.fingerprint:
        res.status, res.detail, res.fingerprint = TargetStatus.UNCHANGED, "already holds the key", current
        res.started = res.finished = state.since_key()
        state.emit(Step.WRITE, b.name, EmitStatus.OK, res.detail, 0.0)
    else:
        await write.run(state, b, secret, res, None)
    state.event(
        Step.WRITE,
        TargetStatus.OK if res.status in GOOD else res.status,
        target=b.name,
        detail=res.detail,
        fingerprint=res.fingerprint,
        version=res.version,
        seconds=res.seconds,
    )


async def _consumer(
    state: RotationState,
    c: Consumer,
    event: RotationEvent,
    written: Mapping[str, asyncio.Future[None]],
    signal_unchanged: bool,
) -> None:
    res = state.results[c.name]
    deps = c.settings.reads_from or [n for n in state.backends if n != state.plan.primary.name]
    waits = [written[n] for n in deps if n in written]
    if waits:
        await asyncio.gather(*waits)
    failed = [n for n in deps if state.results[n].status not in GOOD]
    if not signal_unchanged and not failed and all(state.results[n].status == TargetStatus.UNCHANGED for n in deps):
        res.status, res.detail = TargetStatus.UNCHANGED, "nothing it reads from changed"
        state.emit(Step.SIGNAL, c.name, EmitStatus.OK, res.detail)
    elif failed:
        res.status, res.detail = TargetStatus.SKIPPED, f"not signalled: {', '.join(failed)} not written"
        state.emit(Step.SIGNAL, c.name, EmitStatus.SKIPPED, res.detail)
    else:
        await signal.run(state, c, event, res)
    state.event(
        Step.CONSUMER,
        res.status,
        target=c.name,
        detail=res.detail,
        fingerprint=res.fingerprint,
        seconds=res.seconds,
    )
