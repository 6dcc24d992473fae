"""Write the primary: check-and-set on the version read at arm, then read it back.

Until the primary holds the key nothing else is written, so a failure here
leaves every other target on the old key (and the journal says so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from rotator.logs import get_logger
from rotator.pipeline import finish, write
from rotator.report import GOOD, RunState, Step

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.report import Report
    from rotator.secret import Secret

log = get_logger("rotator.rotate")


async def run(state: RotationState, secret: Secret) -> Report | None:
    """None once the primary holds `secret`; else the (journaled) report of a rotation that wrote nothing."""
    assert state.armed is not None
    primary = state.primary
    res = state.results[primary.name]
    start = state.since_key()
    expected = None if state.force else (state.armed.old_version or "0")
    await write.run(state, primary, secret, res, expected)
    state.steps["primary"] = state.since_key() - start
    if res.status not in GOOD:
        return await finish.primary_failed(state, secret)
    await landed(state)
    return None


async def landed(state: RotationState) -> None:
    """Journal that the primary holds the key: from here `rotator resume` can finish the rotation.

    A journal that cannot be written now does not stop the rotation: the primary holds
    the key, so the other targets need it at once (they are not kept waiting for a
    database); the entry still says `key_accepted`, which `resume` also finishes, and
    the final record is retried (`finish.close_journal`)."""
    res = state.results[state.primary.name]
    state.event(Step.PRIMARY, res.status, target=res.name, fingerprint=res.fingerprint, version=res.version)
    try:
        await state.journal_update(state=RunState.FANNING_OUT, primary_version=res.version)
    except sa.exc.DBAPIError as exc:
        log.error("journal not written after the primary; going on", rotation=state.id, error=type(exc).__name__)
