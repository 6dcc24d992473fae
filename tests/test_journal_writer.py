"""The journal writer: batched, ordered, and nothing queued is lost (a real SQLite journal)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from rotator.journal import Journal, JournalWriter
from rotator.journal.writer import FLUSH_AFTER
from tests.timing import until


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(f"sqlite:///{tmp_path / 'journal.db'}")
    yield j
    j.close()


def _rid(journal: Journal) -> str:
    return journal.begin(kind="rotate", plan="p", plan_path="p.toml", reason="", operator="test", old_fp=None)


def _commits(journal: Journal) -> list[int]:
    seen = [0]
    sa.event.listen(journal.engine, "commit", lambda _conn: seen.__setitem__(0, seen[0] + 1))
    return seen


def _targets(journal: Journal, rid: str) -> list[str]:
    return [e["target"] for e in journal.events(rid)]


def test_a_burst_of_events_on_the_loop_is_one_commit_in_order(journal: Journal) -> None:
    rid = _rid(journal)
    commits = _commits(journal)

    async def main() -> None:
        writer = JournalWriter(journal)
        for i in range(200):  # a 200-target fan-out's outcomes, arriving together
            writer.event(rid, "signal", "ok", target=f"svc-{i}")
        # However long the writer takes on a busy machine: the first commit, then what it holds
        # (a burst split in two shows either as fewer events here or as a second commit below).
        await until("the burst's commit", lambda: commits[0] >= 1)
        assert _targets(journal, rid) == [f"svc-{i}" for i in range(200)]
        assert commits[0] == 1, "one commit for the burst, not one per event"
        await asyncio.get_running_loop().run_in_executor(None, writer.close)

    asyncio.run(main())


def test_update_and_call_take_the_queue_with_them_and_never_wait_for_the_timer(journal: Journal) -> None:
    rid = _rid(journal)

    async def main() -> None:
        writer = JournalWriter(journal)
        writer.event(rid, "write", "ok", target="vault")
        await writer.update(rid, state="fanning_out")  # the window waits for this one
        assert _targets(journal, rid) == ["vault"]
        assert journal.get(rid).state == "fanning_out"  # type: ignore[union-attr]
        writer.event(rid, "signal", "ok", target="svc-0")
        seen = await writer.call(_targets, journal, rid)  # run after every event queued before it
        assert seen == ["vault", "svc-0"]
        await asyncio.sleep(FLUSH_AFTER * 3)  # the timers fire on an empty queue: nothing written twice
        assert _targets(journal, rid) == ["vault", "svc-0"]
        await asyncio.get_running_loop().run_in_executor(None, writer.close)

    asyncio.run(main())


def test_close_writes_what_was_still_waiting_for_its_batch(journal: Journal) -> None:
    rid = _rid(journal)

    async def main() -> None:
        writer = JournalWriter(journal)
        for i in range(5):
            writer.event(rid, "confirm", "ok", target=f"svc-{i}")
        await asyncio.get_running_loop().run_in_executor(None, writer.close)  # as disarm does, at once
        assert _targets(journal, rid) == [f"svc-{i}" for i in range(5)]
        await asyncio.sleep(FLUSH_AFTER * 3)  # the pending timer finds the thread closed: no error

    asyncio.run(main())


def test_an_event_from_a_thread_without_a_loop_is_written_at_once(journal: Journal) -> None:
    rid = _rid(journal)
    writer = JournalWriter(journal)
    t = threading.Thread(target=writer.event, args=(rid, "sync", "ok"), kwargs={"target": "vault"})
    t.start()
    t.join()
    writer.close()
    assert _targets(journal, rid) == ["vault"]
