"""Step tests for the alternating flows' steps (issue 25): the slots survey, the re-key, the
promote and the roll back, each over one `RotationState` armed against in-memory targets
(tests/memory_targets.py): a `memory-slots` primary that holds the active key, the standby
key and the slot metadata under the same check-and-set rules as the built-ins, a mirror
and a consumer.  What each step does to the slots, the targets, the journal and the report.

The steps that need the API's answer (a re-key's three probes, the roll back's check that
the standby still works) probe the Adjutor stand-in (the `standin` fixture: a loopback
server, so those tests are `process`); the rest run with no probe and no socket (`unit`).
No CLI, no subprocess: a change to a step fails here first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from rotator import pipeline
from rotator.backend_rules import SlotState
from rotator.errors import RotationError
from rotator.exitcodes import Exit
from rotator.journal import Journal
from rotator.pipeline import alt_report, alternating, arm, rekey, slot_status, slots
from rotator.pipeline.ask import ResetAsk
from rotator.pipeline.promote import run as promote_run  # the steps (the package's `promote` is the flow)
from rotator.pipeline.rollback import refusal as rollback_refusal
from rotator.pipeline.rollback import run as rollback_run
from rotator.pipeline.state import RotationState
from rotator.plan import Plan, parse_plan
from rotator.plugin import Conflict, Slot, slots_metadata
from rotator.report import KeyOutcome, Report, RunState, Step, TargetStatus
from rotator.secret import Secret, fingerprint
from rotator.testing.adjutor import AdjutorStandIn

try:
    from tests import memory_targets as mem
except ImportError:
    import memory_targets as mem  # type: ignore[no-redef]

T = TypeVar("T")
BLUE, GREEN = "payments-blue", "payments-green"
STORE = "store"  # the primary's slot in mem.SLOTS
BLUE_KEY, GREEN_KEY = "sk_test_blue_0001", "sk_test_green_0001"  # the keys of the tests without the API


@pytest.fixture(autouse=True)
def _memory() -> Iterator[None]:
    with mem.registered():
        yield


def make_plan(probe_url: str | None = None) -> Plan:
    data: dict[str, Any] = {
        "secret": {"name": "payments", "strategy": "alternating", "apps": [BLUE, GREEN], "key_pattern": None},
        "rotation": {"deadline": 10},
        "backends": [
            {"name": STORE, "type": "memory-slots", "primary": True, "slot": STORE, "retries": 0},
            {"name": "mirror", "type": "memory", "slot": "mirror", "retries": 0},
        ],
        "consumers": [{"name": "app", "type": "memory", "retries": 0, "confirm_timeout": 1}],
    }
    if probe_url:
        data["probe"] = {"preset": "adjutor", "url": probe_url, "retries": 0, "backoff": 0.01}
    return parse_plan(data, Path("payments.toml"))


def hold(active: str, standby: str | None = None, *, token: str = "rekey:seeded") -> None:
    """The primary holds `active` as blue's key (and `standby` as green's), recorded; the mirror has the active."""
    meta = slots_metadata(
        Slot(BLUE, fingerprint(active)), Slot(GREEN, fingerprint(standby)) if standby else None, token
    )
    mem.SLOTS[STORE] = SlotState(Secret(active), Secret(standby) if standby else None, meta, "1")
    mem.STORE["mirror"] = (1, active)


def held() -> tuple[str | None, str | None]:
    s = mem.SLOTS[STORE]
    return (s.active.reveal() if s.active else None), (s.standby.reveal() if s.standby else None)


def armed(plan: Plan, body: Callable[[RotationState, slots.Alternating], Awaitable[T]], kind: str = "rekey") -> T:
    """Arm an alternating state (both slots read and probed), run `body`, disarm."""

    async def go() -> T:
        state = RotationState(plan, Journal(), kind=kind, reason="step test")
        try:
            alt = await pipeline.arm_alternating(state)
            return await body(state, alt)
        finally:
            await arm.disarm(state)

    return asyncio.run(go())


def paste(key: str) -> Callable[[RotationState, slots.Alternating], Awaitable[rekey.StandbyRow]]:
    """The re-key step given `key`, as the flow gives it the operator's paste."""

    async def body(state: RotationState, alt: slots.Alternating) -> rekey.StandbyRow:
        state.key_arrived()
        return await rekey.run(state, alt, Secret(key))

    return body


def events(run_id: str) -> set[tuple[str, str]]:
    return {(e["step"], e["status"]) for e in Journal().events(run_id)}


# -- in-process: the backend's contract, the survey, the refusal before any probe, the promote --


def test_the_memory_slots_primary_keeps_the_slot_rules() -> None:
    """The in-memory primary honours what every built-in does: check-and-set on the version,
    a retried token changes nothing, the standby never equals the active key, a single write
    keeps the standby and its record."""
    hold(BLUE_KEY)
    plan = make_plan()

    async def go() -> None:
        state = RotationState(plan, Journal())
        try:
            assert (await arm.run(state)).ok
            primary = state.primary
            before = await primary.read_slots()
            assert before.active == Slot(BLUE, fingerprint(BLUE_KEY)) and before.standby is None
            with pytest.raises(Conflict):
                await primary.write_standby(Secret(GREEN_KEY), app=GREEN, token="rekey:t1", expected_version="0")
            assert held() == (BLUE_KEY, None)  # nothing written
            w = await primary.write_standby(Secret(GREEN_KEY), app=GREEN, token="rekey:t1", expected_version="1")
            again = await primary.write_standby(Secret(GREEN_KEY), app=GREEN, token="rekey:t1", expected_version="1")
            assert (w.version, again.version) == ("2", "2") and "already" in again.detail
            with pytest.raises(Exception, match="the active key"):
                await primary.write_standby(Secret(BLUE_KEY), app=GREEN, token="rekey:t2", expected_version="2")
            back = await primary.read_slots()
            assert back.standby == Slot(GREEN, fingerprint(GREEN_KEY), back.standby.set_at if back.standby else None)
            assert back.standby_secret == Secret(GREEN_KEY) and back.token == "rekey:t1"
            with pytest.raises(Conflict):
                await primary.write(Secret("sk_test_other_01"), token="x", expected_version="1")
            await primary.write(Secret("sk_test_other_01"), token="x", expected_version="2")
            assert held() == ("sk_test_other_01", GREEN_KEY)  # a single write moves the active value only
            assert (await primary.read_slots()).token == "rekey:t1"
        finally:
            await arm.disarm(state)

    asyncio.run(go())


def test_the_slots_survey_reads_both_slots_and_refuses_a_record_it_cannot_trust() -> None:
    hold(BLUE_KEY, GREEN_KEY)
    plan = make_plan()
    alt = asyncio.run(slot_status.survey(plan))
    assert (alt.active_app, alt.standby_app) == (BLUE, GREEN)
    assert alt.describe() == f"active {BLUE} ({fingerprint(BLUE_KEY)}), standby {GREEN} ({fingerprint(GREEN_KEY)})"
    assert alt.last_step is slots.LastStep.REKEY
    # Without a probe nothing can say the standby works: never promoted on a guess.
    assert alt.standby_problem() is not None and "no probe in the plan" in alt.standby_problem()
    # The standby value changed outside rotator: the record no longer describes it; exit 15, one line, no key.
    s = mem.SLOTS[STORE]
    mem.SLOTS[STORE] = SlotState(s.active, Secret("sk_test_edited_01"), s.meta_text, "2")
    with pytest.raises(RotationError) as exc:
        asyncio.run(slot_status.survey(plan))
    assert exc.value.exit_code == Exit.SLOT_RECORD and "is not the key its slot metadata describes" in str(exc.value)
    assert "--repair --active APP" in str(exc.value) and "sk_test_edited_01" not in str(exc.value)


def test_rekey_refuses_a_key_a_slot_holds_and_writes_nothing() -> None:
    hold(BLUE_KEY, GREEN_KEY)
    plan = make_plan()
    for key, which in ((BLUE_KEY, "active"), (GREEN_KEY, "standby")):
        row = armed(plan, paste(key))
        assert row.outcome is KeyOutcome.REFUSED and row.exit_code == Exit.KEY_REFUSED
        assert "the key was not reset" in row.message and f"{which} slot's key" in row.message
        assert key not in row.message and row.attempts == 0 and row.fingerprint is None
    assert held() == (BLUE_KEY, GREEN_KEY) and mem.WRITES == []


def test_promote_swaps_the_slots_then_every_target_holds_the_standby_key() -> None:
    hold(BLUE_KEY, GREEN_KEY)

    async def body(state: RotationState, alt: slots.Alternating) -> tuple[Report, str]:
        return await promote_run(state, alt), alt.active_app

    report, active = armed(make_plan(), body, kind="promote")
    assert report.state == RunState.DONE and report.exit_code == 0, report.message
    targets = {t.name: t for t in report.targets}
    assert targets[STORE].status == TargetStatus.OK and targets[STORE].fingerprint == fingerprint(GREEN_KEY)
    assert targets["mirror"].status == TargetStatus.OK and mem.STORE["mirror"][1] == GREEN_KEY
    assert [fp for name, fp, _ in mem.SIGNALS if name == "app"] == [fingerprint(GREEN_KEY)]
    assert held() == (GREEN_KEY, BLUE_KEY)  # the swap: both keys kept
    slots_now = mem.SLOTS[STORE].slots()
    assert slots_now.active is not None and slots_now.active.app == GREEN and active == GREEN
    assert (Step.PROMOTE, "ok") in events(report.id)
    assert Journal().get(report.id).state == RunState.DONE  # type: ignore[union-attr]


def test_a_promote_whose_swap_conflicts_writes_nothing_else() -> None:
    hold(BLUE_KEY, GREEN_KEY)

    async def body(state: RotationState, alt: slots.Alternating) -> Report:
        s = mem.SLOTS[STORE]  # another writer changes the record after arm
        mem.SLOTS[STORE] = SlotState(s.active, s.standby, s.meta_text, "7")
        return await promote_run(state, alt)

    report = armed(make_plan(), body, kind="promote")
    assert report.state == RunState.CONFLICT and report.exit_code == Exit.CONFLICT, report.message
    assert held() == (BLUE_KEY, GREEN_KEY) and mem.STORE["mirror"] == (1, BLUE_KEY) and mem.SIGNALS == []


# -- with the API (the Adjutor stand-in): the re-key's probes and the roll back --------------


@dataclass
class Api:
    standin: AdjutorStandIn
    plan: Plan

    def key(self, app: str) -> str:
        return self.standin.key_of(app)


@pytest.fixture
def api(standin: AdjutorStandIn) -> Api:
    """Two apps in the stand-in (blue active on the primary and the mirror, the standby empty)."""
    standin.add_app(BLUE)
    standin.add_app(GREEN)
    hold(standin.key_of(BLUE))
    return Api(standin, make_plan(standin.models_url))


def seed_standby(w: Api) -> str:
    """Re-key the empty standby (green reset) through the step; returns green's new key."""
    green = w.standin.reset(GREEN)
    row = armed(w.plan, paste(green))
    assert row.outcome is KeyOutcome.DONE and row.written, row.message
    # The standby write as a target row: what the flow's report lists.
    assert row.status == TargetStatus.OK and row.name == STORE and row.attempts == 1 and row.primary
    assert row.fingerprint == fingerprint(green) and row.seconds is not None and row.seconds <= (row.finished or 0)
    return green


def test_rekey_writes_the_standby_slot_only_read_back(api: Api) -> None:
    blue = api.key(BLUE)
    green = seed_standby(api)
    assert held() == (blue, green)  # the active key is untouched: no consumer moves
    assert mem.STORE["mirror"] == (1, blue) and mem.SIGNALS == []
    record = mem.SLOTS[STORE].slots()
    assert record.standby is not None and (record.standby.app, record.standby.fingerprint) == (
        GREEN,
        fingerprint(green),
    )
    # Re-keyed again: the previous standby key is proven revoked before the write.
    green2 = api.standin.reset(GREEN)
    row = armed(api.plan, paste(green2))
    assert row.written and row.previous == fingerprint(green) and row.revoked is True and row.revoked_at
    report = alt_report_of(api, row)
    assert report.exit_code == 0 and report.state == RunState.DONE
    assert [t.name for t in report.targets] == [STORE] and report.targets[0].fingerprint == fingerprint(green2)
    assert report.alternating is not None and report.alternating["rekeys"][0]["previous_revoked"] is True
    assert "its previous key proven revoked" in report.message


def alt_report_of(w: Api, row: rekey.StandbyRow) -> Report:
    """The flow's one report for a re-key alone, made from its row and closed in the journal."""

    async def body(state: RotationState, alt: slots.Alternating) -> Report:
        return await alt_report.finish_rekeys(state, alt, None, [row])

    return armed(w.plan, body)


def test_rekey_refuses_another_apps_key_and_says_when_the_active_app_was_reset(api: Api) -> None:
    green = seed_standby(api)
    other = api.standin.add_app("payments-other")  # a valid key, but not a reset of the standby app
    before, writes = held(), len(mem.WRITES)
    wrong = armed(api.plan, paste(other))
    assert wrong.outcome is KeyOutcome.REFUSED and wrong.revoked is False and wrong.exit_code == Exit.KEY_REFUSED
    assert f"previous key ({fingerprint(green)}) still works" in wrong.message
    blue_new = api.standin.reset(BLUE)  # the operator reset the ACTIVE app by mistake
    mistaken = armed(api.plan, paste(blue_new))
    assert mistaken.outcome is KeyOutcome.ACTIVE_RESET and f"the active app ({BLUE}) was reset" in mistaken.message
    assert held() == before and len(mem.WRITES) == writes  # neither wrote anything


def test_a_standby_write_that_conflicts_is_reported_failed_and_nothing_is_lost(api: Api) -> None:
    blue = api.key(BLUE)
    green = api.standin.reset(GREEN)

    async def body(state: RotationState, alt: slots.Alternating) -> Report:
        state.key_arrived()
        # Another writer stores a standby after arm: the check-and-set write must not overwrite it.
        s = mem.SLOTS[STORE]
        meta = slots_metadata(Slot(BLUE, fingerprint(blue)), Slot(GREEN, fingerprint("sk_test_other_99")), "x")
        mem.SLOTS[STORE] = SlotState(s.active, Secret("sk_test_other_99"), meta, "5")
        row = await rekey.run(state, alt, Secret(green))
        assert row.outcome is KeyOutcome.FAILED and row.status == TargetStatus.CONFLICT
        assert row.exit_code == Exit.CONFLICT and "was not written" in row.message and green not in row.message
        return await alt_report.finish_rekeys(state, alt, None, [row])

    report = armed(api.plan, body)
    assert report.state == RunState.FAILED and report.exit_code == Exit.CONFLICT, report.message
    assert [(t.name, t.status) for t in report.targets] == [(STORE, TargetStatus.CONFLICT)]
    assert held() == (blue, "sk_test_other_99")  # the other writer's standby stands
    row = Journal().get(report.id)
    assert row is not None and row.state == RunState.FAILED and (Step.REKEY, "conflict") in events(report.id)


class Pastes:
    """The operator: hands `key` when asked; a notice that the write is retried clears the fault."""

    def __init__(self, key: str) -> None:
        self.key_ = key
        self.asks: list[ResetAsk] = []
        self.notices: list[str] = []

    async def key(self, ask: ResetAsk) -> Secret:
        self.asks.append(ask)
        return Secret(self.key_)

    def notice(self, line: str) -> None:
        self.notices.append(line)
        mem.FAILING.discard(STORE)  # the store is back before the next try


def test_a_failed_standby_write_is_held_retried_and_then_stored(api: Api) -> None:
    """The reset happened, the store failed: the key is held, the write retried, never lost."""
    blue = api.key(BLUE)
    green = api.standin.reset(GREEN)
    operator = Pastes(green)
    mem.FAILING.add(STORE)

    async def body(state: RotationState, alt: slots.Alternating) -> Report:
        out = await alternating.rekey(state, alt, operator, mistaken=pipeline.mistaken_reset)
        assert isinstance(out, rekey.StandbyRow)
        return await alt_report.finish_rekeys(state, alt, None, [out])

    report = armed(api.plan, body)
    assert report.exit_code == 0 and report.state == RunState.DONE, report.message
    assert len(operator.asks) == 1 and "NOT stored yet" in operator.notices[0] and green not in operator.notices[0]
    assert held() == (blue, green)
    evs = events(report.id)
    assert (Step.REKEY, "failed") in evs and (Step.REKEY, "ok") in evs


def test_a_rollback_swaps_back_and_fans_the_previous_key_out(api: Api) -> None:
    blue = api.key(BLUE)
    green = seed_standby(api)

    async def promote_it(state: RotationState, alt: slots.Alternating) -> Report:
        return await promote_run(state, alt)

    assert armed(api.plan, promote_it, kind="promote").exit_code == 0

    async def back(state: RotationState, alt: slots.Alternating) -> Report:
        assert rollback_refusal(alt) is None
        return await rollback_run(state, alt)

    report = armed(api.plan, back, kind="rollback")
    assert report.state == RunState.DONE, report.message
    assert held() == (blue, green) and mem.STORE["mirror"][1] == blue
    assert [fp for name, fp, _ in mem.SIGNALS if name == "app"] == [fingerprint(green), fingerprint(blue)]
    assert (Step.ROLLBACK, "ok") in events(report.id)

    async def again(state: RotationState, alt: slots.Alternating) -> str | None:
        return rollback_refusal(alt)

    assert "already rolled back" in (armed(api.plan, again, kind="rollback") or "")
