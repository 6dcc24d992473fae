"""The armed session (`rotator.pipeline.session.ArmedSession`), the one flow of
`rotator rotate` and the service: a refused key keeps it armed, the attempt
limit closes it, close/expiry abort it, keys from racing sources, background work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from rotator.journal import Journal
from rotator.pipeline.session import (
    ArmedSession,
    Attempt,
    Listener,
    NotArmed,
    Outcome,
    SessionBusy,
    Status,
    instruction,
)
from rotator.pipeline.state import RotationState
from rotator.plan import Plan
from rotator.report import Report, RunState
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
        mem.STORE["primary"] = (1, OLD)
        mem.STORE["mirror"] = (1, OLD)
        yield


class Recorder(Listener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def key(self, clean: Any) -> None:
        self.seen.append(("key", clean.secret.fingerprint))

    def refused(self, attempt: Attempt) -> None:
        self.seen.append(("refused", (attempt.outcome, attempt.attempts_left, attempt.final)))

    def finished(self, report: Report) -> None:
        self.seen.append(("finished", report.state))

    def closed(self, reason: str, resume: str | None = None) -> None:
        self.seen.append(("closed", reason))


def with_session(
    plan: Plan, body: Callable[[ArmedSession, Recorder], Awaitable[T]], **kw: Any
) -> tuple[T, ArmedSession, Recorder]:
    async def go() -> tuple[T, ArmedSession, Recorder]:
        rec = Recorder()
        session = ArmedSession(RotationState(plan, Journal(), reason="session test"), rec, **kw)
        try:
            await session.arm()
            return await body(session, rec), session, rec
        finally:
            await session.release()

    return asyncio.run(go())


def row(session: ArmedSession) -> Any:
    r = Journal().get(session.id)
    assert r is not None
    return r


def test_a_refused_key_keeps_it_armed_then_the_right_key_rotates(standin: AdjutorStandIn) -> None:
    mem.STORE["primary"] = mem.STORE["mirror"] = (1, standin.current_key)
    plan = mem.plan(probe_url=standin.models_url)
    new = standin.reset()

    async def body(session: ArmedSession, rec: Recorder) -> list[Attempt]:
        out = [await session.hand("   ")]  # not a key at all
        assert session.status is Status.ARMED
        out.append(await session.hand(new[:-2] + "zz"))  # the probe refuses it
        assert session.status is Status.ARMED
        out.append(await session.hand(f"  {new}\n"))
        return out

    (empty, wrong, right), session, rec = with_session(plan, body)
    assert empty.outcome is Outcome.REJECTED and not empty.final and empty.attempts_left == 4
    assert wrong.outcome is Outcome.REFUSED and wrong.report.state == RunState.REFUSED and wrong.attempts_left == 3
    assert right.outcome is Outcome.WRITTEN and right.final and right.report.state == RunState.DONE
    assert session.status is Status.FINISHED and session.report is right.report
    assert mem.STORE["primary"][1] == new == mem.STORE["mirror"][1]
    assert row(session).state == RunState.DONE
    assert rec.seen[-1] == ("finished", "done") and ("key", fingerprint(new)) in rec.seen


def test_the_attempt_limit_closes_it_and_journals_the_last_refusal() -> None:
    async def body(session: ArmedSession, rec: Recorder) -> list[Attempt]:
        first = await session.hand("")
        last = await session.hand(" \n ")
        with pytest.raises(SessionBusy, match="closed"):
            await session.hand(NEW)
        return [first, last]

    (first, last), session, rec = with_session(mem.plan(), body, max_attempts=2)
    assert not first.final and last.final and last.attempts_left == 0
    assert session.status is Status.CLOSED and session.closed_reason == "2 keys refused"
    r = row(session)
    assert r.state == RunState.REFUSED and r.report["message"] == last.message
    assert mem.STORE["primary"] == (1, OLD) and Journal().lock_info("memory-plan") is None
    assert rec.seen[-1] == ("closed", "2 keys refused")


def test_a_key_handed_while_one_is_written_is_refused_as_busy() -> None:
    async def body(session: ArmedSession, rec: Recorder) -> Attempt:
        first = asyncio.ensure_future(session.hand(NEW))
        await asyncio.sleep(0)  # the first key has arrived: the window runs from here
        assert session.status is Status.ROTATING and session.state.key_received is not None
        with pytest.raises(SessionBusy, match="already writing a key"):
            await session.hand("sk_test_anotherkey333")
        return await first

    attempt, session, rec = with_session(mem.plan(), body)
    assert attempt.outcome is Outcome.WRITTEN and attempt.final and attempt.report is session.report
    assert session.attempts == 1 and mem.STORE["primary"][1] == NEW
    assert rec.seen == [("key", fingerprint(NEW)), ("finished", "done")]


def test_close_aborts_an_armed_session_and_cancels_its_background_work() -> None:
    async def body(session: ArmedSession, rec: Recorder) -> asyncio.Task[None]:
        watcher = session.spawn(asyncio.sleep(3600))  # e.g. a watcher of the old key
        await session.close("closed by the operator")
        await asyncio.sleep(0)
        assert await session.wait() is None
        return watcher

    watcher, session, rec = with_session(mem.plan(), body)
    assert watcher.cancelled() and session.status is Status.CLOSED
    assert row(session).state == RunState.ABORTED and Journal().lock_info("memory-plan") is None
    assert rec.seen == [("closed", "closed by the operator")]


def test_no_key_in_time_closes_it() -> None:
    async def body(session: ArmedSession, rec: Recorder) -> Report | None:
        return await asyncio.wait_for(session.wait(), 10)

    report, session, _ = with_session(mem.plan(), body, arm_timeout=0.2, keep_warm_every=0.05)
    assert report is None and session.closed_reason == "no key within 0s of arming"
    assert row(session).state == RunState.ABORTED


def test_keys_from_racing_sources_the_first_one_is_written() -> None:
    class Source:
        def __init__(self, name: str, key: str | Secret, after: float) -> None:
            self.name, self.key, self.after, self.reads = name, key, after, 0

        async def read(self) -> str | Secret | None:
            self.reads += 1
            if self.reads > 1:
                await asyncio.sleep(3600)
            await asyncio.sleep(self.after)
            return self.key

    async def body(session: ArmedSession, rec: Recorder) -> Report | None:
        session.feed(Source("clipboard", Secret(NEW), 0.01))  # a source that cleans its own keys
        session.feed(Source("prompt", "sk_test_typedlater", 0.5))
        return await asyncio.wait_for(session.wait(), 10)

    report, session, _ = with_session(mem.plan(), body)
    assert report is not None and report.state == RunState.DONE and report.new_fingerprint == fingerprint(NEW)
    assert mem.STORE["primary"][1] == NEW and session.attempts == 1


def test_not_armed_says_what_to_fix_and_releases_everything() -> None:
    plan = mem.plan()
    plan.backends[1].broken = True  # type: ignore[attr-defined]

    async def go() -> NotArmed:
        session = ArmedSession(RotationState(plan, Journal()))
        with pytest.raises(NotArmed) as exc:
            await session.arm()
        assert session.state.closed
        return exc.value

    exc = asyncio.run(go())
    assert str(exc) == "not armed: mirror: slot mirror is broken — fix these before resetting the key"
    assert Journal().lock_info(plan.name) is None


def test_the_instruction_is_the_same_for_every_front_end() -> None:
    steps = instruction()
    assert any("Reset app key" in s for s in steps) and steps[-1].startswith("Paste it")
