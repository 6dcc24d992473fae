"""One test per pipeline step, each over a `RotationState` armed against in-memory
targets (tests/memory_targets.py, registered like an installed plugin) and the
real journal: what the step does to the targets, to the state and to the journal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from rotator import pipeline
from rotator.errors import PluginError, RotationError
from rotator.exitcodes import Exit
from rotator.journal import Journal
from rotator.pipeline import accept, arm, attempts, fan_out, finish, probe, read_primary, signal, write_primary
from rotator.pipeline.state import RotationState
from rotator.plan import Plan
from rotator.plugin import RotationEvent
from rotator.report import RunState, TargetResult, TargetStatus
from rotator.secret import Secret, fingerprint
from rotator.testing.adjutor import AdjutorStandIn

try:
    from tests import memory_targets as mem
except ImportError:
    import memory_targets as mem  # type: ignore[no-redef]

T = TypeVar("T")
OLD, NEW = "sk_test_oldkey111", "sk_test_newkey222"


@pytest.fixture(autouse=True)
def _memory() -> Iterator[None]:
    with mem.registered():
        yield


def seed(**slots: str) -> None:
    for slot, value in slots.items():
        mem.STORE[slot] = (1, value)


def run(plan: Plan, body: Callable[[RotationState], Awaitable[T]], **kw: Any) -> tuple[T, RotationState]:
    """Arm a state for `plan`, run `body` on it, disarm it."""

    async def go() -> tuple[T, RotationState]:
        state = RotationState(plan, Journal(), reason="step test", **kw)
        try:
            armed = await arm.run(state)
            assert armed.ok, armed.problems()
            return await body(state), state
        finally:
            await arm.disarm(state)

    return asyncio.run(go())


def row(state: RotationState) -> Any:
    r = Journal().get(state.id)
    assert r is not None
    return r


def test_arm_reads_every_target_journals_the_entry_and_locks_the_plan() -> None:
    seed(primary=OLD, mirror="sk_test_drifted")
    plan = mem.plan(consumers={"app": {}})

    async def body(state: RotationState) -> dict[str, Any]:
        lock = Journal().lock_info(plan.name)
        return {"row": row(state), "lock": lock}

    seen, state = run(plan, body)
    assert state.armed is not None and state.armed.old_fingerprint == fingerprint(OLD)
    assert state.armed.current == {"primary": fingerprint(OLD), "mirror": fingerprint("sk_test_drifted")}
    assert set(state.armed.checks) == {"primary", "mirror", "app"} and state.entry_opened
    assert seen["row"].state == RunState.ARMED and seen["lock"]["holder"] == state.id
    # Disarmed without a key: aborted, lock released, no copy of the old key kept.
    assert row(state).state == RunState.ABORTED and Journal().lock_info(plan.name) is None
    assert state.old_secret is None and state.closed


def test_arm_with_a_broken_target_is_not_armed_and_journals_nothing() -> None:
    seed(primary=OLD)
    plan = mem.plan(mirrors=("mirror",))
    plan.backends[1].broken = True  # type: ignore[attr-defined]

    async def go() -> RotationState:
        state = RotationState(plan, Journal())
        try:
            armed = await arm.run(state)
            assert not armed.ok and armed.problems() == ["mirror: slot mirror is broken"]
            return state
        finally:
            await arm.disarm(state)

    state = asyncio.run(go())
    assert state.id == "" and Journal().history(plan.name) == []


def test_arm_refuses_a_plan_locked_by_another_rotation() -> None:
    seed(primary=OLD)
    plan = mem.plan()
    Journal().acquire(plan.name, "someone-else")

    async def go() -> RotationState:
        state = RotationState(plan, Journal())
        try:
            with pytest.raises(RotationError) as exc:
                await arm.run(state)
            assert exc.value.exit_code == Exit.BUSY and exc.value.details["lock"]["holder"] == "someone-else"
            return state
        finally:
            await arm.disarm(state)

    state = asyncio.run(go())
    assert row(state).state == RunState.ABORTED


def test_probe_refused_key_writes_nothing_and_keeps_the_state_armed(standin: AdjutorStandIn) -> None:
    seed(primary=standin.current_key, mirror=standin.current_key)
    plan = mem.plan(probe_url=standin.models_url)
    new = standin.reset()

    async def body(state: RotationState) -> tuple[Any, Any]:
        refused = await probe.run(state, Secret(new[:-2] + "zz"))
        accepted = await probe.run(state, Secret(new))
        return refused, accepted

    (refused, accepted), state = run(plan, body)
    assert refused is not None and refused.state == RunState.REFUSED and refused.exit_code == Exit.KEY_REFUSED
    assert "nothing was written" in refused.message and refused.probe is not None
    assert accepted is None and state.probe is not None and state.probe.outcome.value == "accepted"
    assert "probe" in state.steps and state.key_received is not None
    assert mem.WRITES == []


def test_probe_refuses_a_key_that_was_not_reset_unless_resync() -> None:
    seed(primary=OLD)
    result, state = run(mem.plan(), lambda s: probe.run(s, Secret(OLD)))
    assert result is not None and result.exit_code == Exit.KEY_NOT_RESET and result.message == probe.NOT_RESET
    assert mem.WRITES == [] and state.probe is None  # refused before the probe: nothing asked, nothing written

    result, state = run(mem.plan(), lambda s: probe.run(s, Secret(OLD)), resync=True)
    assert result is None and state.warnings == [probe.SAME_KEY]


def test_accept_journals_the_key_before_any_write() -> None:
    seed(primary=OLD, mirror=OLD)

    async def body(state: RotationState) -> Any:
        state.key_arrived()
        await accept.run(state, Secret(NEW))
        return row(state)

    r, state = run(mem.plan(consumers={"app": {}}), body)
    assert r.state == RunState.KEY_ACCEPTED and r.new_fp == fingerprint(NEW) and r.key_received_at is not None
    assert {n: t.status for n, t in state.results.items()} == dict.fromkeys(("primary", "mirror", "app"), "pending")
    assert mem.WRITES == [] and state.key_journaled


def test_write_primary_lands_with_check_and_set_and_read_back() -> None:
    seed(primary=OLD, mirror=OLD)

    async def body(state: RotationState) -> Any:
        state.key_arrived()
        await accept.run(state, Secret(NEW))
        return await write_primary.run(state, Secret(NEW)), row(state)

    (failed, r), state = run(mem.plan(), body)
    assert failed is None and r.state == RunState.FANNING_OUT and r.primary_version == "2"
    res = state.results["primary"]
    assert res.status == TargetStatus.OK and res.fingerprint == fingerprint(NEW) and res.attempts == 1
    assert mem.STORE["primary"] == (2, NEW) and mem.STORE["mirror"] == (1, OLD)  # nothing else yet


def test_write_primary_conflict_writes_nothing_else_and_closes_the_entry() -> None:
    seed(primary=OLD, mirror=OLD)

    async def body(state: RotationState) -> Any:
        mem.STORE["primary"] = (5, "sk_test_someoneelse")  # a colleague's edit after arm
        state.key_arrived()
        await accept.run(state, Secret(NEW))
        return await write_primary.run(state, Secret(NEW))

    report, state = run(mem.plan(), body)
    assert report is not None and report.state == RunState.CONFLICT and report.exit_code == Exit.CONFLICT
    assert "nothing else was written" in report.message
    assert row(state).state == RunState.CONFLICT and mem.STORE["mirror"] == (1, OLD)


def test_fan_out_signals_each_consumer_once_what_it_reads_from_is_written() -> None:
    seed(primary=OLD, fast=OLD, slow=OLD)
    plan = mem.plan(mirrors=("fast", "slow"), consumers={"a": {"reads_from": ["fast"]}, "b": {}})

    async def body(state: RotationState) -> None:
        state.key_arrived()
        await accept.run(state, Secret(NEW))
        mem.FAILING.add("slow")  # retried under the deadline, then fails
        await fan_out.run(state, Secret(NEW))

    _, state = run(plan, body)
    status = {n: r.status for n, r in state.results.items() if n != "primary"}
    assert status == {"fast": "ok", "slow": "failed", "a": "ok", "b": "skipped"}
    assert state.results["slow"].attempts == 3  # retries = 2
    assert "slow not written" in state.results["b"].detail
    fast_written = next(t for slot, t in mem.WRITES if slot == "fast")
    assert [(n, fp) for n, fp, _ in mem.SIGNALS] == [("a", fingerprint(NEW))] and mem.SIGNALS[0][2] > fast_written


def test_fan_out_over_a_given_set_of_targets_leaves_the_rest_alone() -> None:
    seed(primary=OLD, one=OLD, two=OLD)
    plan = mem.plan(mirrors=("one", "two"), consumers={"app": {"reads_from": ["one"]}})

    async def body(state: RotationState) -> None:
        state.key_arrived()
        await accept.run(state, Secret(NEW))
        await fan_out.run(state, Secret(NEW), backends=[state.backends["one"]], consumers=[])

    _, state = run(plan, body)
    assert mem.STORE["one"] == (2, NEW) and mem.STORE["two"] == (1, OLD) and mem.SIGNALS == []
    assert state.results["two"].status == "pending" and state.results["app"].status == "pending"


def test_fan_out_skip_current_and_unchanged_consumers_are_not_signalled() -> None:
    seed(primary=NEW, same=NEW, drifted=OLD)
    plan = mem.plan(mirrors=("same", "drifted"), consumers={"on-same": {"reads_from": ["same"]}})

    async def body(state: RotationState) -> None:
        state.key_arrived()
        await accept.run(state, Secret(NEW))
        await fan_out.run(state, Secret(NEW), skip_current=True, signal_unchanged=False)

    _, state = run(plan, body)
    assert state.results["same"].status == "unchanged" and state.results["drifted"].status == "ok"
    assert state.results["on-same"].status == "unchanged" and mem.SIGNALS == []


def test_signal_then_confirm_or_unconfirmed() -> None:
    seed(primary=OLD)
    plan = mem.plan(mirrors=(), consumers={"good": {}, "stale": {"stale": True}})
    event = RotationEvent(secret_name=plan.name, fingerprint=fingerprint(NEW), rotation_id="r", timestamp=0)

    async def body(state: RotationState) -> dict[str, TargetResult]:
        state.key_arrived()
        state.deadline = asyncio.get_running_loop().time() + 5
        out = {n: TargetResult(n, "consumer", "memory") for n in ("good", "stale")}
        for n, res in out.items():
            await signal.run(state, state.consumers[n], event, res)
        return out

    out, _ = run(plan, body)
    assert out["good"].status == "ok" and out["good"].fingerprint == fingerprint(NEW)
    assert out["stale"].status == "unconfirmed" and out["stale"].detail == "still on the old key"


def test_finish_reports_partial_and_closes_the_journal_entry() -> None:
    seed(primary=OLD, mirror=OLD)

    async def body(state: RotationState) -> Any:
        state.key_arrived()
        await accept.run(state, Secret(NEW))
        assert await write_primary.run(state, Secret(NEW)) is None
        mem.FAILING.add("mirror")
        await fan_out.run(state, Secret(NEW))
        return await finish.run(state, Secret(NEW))

    report, state = run(mem.plan(), body)
    assert report.state == RunState.PARTIAL and report.exit_code == Exit.PARTIAL
    assert f"rotator resume {state.id}" in report.message and "mirror (failed)" in report.message
    r = row(state)
    assert r.state == RunState.PARTIAL and r.report["state"] == "partial" and r.window_s == report.window
    assert state.report is report


def test_read_primary_takes_the_key_from_the_primary_and_checks_it() -> None:
    seed(primary=NEW)

    async def body(state: RotationState) -> tuple[str, str, str]:
        ok = await read_primary.run(state, fingerprint(NEW))
        with pytest.raises(RotationError) as changed:
            await read_primary.run(state, fingerprint(OLD))
        with pytest.raises(RotationError) as never:
            await read_primary.run(state, fingerprint(OLD), unsure=True)
        return ok.fingerprint, str(changed.value), str(never.value)

    (fp, changed, never), _ = run(mem.plan(mirrors=()), body)
    assert fp == fingerprint(NEW)
    assert "the key changed since" in changed and "never wrote the primary" in never


def test_drift_reports_what_differs_from_the_primary_and_writes_nothing() -> None:
    seed(primary=NEW, same=NEW, drifted=OLD)
    report, state = run(mem.plan(mirrors=("same", "drifted"), name="drift-plan"), pipeline.check_drift, kind="sync")
    assert report.state == RunState.DRIFT and report.exit_code == Exit.DRIFT
    assert {t.name: t.status for t in report.targets} == {"same": "unchanged", "drifted": "drift"}
    assert mem.WRITES == [] and row(state).state == RunState.DRIFT


def test_attempts_retry_what_is_retryable_under_one_deadline() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        res = TargetResult("t", "backend", "memory")
        calls = []

        async def flaky() -> str:
            calls.append(1)
            if len(calls) < 3:
                raise PluginError("busy", retryable=True)
            return "ok"

        assert await attempts.attempt(res, 1.0, 5, loop.time() + 5, flaky) == "ok" and res.attempts == 3

        async def denied() -> str:
            raise PluginError("access denied", retryable=False)

        with pytest.raises(PluginError):
            await attempts.attempt(res, 1.0, 5, loop.time() + 5, denied)
        assert res.attempts == 1

        async def slow() -> str:
            await asyncio.sleep(1)
            return "late"

        with pytest.raises(TimeoutError):
            await attempts.attempt(res, 5.0, 0, loop.time() + 0.05, slow)

    asyncio.run(go())
    assert (
        attempts.write_token("r1", "vault") == attempts.write_token("r1", "vault") != attempts.write_token("r1", "aws")
    )
    assert attempts.reason(TimeoutError()) == "timed out"
    assert "details withheld" in attempts.reason(RuntimeError("sk_test_secretvalue"))


def test_attempt_write_is_the_one_write_primitive_ok_conflict_and_an_unproven_write() -> None:
    """`write.attempt_write` (the key write, the swap and the standby write all use it): a write
    counts once read back, a stale version is CONFLICT (never retried), a write that never reads
    back as meant is retried and then FAILED; it never raises."""
    from rotator.pipeline import write

    seed(primary=OLD, mirror=OLD)
    plan = mem.plan()
    new = Secret(NEW)

    async def body(state: RotationState) -> dict[str, TargetResult]:
        b = state.primary
        rows = {k: TargetResult(b.name, "backend", "memory", primary=True) for k in ("ok", "conflict", "unproven")}

        async def once(expected: str | None, meant: str, key: Secret = new) -> str | None:
            written = await b.write(key, token="t", expected_version=expected)
            back = await b.read()
            write.read_back(b.name, "the key", back.secret.fingerprint if back.secret else None, meant)
            return written.version

        state.key_arrived()
        state.deadline = asyncio.get_running_loop().time() + 10  # what `accept` sets
        assert await write.attempt_write(state, b, rows["ok"], lambda: once("1", new.fingerprint)) == "2"
        other = Secret("sk_test_" + "c" * 32)  # a key the store does not hold, on a stale version
        assert (
            await write.attempt_write(state, b, rows["conflict"], lambda: once("1", other.fingerprint, other)) is None
        )
        assert await write.attempt_write(state, b, rows["unproven"], lambda: once(None, "fp:other")) is None
        return rows

    rows, _ = run(plan, body)
    assert rows["ok"].status == TargetStatus.OK and rows["ok"].attempts == 1
    assert mem.STORE["primary"] == (2, NEW)
    assert rows["conflict"].status == TargetStatus.CONFLICT and rows["conflict"].attempts == 1
    assert "changed since arm (version 2, expected 1)" in rows["conflict"].detail
    unproven = rows["unproven"]
    assert unproven.status == TargetStatus.FAILED and unproven.attempts == 2  # retries = 1 for the primary
    assert f"reads back {fingerprint(NEW)}, not fp:other" in unproven.detail
    assert NEW not in unproven.detail + rows["conflict"].detail
