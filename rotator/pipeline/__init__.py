"""The rotation pipeline: each flow is the list of its steps, in the runbook's order.

A flow runs over one `RotationState` that `arm.run` readied: everything slow
(imports, clients, connections, preflights, the current values, the journal
entry, the plan's lock) happened there, before the operator reset the key.
Once the key arrives, the critical path is the probe, the primary write, then
every other write and every signal at once.  `arm.disarm` closes it all.

The steps are plain `async def run(state, ...)` functions in this package;
new flows (promote a standby, re-key, roll back) are new lists of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotator.pipeline import accept, arm, drift, fan_out, finish, probe, read_primary, write_primary
from rotator.pipeline.state import RotationState, in_window

if TYPE_CHECKING:
    from rotator.report import Report
    from rotator.secret import Secret

__all__ = ["RotationState", "arm", "check_drift", "dry_run", "resume", "rotate", "sync"]  # arm: .run, .disarm


@in_window
async def rotate(state: RotationState, secret: Secret) -> Report:
    """The key from the operator into every target.  A refused key writes nothing and
    leaves the state armed: the session may ask again."""
    if (refused := await probe.run(state, secret)) is not None:
        return refused  # nothing written
    await accept.run(state, secret)  # write-ahead: the journal has the key's fingerprint
    if (failed := await write_primary.run(state, secret)) is not None:
        return failed  # the primary was not written, so nothing else was
    await fan_out.run(state, secret)  # other backends at once; each consumer when its reads_from are written
    return await finish.run(state, secret)


@in_window
async def resume(state: RotationState, expected_fp: str | None, *, primary_unsure: bool = False) -> Report:
    """Finish a journaled rotation from the key in its primary."""
    secret = await read_primary.run(state, expected_fp, unsure=primary_unsure)
    await accept.run(state, secret)
    await read_primary.source(state, secret)
    await fan_out.run(state, secret, skip_current=True)  # what already holds the key is not written again
    return await finish.run(state, secret)


@in_window
async def sync(state: RotationState) -> Report:
    """Copy the primary's key to every backend that drifted; signal only the consumers of what changed."""
    secret = read_primary.held_at_arm(state)
    await accept.run(state, secret)
    await read_primary.source(state, secret)
    await fan_out.run(state, secret, skip_current=True, signal_unchanged=False)
    return await finish.run(state, secret)


async def check_drift(state: RotationState) -> Report:
    """`sync --check`: report which backends differ from the primary; write nothing."""
    return await drift.run(state, read_primary.held_at_arm(state))


async def dry_run(state: RotationState, secret: Secret) -> Report:
    """`rotate --dry-run`: probe the key, write nothing, close the journal entry."""
    return await finish.abandon(state, probe.dry_run_report(state, await probe.check(state, secret)))
