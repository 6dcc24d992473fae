"""Step tests for the alternating flows' steps (issue 25), in-process: the re-key, the promote and
the roll back, each over one `RotationState` armed against an env-file primary that holds the
standby slot (the real plugin, in a temporary file), an in-memory mirror and consumer
(tests/memory_targets.py) and the Adjutor stand-in with two apps; what each step does to the
slots, the targets and the report.  No process, no CLI: a change to a step fails here first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from rotator import pipeline
from rotator.journal import Journal
from rotator.pipeline import arm, rekey, slots
from rotator.pipeline.promote import run as promote_run  # the steps (the package's `promote` is the flow)
from rotator.pipeline.rollback import refusal as rollback_refusal
from rotator.pipeline.rollback import run as rollback_run
from rotator.pipeline.state import RotationState
from rotator.plan import Plan, parse_plan
from rotator.report import KeyOutcome, Report, RunState, Step, TargetStatus
from rotator.secret import Secret, fingerprint
from rotator.testing.adjutor import AdjutorStandIn

try:
    from tests import memory_targets as mem
except ImportError:
    import memory_targets as mem  # type: ignore[no-redef]

T = TypeVar("T")
BLUE, GREEN = "payments-blue", "payments-green"


@dataclass
class World:
    api: AdjutorStandIn
    plan: Plan
    store: Path

    def held(self) -> dict[str, str]:
        """The primary's env file: variable -> value."""
        return dict(line.split("=", 1) for line in self.store.read_text().splitlines() if "=" in line)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with mem.registered(), AdjutorStandIn(app=BLUE) as api:
        api.add_app(GREEN)
        blue = api.key_of(BLUE)
        store = tmp_path / "store.env"
        store.write_text(f"ADJUTOR_API_KEY={blue}\n")
        mem.STORE["mirror"] = (1, blue)
        data = {
            "secret": {"name": "payments", "strategy": "alternating", "apps": [BLUE, GREEN], "key_pattern": None},
            "probe": {"preset": "adjutor", "url": api.models_url, "retries": 0, "backoff": 0.01},
            "rotation": {"deadline": 10},
            "backends": [
                {
                    "name": "store",
                    "type": "envfile",
                    "primary": True,
                    "path": str(store),
                    "variable": "ADJUTOR_API_KEY",
                },
                {"name": "mirror", "type": "memory", "slot": "mirror", "retries": 0},
            ],
            "consumers": [{"name": "app", "type": "memory", "retries": 0, "confirm_timeout": 1}],
        }
        yield World(api, parse_plan(data, tmp_path / "payments.toml"), store)


def armed(w: World, body: Callable[[RotationState, slots.Alternating], Awaitable[T]], kind: str = "rekey") -> T:
    """Arm an alternating state (both slots read and probed), run `body`, disarm."""

    async def go() -> T:
        state = RotationState(w.plan, Journal(), kind=kind, reason="step test")
        try:
            alt = await pipeline.arm_alternating(state)
            return await body(state, alt)
        finally:
            await arm.disarm(state)

    return asyncio.run(go())


def seed_standby(w: World) -> str:
    """Re-key the empty standby (green reset) through the step; returns green's new key."""
    green = w.api.reset(GREEN)

    async def body(state: RotationState, alt: slots.Alternating) -> rekey.StandbyRow:
        state.key_arrived()
        return await rekey.run(state, alt, Secret(green))

    out = armed(w, body)
    assert out.outcome is KeyOutcome.DONE, out.message
    row = out  # the standby write as a target row: what the flow's report lists
    assert row.status == TargetStatus.OK and row.name == "store" and row.attempts == 1
    assert row.fingerprint == fingerprint(green) and row.seconds is not None and row.seconds <= (out.finished or 0)
    return green


def test_rekey_writes_the_standby_slot_only_read_back(world: World) -> None:
    blue = world.api.key_of(BLUE)
    green = seed_standby(world)
    held = world.held()
    assert held["ADJUTOR_API_KEY"] == blue  # the active key is untouched: no consumer moves
    assert held["ADJUTOR_API_KEY_STANDBY"] == green
    assert mem.STORE["mirror"] == (1, blue) and mem.SIGNALS == []

    async def look(state: RotationState, alt: slots.Alternating) -> tuple[str | None, str | None]:
        a, s = alt.slots.active, alt.slots.standby
        return (a.app if a else None), (s.fingerprint if s else None)

    assert armed(world, look) == (BLUE, fingerprint(green))


def test_rekey_refuses_a_key_a_slot_holds_and_writes_nothing(world: World) -> None:
    blue = world.api.key_of(BLUE)
    before = world.store.read_text()

    async def body(state: RotationState, alt: slots.Alternating) -> rekey.StandbyRow:
        state.key_arrived()
        return await rekey.run(state, alt, Secret(blue))

    out = armed(world, body)
    assert out.outcome is KeyOutcome.REFUSED and "the key was not reset" in out.message
    assert "active slot's key" in out.message and blue not in out.message
    assert world.store.read_text() == before


def test_promote_swaps_the_slots_then_every_target_holds_the_standby_key(world: World) -> None:
    blue = world.api.key_of(BLUE)
    green = seed_standby(world)

    async def body(state: RotationState, alt: slots.Alternating) -> tuple[Report, str]:
        report = await promote_run(state, alt)
        return report, alt.active_app

    report, active = armed(world, body, kind="promote")
    assert report.state == RunState.DONE and report.exit_code == 0, report.message
    targets = {t.name: t for t in report.targets}
    assert targets["store"].status == TargetStatus.OK and targets["store"].fingerprint == fingerprint(green)
    assert targets["mirror"].status == TargetStatus.OK and mem.STORE["mirror"][1] == green
    assert [fp for name, fp, _ in mem.SIGNALS if name == "app"] == [fingerprint(green)]
    held = world.held()
    assert (held["ADJUTOR_API_KEY"], held["ADJUTOR_API_KEY_STANDBY"]) == (green, blue)  # the swap: both still work
    assert active == GREEN
    events = {(e["step"], e["status"]) for e in Journal().events(report.id)}
    assert (Step.PROMOTE, "ok") in events


def test_a_rollback_swaps_back_and_fans_the_previous_key_out(world: World) -> None:
    blue = world.api.key_of(BLUE)
    green = seed_standby(world)

    async def promote_it(state: RotationState, alt: slots.Alternating) -> Report:
        return await promote_run(state, alt)

    armed(world, promote_it, kind="promote")

    async def back(state: RotationState, alt: slots.Alternating) -> Report:
        assert rollback_refusal(alt) is None
        return await rollback_run(state, alt)

    report = armed(world, back, kind="rollback")
    assert report.state == RunState.DONE, report.message
    held = world.held()
    assert (held["ADJUTOR_API_KEY"], held["ADJUTOR_API_KEY_STANDBY"]) == (blue, green)
    assert mem.STORE["mirror"][1] == blue
    assert [fp for name, fp, _ in mem.SIGNALS if name == "app"] == [fingerprint(green), fingerprint(blue)]


def test_rekey_refuses_another_apps_key_and_says_when_the_active_app_was_reset(world: World) -> None:
    green = seed_standby(world)
    other = world.api.add_app("payments-other")  # a valid key, but not a reset of the standby app
    before = world.store.read_text()

    def paste(key: str) -> Callable[[RotationState, slots.Alternating], Awaitable[rekey.StandbyRow]]:
        async def body(state: RotationState, alt: slots.Alternating) -> rekey.StandbyRow:
            state.key_arrived()
            return await rekey.run(state, alt, Secret(key))

        return body

    wrong = armed(world, paste(other))
    assert wrong.outcome is KeyOutcome.REFUSED and wrong.revoked is False
    assert f"previous key ({fingerprint(green)}) still works" in wrong.message
    blue_new = world.api.reset(BLUE)  # the operator reset the ACTIVE app by mistake
    mistaken = armed(world, paste(blue_new))
    assert mistaken.outcome is KeyOutcome.ACTIVE_RESET and f"the active app ({BLUE}) was reset" in mistaken.message
    assert world.store.read_text() == before  # neither wrote anything
