"""Asking the operator for a reset, from inside a flow: what to reset, why it is safe, and the watch.

A flow names the app and the reason (`ResetAsk`); whoever runs it (the CLI's
prompt or stdin, the service's page or API) supplies an `Operator` that shows
the instruction and returns the pasted key.  While the flow waits for the
standby's key, the reset watch probes the active key: if the operator resets
the active app by mistake, the flow says so at once (`Operator.notice`), before
the key arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httpx

from rotator.report import Step
from rotator.reset_watch import ResetDetected, ResetWatch, WatchOutcome

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.secret import Secret


@dataclass(frozen=True)
class ResetAsk:
    """One request to the operator: reset `app` in the dashboard, paste its new key."""

    app: str
    why: str
    instruction: str  # "Business → Apps → APP → View details → Reset app key: WHY"
    slot: str  # which slot the key goes to: standby | active
    attempt: int = 1
    refused: str | None = None  # why the previous paste was refused


class Operator(Protocol):
    async def key(self, ask: ResetAsk) -> Secret:
        """Show `ask`, return the key pasted (cleaned); raise to give up."""
        ...

    def notice(self, line: str) -> None:
        """Say `line` at once (the flow goes on waiting for the key)."""
        ...


async def take_key(
    state: RotationState, operator: Operator, ask: ResetAsk, *, watch_app: str | None
) -> tuple[Secret, ResetDetected | None]:
    """The operator's key; with `watch_app`, the active key is watched meanwhile and a
    refusal (that app was reset) is said the moment it is seen."""
    key = asyncio.ensure_future(operator.key(ask))
    if watch_app is None or state.prober is None or state.old_secret is None:
        return await key, None
    asked = (time.time(), time.perf_counter())
    async with httpx.AsyncClient(timeout=state.plan.probe.timeout) as client:
        watch = ResetWatch(state.prober, state.old_secret, client=client)
        watching = asyncio.ensure_future(watch.run())
        try:
            done, _ = await asyncio.wait({key, watching}, return_when=asyncio.FIRST_COMPLETED)
            if key not in done:
                result = watching.result()
                if result.outcome is WatchOutcome.RESET and result.reset is not None:
                    reset = result.reset
                    if reset.after_wall is None:  # refused at the first probe: the reset followed the ask
                        reset = dataclasses.replace(reset, after_wall=asked[0], after_perf=asked[1])
                    line = (
                        f"the ACTIVE app ({watch_app}) was just reset, not {ask.app}: every consumer is failing now; "
                        f"paste {watch_app}'s new key: it becomes the active key at once (single-app style)"
                    )
                    state.emit(Step.REKEY, watch_app, "failed", line)
                    state.event(Step.REKEY, "active_reset", target=watch_app, detail=line)
                    operator.notice(line)
                    return await key, reset
            return await key, None
        finally:
            watch.stop()
            if not key.done():
                key.cancel()
            with contextlib.suppress(Exception):
                await watching
