"""A rotation's event stream in the service (`rotator.service.sessions.Held.follow`, what
`/api/rotations/ID/events` sends the page): it ends with the rotation's last word, `closed`
or `report`, however the follower's wake-ups fall.

In-process: the session runs the memory plugins (tests/memory_targets.py).  Disarming is
made slower, to widen the window in which a closing session is already `done` but has not
yet said `closed` (it releases the plan's lock first): a follower woken there by its
heartbeat ended the stream without saying why (seen once on a loaded machine, in
tests/test_service_ops.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from rotator.journal import Journal
from rotator.pipeline import arm
from rotator.pipeline.single_flow import SingleFlow
from rotator.pipeline.state import RotationState
from rotator.report import Report
from rotator.service.sessions import Held

try:
    from tests import memory_targets as mem
except ImportError:
    import memory_targets as mem  # type: ignore[no-redef]

OLD = "sk_test_oldkey111"
HEARTBEAT = 0.01  # the follower wakes often: many chances to look while the session closes


@pytest.fixture(autouse=True)
def _memory() -> Iterator[None]:
    with mem.registered():
        mem.STORE["primary"] = (1, OLD)
        mem.STORE["mirror"] = (1, OLD)
        yield


def _slow_disarm(monkeypatch: pytest.MonkeyPatch, seconds: float, error: Exception | None = None) -> None:
    real = arm.disarm

    async def disarm(state: RotationState) -> None:
        await asyncio.sleep(seconds)
        await real(state)
        if error is not None:
            raise error

    monkeypatch.setattr(arm, "disarm", disarm)


async def _follow(held: Held) -> list[str]:
    return [item["type"] async for item in held.follow(0, heartbeat=HEARTBEAT) if item is not None]


def _closed_while_followed() -> tuple[list[str], list[Report | None]]:
    ended: list[Report | None] = []

    async def go() -> list[str]:
        state = RotationState(mem.plan(), Journal(), reason="events test", operator="ada")
        held = Held(
            state, "ada", arm_timeout=None, keep_warm_every=60, on_end=lambda h, r: ended.append(r), flow=SingleFlow()
        )
        await held.session.arm()
        held.armed()
        follower = asyncio.ensure_future(_follow(held))
        await asyncio.sleep(5 * HEARTBEAT)  # it follows, and has sent `armed`
        await held.session.close("closed by bob (web, 127.0.0.1)")
        return await asyncio.wait_for(follower, 10)

    return asyncio.run(go()), ended


def test_the_stream_of_a_closed_rotation_ends_with_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_disarm(monkeypatch, 0.3)  # 30 heartbeats while the session is done but has not said why
    kinds, ended = _closed_while_followed()
    assert "armed" in kinds and kinds[-1] == "closed", kinds
    assert ended == [None]


def test_a_session_that_ends_without_its_last_word_still_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Disarming raised before `closed`: the follower does not wait for it forever."""
    _slow_disarm(monkeypatch, 0.05, error=RuntimeError("the journal's disk is full"))
    monkeypatch.setattr(Held, "SILENT_END", 0.2)

    async def go() -> list[Any]:
        state = RotationState(mem.plan(), Journal(), reason="events test", operator="ada")
        held = Held(state, "ada", arm_timeout=None, keep_warm_every=60, on_end=lambda h, r: None, flow=SingleFlow())
        await held.session.arm()
        held.armed()
        follower = asyncio.ensure_future(_follow(held))
        with pytest.raises(RuntimeError, match="disk is full"):
            await held.session.close("closed by bob")
        assert held.done
        return await asyncio.wait_for(follower, 10)

    kinds = asyncio.run(go())
    assert kinds[-1] == "armed" and "closed" not in kinds, kinds
