"""Signal one consumer that the key changed, then (if it can) confirm it uses the new one."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rotator.pipeline.attempts import attempt, reason, unwrap
from rotator.report import EmitStatus, Step, TargetStatus
from rotator.secret import scrub

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.plugin import Consumer, RotationEvent
    from rotator.report import TargetResult


async def run(state: RotationState, c: Consumer, event: RotationEvent, res: TargetResult) -> None:
    """Record on `res`: ok, failed (signal), or unconfirmed (it did not report the new fingerprint)."""
    res.started = state.since_key()
    state.emit(Step.SIGNAL, c.name, EmitStatus.RUNNING)
    try:
        detail = await attempt(res, c.settings.timeout, c.settings.retries, state.deadline, lambda: c.signal(event))
        res.detail = scrub(detail)
        res.status = TargetStatus.OK
    except Exception as exc:  # noqa: BLE001
        res.status, res.detail = TargetStatus.FAILED, reason(unwrap(exc))
        res.finished = state.since_key()
        res.phase("signal", res.started, res.finished)
        state.emit(Step.SIGNAL, c.name, EmitStatus.FAILED, res.detail, res.seconds)
        return
    signalled = state.since_key()
    res.phase("signal", res.started, signalled)
    state.emit(Step.SIGNAL, c.name, EmitStatus.OK, res.detail, signalled - res.started)
    state.event(Step.SIGNAL, "ok", target=c.name, fingerprint=event.fingerprint)
    if c.can_confirm:
        await confirm(state, c, event.fingerprint, res)
    res.finished = state.since_key()
    if c.can_confirm:
        res.phase("confirm", signalled, res.finished)


async def confirm(state: RotationState, c: Consumer, fingerprint: str, res: TargetResult) -> None:
    assert res.started is not None
    until = min(state.deadline, asyncio.get_running_loop().time() + c.settings.confirm_timeout)
    try:
        conf = await c.confirm(fingerprint, until)
    except Exception as exc:  # noqa: BLE001
        conf = None
        res.status, res.detail = TargetStatus.UNCONFIRMED, reason(exc)
    if conf is not None:
        res.fingerprint = conf.reported_fingerprint
        if conf.confirmed:
            res.detail = scrub(conf.detail) or "confirmed"
        else:
            res.status = TargetStatus.UNCONFIRMED
            res.detail = scrub(conf.detail) or (
                f"still reports {conf.reported_fingerprint or 'nothing'}, not {fingerprint}"
            )
    state.emit(
        Step.CONFIRM,
        c.name,
        EmitStatus.OK if res.status == TargetStatus.OK else EmitStatus.FAILED,
        res.detail,
        state.since_key() - res.started,
    )
