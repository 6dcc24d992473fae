"""Issue 23's crash matrix: `rotator` SIGKILLed at each durable boundary of an incident, a
planned rotation and a roll back (right before or right after a journal write commits), then
`status` and the next command.  Every run must end consistent (the primary's slots, the slot
record, every consumer on the active key, the leaked key refused) with 0 failed consumer
calls, as the consumer processes count them.

The kill is real: `tests/killhook/sitecustomize.py` on the child's PYTHONPATH makes the rotator
process SIGKILL itself at the boundary (`ROTATOR_TEST_KILL_AT`), so no `finally` runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from rotator.exitcodes import Exit
from rotator.secret import fingerprint

try:
    from tests import leakcheck as lc
    from tests.fixtures_backends import *  # noqa: F403
    from tests.test_alternating import BLUE, GREEN, World, make_world, seeded
except ImportError:  # pragma: no cover - run from inside tests/
    sys.path.insert(0, str(Path(__file__).parent))
    import leakcheck as lc  # type: ignore[no-redef]
    from fixtures_backends import *  # type: ignore[no-redef]  # noqa: F403
    from test_alternating import BLUE, GREEN, World, make_world, seeded  # type: ignore[no-redef]

__all__ = ["make_world"]

KILLHOOK = str(Path(__file__).parent / "killhook")

INCIDENT = [
    "slot_record:leaked:before",
    "slot_record:leaked:after",
    "slot_record:promote:before",
    "slot_record:promote:after",
    "state:fanning_out:before",
    "state:fanning_out:after",
    "state:done:after",
    "rekey:waiting:after",
    "slot_record:rekey:before",
    "slot_record:rekey:after",
    "rekey:ok:after",
]
PLANNED = [
    "slot_record:promote:before",
    "slot_record:promote:after",
    "state:fanning_out:after",
    "state:done:after",
    "slot_record:rekey:before",
    "slot_record:rekey:after",
]
ROLLBACK = ["slot_record:rollback:before", "slot_record:rollback:after", "state:fanning_out:after"]


# What `status` may answer mid-crash: every key fine, drift (a fan-out killed half-way), a refused key
# (an old standby already revoked): each with its JSON, never a refusal to answer.
ANSWERS = {Exit.DONE, Exit.DRIFT, Exit.STATUS_REFUSED, Exit.STATUS_UNCHECKED}


def killing(w: World, at: str) -> World:
    path = os.pathsep.join(p for p in (KILLHOOK, w.env.get("PYTHONPATH", "")) if p)
    return dataclasses.replace(w, env={**w.env, "PYTHONPATH": path, "ROTATOR_TEST_KILL_AT": at})


def status_json(w: World) -> tuple[int, dict[str, Any] | None, str]:
    r = lc.cli("status", str(w.plan), "--json", env=w.env)
    return r.returncode, json.loads(r.stdout) if r.stdout.strip().startswith("{") else None, r.stderr


def consistent(w: World, leaked: str | None) -> dict[str, Any]:
    """The end state every run must reach."""
    code, st, err = status_json(w)
    assert code == 0 and st is not None, err
    assert st["incident"] is None, st
    assert st["active"]["works"] and st["standby"]["works"], st
    assert {st["active"]["app"], st["standby"]["app"]} == {BLUE, GREEN}, st
    assert set(w.fingerprints().values()) == {st["active"]["fingerprint"]}, (w.stats(), st)
    assert st["unfinished"] == [], st
    if leaked is not None:
        assert not w.works(leaked)
    return st


@pytest.mark.parametrize("at", INCIDENT)
def test_incident_killed_at_each_boundary_ends_consistent(make_world: Any, at: str) -> None:
    w = seeded(make_world)
    leaked = w.keys[0]  # blue's: every consumer's
    before = w.failed()
    f = killing(w, at).rotator("rotate", str(w.plan), "--incident", "--key-stdin", pauses=(0, 0))
    assert f.code == -9, (at, f.code, f.err)
    code, st, err = status_json(w)
    assert code in ANSWERS and st is not None, (at, code, err)  # status always answers (drift, refusals: codes)
    if st["incident"] is not None or w.works(leaked):
        # What is left: the incident goes on (`rotate --incident`), asking for blue only.
        f2 = w.rotator("rotate", str(w.plan), "--incident", "--key-stdin", "--json", pauses=(0, 0))
        assert f2.code == 0, (at, f2.err)
        assert [a for a, _ in f2.resets] in ([BLUE], [GREEN, BLUE]), (at, f2.resets, f2.err)
        if st["incident"] is not None:
            assert "continuing incident" in f2.err, (at, f2.err)
    end = consistent(w, leaked)
    assert end["active"]["app"] == GREEN, (at, end)
    assert w.failed() == before, (at, w.stats())


@pytest.mark.parametrize("at", PLANNED)
def test_planned_rotation_killed_at_each_boundary_ends_consistent(make_world: Any, at: str) -> None:
    w = seeded(make_world)
    first_blue = w.keys[0]
    before = w.failed()
    f = killing(w, at).rotator("rotate", str(w.plan), "--key-stdin", pauses=(0, 0))
    assert f.code == -9, (at, f.code, f.err)
    code, st, err = status_json(w)
    assert code in ANSWERS and st is not None, (at, code, err)
    for u in st["unfinished"]:  # a promote killed half-way: `rotate` names `resume`, which finishes it
        if not u["landed"]:
            continue
        res = lc.cli("resume", u["id"], env=w.env)
        assert res.returncode == 0, (at, res.stderr)
    f2 = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0, 0))
    assert f2.code == 0, (at, f2.err)
    consistent(w, None)
    assert not w.works(first_blue) or fingerprint(first_blue) in {
        status_json(w)[1]["active"]["fingerprint"],  # type: ignore[index]
        status_json(w)[1]["standby"]["fingerprint"],  # type: ignore[index]
    }
    assert w.failed() == before, (at, w.stats())


@pytest.mark.parametrize("at", ROLLBACK)
def test_rollback_killed_at_each_boundary_ends_consistent(make_world: Any, at: str) -> None:
    w = seeded(make_world)
    before = w.failed()
    f = w.rotator("rotate", str(w.plan), "--key-stdin")  # promotes, then the operator walks away
    assert f.resets == [(BLUE, "the standby")]
    r = killing(w, at).rotator("rollback", str(w.plan))
    assert r.code == -9, (at, r.code, r.err)
    code, st, err = status_json(w)
    assert code in ANSWERS and st is not None, (at, code, err)
    for u in st["unfinished"]:  # what is left: finished by resume from the primary (if its write landed)
        if not u["landed"]:
            continue
        res = lc.cli("resume", u["id"], env=w.env)
        assert res.returncode == 0, (at, res.stderr)
    if st["last_step"] == "promote":  # the roll back never landed: run it again
        again = lc.cli("rollback", str(w.plan), env=w.env)
        assert again.returncode == 0, (at, again.stderr)
    end = consistent(w, None)
    assert end["active"]["app"] == BLUE, (at, end)
    assert w.failed() == before, (at, w.stats())


def test_killed_between_promote_and_rekey_is_journaled_rekey_left_and_resume_names_it(make_world: Any) -> None:
    """Issue 23: `rotator rotate` SIGKILLed at the re-key's ask.  The journal says `rekey_left`,
    never `done`; `resume` names what is left (exit 12); the next `rotate` asks for that re-key only
    and closes the killed run as done."""
    w = seeded(make_world)
    before = w.failed()
    f = killing(w, "rekey:waiting:after").rotator("rotate", str(w.plan), "--key-stdin", pauses=(0,))
    assert f.code == -9, (f.code, f.err)

    def rows() -> dict[str, str]:
        r = lc.cli("history", "--json", env=w.env)
        return {x["id"]: x["state"] for x in json.loads(r.stdout)["rotations"]}

    rid = next(i for i, s in rows().items() if s == "rekey_left")
    assert "(unfinished: the re-key is left: `rotator rotate" in lc.cli("history", env=w.env).stdout
    res = lc.cli("resume", rid, env=w.env)
    assert res.returncode == 12, res.stderr
    assert "its re-key is left" in res.stderr and f"rotator rekey {w.plan}" in res.stderr, res.stderr
    assert f"left: the promote is done but {BLUE} was not re-keyed" in res.stderr, res.stderr
    f2 = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0,))
    assert f2.code == 0 and f2.resets == [(BLUE, "the standby")], f2.err
    assert rows()[rid] == "done"
    consistent(w, None)
    assert w.failed() == before, w.stats()
