"""The plan's [rotation] table: the limits of one rotation."""

from __future__ import annotations

from pydantic import Field

from rotator.plan.strict import Strict


class RotationSpec(Strict):
    deadline: float = Field(default=120.0, gt=0, le=3600, description="seconds for the whole fan-out and signals")
    max_threads: int = Field(
        default=64, ge=1, le=1024, description="threads for blocking SDK calls (at least twice the targets are used)"
    )
    drain: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="alternating: seconds between every consumer confirming the promoted key and the ask to "
        "reset the retired app, so that calls already in flight on the retired key (sent before the consumer "
        "reloaded, checked by the API up to one call later) end before that key dies; at least your API calls' "
        "duration",
    )
