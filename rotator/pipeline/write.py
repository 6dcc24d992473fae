"""One backend's write: the rotation's write token, check-and-set, read-back, retries.

`attempt_write` is the one write primitive: an attempt (a key write, the slots'
swap, the standby write) counts only once reading the backend back shows what
was meant, is retried under the target's timeout and retries and the rotation's
deadline, and a `Conflict` (the store moved since it was read) is its own
status.  `run` is the key write `write_primary` and `fan_out` share;
`promote.swap` and `rekey` write their slots through the same primitive.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from rotator.errors import Conflict, PluginError
from rotator.pipeline.attempts import attempt, reason, unwrap, write_token
from rotator.report import EmitStatus, Step, TargetResult, TargetStatus
from rotator.secret import scrub

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.plugin import Backend
    from rotator.secret import Secret

T = TypeVar("T")


def read_back(backend: str, what: str, held: str | None, meant: str | None) -> None:
    """Raise (retryable) unless the read-back `held` fingerprint is the `meant` one."""
    if held != meant:
        raise PluginError(f"{backend}: {what} reads back {held or 'nothing'}, not {meant}")


async def attempt_write(
    state: RotationState,
    b: Backend,
    res: TargetResult,
    once: Callable[[], Awaitable[T]],
    *,
    deadline: float | None = None,
) -> T | None:
    """`once()` (one write and its read-back) under `b`'s timeout and retries, before `deadline`
    (loop time; the rotation's by default).  On success `res` is OK and `once`'s value is returned;
    otherwise `res` is CONFLICT or FAILED with one secret-free reason, and None.  Never raises."""
    try:
        value = await attempt(
            res, b.settings.timeout, b.settings.retries, state.deadline if deadline is None else deadline, once
        )
    except Exception as exc:  # noqa: BLE001
        inner = unwrap(exc)
        res.status = TargetStatus.CONFLICT if isinstance(inner, Conflict) else TargetStatus.FAILED
        res.detail = reason(inner)
        return None
    res.status = TargetStatus.OK
    return value


async def run(state: RotationState, b: Backend, secret: Secret, res: TargetResult, expected: str | None) -> None:
    """Write `secret` to `b` (`expected`: the version it must still be at, or None) and
    record the outcome on `res`; never raises."""
    step = Step.PRIMARY if res.primary else Step.WRITE
    res.started = state.since_key()
    state.emit(step, b.name, EmitStatus.RUNNING)
    token = write_token(state.id, b.name)

    async def once() -> tuple[str | None, str, str | None]:
        t0 = state.since_key()
        written = await b.write(secret, token=token, expected_version=expected)
        t1 = state.since_key()
        res.phase("write", t0, t1)
        back = await b.read()
        res.phase("read_back", t1, state.since_key())
        fp = back.secret.fingerprint if back.secret else None
        read_back(b.name, "the key", fp, secret.fingerprint)
        return written.version or back.version, written.detail, fp

    if (done := await attempt_write(state, b, res, once)) is not None:
        version, detail, fp = done
        res.version, res.fingerprint, res.detail = version, fp, scrub(detail) or "verified"
    res.finished = state.since_key()
    state.emit(step, b.name, EmitStatus.of(res.status == TargetStatus.OK), res.detail, res.seconds)
