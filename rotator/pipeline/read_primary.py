"""The key from the primary, for the flows that do not take one from the operator
(resume, sync): the primary is the source of truth, its result "unchanged"."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.pipeline import write_primary
from rotator.report import TargetStatus

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.secret import Secret


async def run(state: RotationState, expected_fp: str | None, *, unsure: bool = False) -> Secret:
    """Re-read the primary and check it holds the journaled key (`expected_fp`).

    `unsure`: the journal does not say whether the primary write landed (killed
    during it); a primary without the journaled key means it did not."""
    assert state.armed is not None
    primary = state.primary
    stored = await primary.read()
    held = stored.secret.fingerprint if stored.secret else None
    if unsure and (held is None or held != expected_fp):
        raise RotationError(
            f"rotation {state.id} never wrote the primary ({primary.name} holds {held or 'no key'}, "
            f"not {expected_fp}): the key must be entered again with `rotator rotate`",
            Exit.NOTHING_TO_RESUME,
        )
    if stored.secret is None:
        raise RotationError(
            f"the primary ({primary.name}) holds no key: enter the key again with `rotator rotate`",
            Exit.NOTHING_TO_RESUME,
        )
    if expected_fp and stored.secret.fingerprint != expected_fp:
        raise RotationError(
            f"the primary ({primary.name}) holds {stored.secret.fingerprint}, not {expected_fp} as journaled: "
            "the key changed since; run `rotator sync` to copy what the primary holds, or rotate again",
            Exit.CONFLICT,
        )
    state.key_arrived()
    return stored.secret


def held_at_arm(state: RotationState) -> Secret:
    """What the primary held when the rotation armed (sync copies it)."""
    assert state.armed is not None
    if state.old_secret is None:
        raise RotationError(
            f"the primary ({state.plan.primary.name}) holds no key: nothing to sync from", Exit.NOTHING_TO_RESUME
        )
    state.key_arrived()
    return state.old_secret


async def source(state: RotationState, secret: Secret) -> None:
    """Record the primary as the key's source (nothing written to it) and journal it as landed."""
    res = state.results[state.primary.name]
    res.status, res.detail, res.fingerprint = TargetStatus.UNCHANGED, "source of the key", secret.fingerprint
    res.started = res.finished = state.since_key()
    state.steps["primary"] = 0.0
    await write_primary.landed(state)
