"""One backend's write: the rotation's write token, check-and-set, read-back, retries.

Shared by `write_primary` and `fan_out`; a write counts only once reading the
backend back gives the new key's fingerprint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotator.errors import Conflict, PluginError
from rotator.pipeline.attempts import attempt, reason, unwrap, write_token
from rotator.report import Step, TargetResult, TargetStatus
from rotator.secret import scrub

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.plugin import Backend
    from rotator.secret import Secret


async def run(state: RotationState, b: Backend, secret: Secret, res: TargetResult, expected: str | None) -> None:
    """Write `secret` to `b` (`expected`: the version it must still be at, or None) and
    record the outcome on `res`; never raises."""
    step = Step.PRIMARY if res.primary else Step.WRITE
    res.started = state.since_key()
    state.emit(step, b.name, "running")
    token = write_token(state.id, b.name)

    async def once() -> tuple[str | None, str, str | None]:
        t0 = state.since_key()
        written = await b.write(secret, token=token, expected_version=expected)
        t1 = state.since_key()
        res.phase("write", t0, t1)
        back = await b.read()
        res.phase("read_back", t1, state.since_key())
        fp = back.secret.fingerprint if back.secret else None
        if fp != secret.fingerprint:
            raise PluginError(f"{b.name}: read back fingerprint {fp} != {secret.fingerprint}")
        return written.version or back.version, written.detail, fp

    try:
        version, detail, fp = await attempt(res, b.settings.timeout, b.settings.retries, state.deadline, once)
        res.status, res.version, res.fingerprint, res.detail = TargetStatus.OK, version, fp, scrub(detail) or "verified"
    except Exception as exc:  # noqa: BLE001
        res.status = TargetStatus.CONFLICT if isinstance(exc, Conflict) else TargetStatus.FAILED
        res.detail = reason(unwrap(exc))
    res.finished = state.since_key()
    state.emit(step, b.name, "ok" if res.status == TargetStatus.OK else "failed", res.detail, res.seconds)
