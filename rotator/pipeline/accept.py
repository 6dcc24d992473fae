"""Accept the key: the window's deadline, a result per target, and the write-ahead record.

The journal knows the key's fingerprint before any backend does, so a crash at
any later point leaves an entry `rotator resume` can finish.  The check that
the old key was revoked starts here and runs beside the writes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from rotator.report import RunState, Step, TargetResult

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.secret import Secret


async def run(state: RotationState, secret: Secret) -> None:
    assert state.armed is not None and state.key_received is not None
    state.deadline = asyncio.get_running_loop().time() + state.plan.rotation.deadline
    fp = secret.fingerprint
    # A continued entry keeps its first key_received_at: the window began then.
    received: dict[str, Any] = {"key_received_at": state.key_received_wall} if state.entry_opened else {}
    # (An event queued before an awaited write is written before it.)
    state.event(Step.KEY, "accepted", fingerprint=fp)
    await state.journal_update(state=RunState.KEY_ACCEPTED, new_fp=fp, **received)
    state.key_journaled = True

    old = state.old_secret
    # An incident always checks: that the leaked key is dead is what it is for.
    if (state.plan.probe.check_old_key or state.incident) and state.prober and old and old != secret:
        state.revocation = asyncio.ensure_future(state.prober.old_key_revoked(old))

    state.results = {}
    for b in state.backends.values():
        state.results[b.name] = TargetResult(b.name, "backend", b.settings.type, primary=b.settings.primary)
    for c in state.consumers.values():
        state.results[c.name] = TargetResult(c.name, "consumer", c.settings.type)
