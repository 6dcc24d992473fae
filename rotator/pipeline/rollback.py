"""Roll back a promote: swap the slots again and fan the previous active key back out.

Possible only between a promote and the re-key after it: the slots' metadata
says a promote wrote them last, so the standby is still the key every consumer
used before, and it works (probed at arm).  After the re-key that key is
revoked; the roll back refuses in one line, and nothing is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotator.pipeline.promote import run as promote_run
from rotator.pipeline.slots import LastStep
from rotator.report import Step

if TYPE_CHECKING:
    from rotator.pipeline.slots import Alternating
    from rotator.pipeline.state import RotationState
    from rotator.report import Report


def refusal(alt: Alternating) -> str | None:
    """Why there is nothing to roll back (one line), or None."""
    from rotator.pipeline.leaked import refusal as leaked_refusal

    if (why := leaked_refusal(alt, "roll back")) is not None:
        return why
    last = alt.last_step
    if last is LastStep.REKEY:
        return (
            f"nothing to roll back: {alt.standby_app} was re-keyed after the last promote, so the key it had "
            "then is revoked"
        )
    if last is LastStep.ROLLBACK:
        return "nothing to roll back: the last promote was already rolled back"
    if last is not LastStep.PROMOTE:
        return "nothing to roll back: the slots do not record a promote by rotator"
    if problem := alt.standby_problem():
        return f"cannot roll back: {problem}"
    return None


async def run(state: RotationState, alt: Alternating) -> Report:
    assert refusal(alt) is None, "check refusal() first"
    return await promote_run(state, alt, step=Step.ROLLBACK)
