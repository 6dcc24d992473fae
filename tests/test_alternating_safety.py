"""Alternating safety (issue 23), with real processes: the CLI, the Adjutor stand-in with two
apps, consumer processes calling every 5 ms, and the primary in an env file, Vault (hvac
against the Vault-protocol server) and AWS (moto server, boto3).

- A slot record that is missing, unreadable or disagrees stops every alternating command
  before any reset is asked (exit SLOT_RECORD), until the operator states it
  (`status --repair --active APP`); nothing is inferred.
- An incident records its leaked key first; a re-run after Ctrl-C, SIGTERM or SIGKILL
  continues it (asks only for the leaked app), and no flow puts the leaked key back
  (`rollback` and `promote` refuse, exit LEAKED_KEY).
- An incident where the operator resets the wrong app is said at once, the wrong app's new
  key is taken as the active key, the ask for the leaked app goes on, and the run is not a
  success until the leaked key is proven refused.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rotator.exitcodes import Exit
from rotator.secret import fingerprint

try:
    from tests import leakcheck as lc
    from tests.fixtures_backends import *  # noqa: F403
    from tests.fixtures_backends import AWS_REGION
    from tests.test_alternating import BLUE, GREEN, VAULT_TOKEN, World, _http, make_world, seeded, status
except ImportError:  # pragma: no cover - run from inside tests/
    sys.path.insert(0, str(Path(__file__).parent))
    import leakcheck as lc  # type: ignore[no-redef]
    from fixtures_backends import *  # type: ignore[no-redef]  # noqa: F403
    from fixtures_backends import AWS_REGION  # type: ignore[no-redef]
    from test_alternating import (  # type: ignore[no-redef]
        BLUE,
        GREEN,
        VAULT_TOKEN,
        World,
        _http,
        make_world,
        seeded,
        status,
    )

__all__ = ["make_world"]  # the fixture, re-used

PRIMARIES = ["envfile", "vault", "aws"]
META = {"envfile": "ADJUTOR_API_KEY_SLOTS", "vault": "api_key_slots", "aws": "api_key_slots"}


def _world(make_world: Any, primary: str, request: pytest.FixtureRequest) -> World:
    aws_url = request.getfixturevalue("aws_env") if primary == "aws" else None
    return seeded(make_world, primary, aws_url)  # type: ignore[no-any-return]


def edit_meta(w: World, primary: str, change: Callable[[str | None], str | None]) -> None:
    """Change the primary's slot metadata as someone outside rotator would (None: delete it)."""
    if primary == "envfile":
        path = w.tmp / "store.env"
        lines = path.read_text().splitlines()
        keep = [ln for ln in lines if not ln.startswith(META[primary] + "=")]
        old = next((ln.split("=", 1)[1] for ln in lines if ln.startswith(META[primary] + "=")), None)
        if old is not None and old.startswith("'") and old.endswith("'"):
            old = old[1:-1]
        new = change(old)
        if new is not None:
            keep.append(f"{META[primary]}='{new}'")
        path.write_text("\n".join(keep) + "\n")
        return
    if primary == "vault":
        import hvac

        url = re.search(r'url = "(http://127\.0\.0\.1:\d+)"', w.plan.read_text())
        assert url is not None
        client = hvac.Client(url=url.group(1), token=VAULT_TOKEN)
        data = client.secrets.kv.v2.read_secret_version(
            path="apps/payments", mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]
        new = change(data.get(META[primary]))
        data = {k: v for k, v in data.items() if k != META[primary]}
        if new is not None:
            data[META[primary]] = new
        client.secrets.kv.v2.create_or_update_secret(path="apps/payments", secret=data, mount_point="secret")
        return
    import boto3

    url = re.search(r'endpoint_url = "([^"]+)"', w.plan.read_text())
    assert url is not None
    sm = boto3.client("secretsmanager", endpoint_url=url.group(1), region_name=AWS_REGION)
    obj = json.loads(sm.get_secret_value(SecretId="prod/payments/adjutor")["SecretString"])
    new = change(obj.pop(META[primary], None))
    if new is not None:
        obj[META[primary]] = new
    sm.put_secret_value(SecretId="prod/payments/adjutor", SecretString=json.dumps(obj))


def swap_fps(text: str | None) -> str:
    meta = json.loads(text or "{}")
    meta["active"]["fp"], meta["standby"]["fp"] = meta["standby"]["fp"], meta["active"]["fp"]
    return json.dumps(meta)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# -- invariant 1: never guess which app holds which key ------------------------------------------


@pytest.mark.parametrize("primary", PRIMARIES)
def test_lost_slot_metadata_stops_every_command_until_the_operator_states_it(
    make_world: Any, primary: str, request: pytest.FixtureRequest
) -> None:
    w = _world(make_world, primary, request)
    f = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0,))
    assert f.code == 0, f.err
    st = status(w)
    assert (st["active"]["app"], st["standby"]["app"]) == (GREEN, BLUE)
    before = w.failed()
    edit_meta(w, primary, lambda _: None)  # the slot metadata deleted
    for args in (["status"], ["rotate"], ["rotate", "--incident"], ["rekey"], ["rollback"]):
        run = w.rotator(
            *args[:1], str(w.plan), *args[1:], *(["--key-stdin"] if args[0] not in ("status", "rollback") else [])
        )
        assert run.code == Exit.SLOT_RECORD, (args, run.code, run.err)
        assert run.resets == [], (args, run.err)  # no reset asked
        line = last_line(run.err)
        assert "slot record" in line and "no slot metadata" in line and "--repair --active APP" in line, line
        assert "(inferred)" not in run.err
    assert w.failed() == before
    # The operator states it: probed, written with check-and-set, journaled.
    bad = lc.cli("status", str(w.plan), "--repair", "--active", "payments-red", env=w.env)
    assert bad.returncode == Exit.PLAN_INVALID, bad.stderr
    r = lc.cli("status", str(w.plan), "--repair", "--active", GREEN, env=w.env)
    assert r.returncode == 0, r.stderr
    assert f"slot record written: active {GREEN}" in r.stderr
    st = status(w)
    assert (st["active"]["app"], st["standby"]["app"]) == (GREEN, BLUE)
    assert st["active"]["app_recorded"] and st["standby"]["app_recorded"]
    # And the next rotation asks for the right app: blue, which no consumer uses.
    f2 = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0,))
    assert f2.code == 0, f2.err
    assert f2.resets == [(GREEN, "the standby")]
    assert w.failed() == before
    w.no_leaks(f, f2)


@pytest.mark.parametrize(
    ("what", "change", "said"),
    [
        ("invalid JSON", lambda _: "{not json", "not rotator's"),
        ("swapped fingerprints", swap_fps, "is not the key its slot metadata describes"),
    ],
)
def test_unreadable_or_swapped_slot_metadata_stops_before_any_reset(
    make_world: Any, what: str, change: Callable[[str | None], str | None], said: str
) -> None:
    w = seeded(make_world)
    f = w.rotator("rotate", str(w.plan), "--key-stdin", pauses=(0,))
    assert f.code == 0, f.err
    before = w.failed()
    edit_meta(w, "envfile", change)
    r = lc.cli("status", str(w.plan), env=w.env)
    assert r.returncode == Exit.SLOT_RECORD and said in last_line(r.stderr), (what, r.stderr)
    run = w.rotator("rotate", str(w.plan), "--key-stdin", pauses=(0,))
    assert run.code == Exit.SLOT_RECORD and run.resets == [], (what, run.err)
    assert said in last_line(run.err)
    assert w.failed() == before


def test_slot_metadata_that_disagrees_with_the_journal_stops_before_any_reset(make_world: Any) -> None:
    w = seeded(make_world)
    f = w.rotator("rotate", str(w.plan), "--key-stdin", pauses=(0,))
    assert f.code == 0, f.err
    # Someone rewrites the record consistently but wrongly (apps swapped): only the journal can tell.
    edit_meta(
        w,
        "envfile",
        lambda t: json.dumps(
            {
                **json.loads(t or "{}"),
                "active": {**json.loads(t or "{}")["active"], "app": BLUE},
                "standby": {**json.loads(t or "{}")["standby"], "app": GREEN},
            }
        ),
    )
    run = w.rotator("rotate", str(w.plan), "--key-stdin", pauses=(0,))
    assert run.code == Exit.SLOT_RECORD and run.resets == [], run.err
    assert "the journal's last slot change" in last_line(run.err)
    # A new machine's journal has no record: that is not a disagreement (the primary's record is read).
    env = {**w.env, "ROTATOR_DB": f"sqlite:///{w.tmp / 'other.db'}"}
    r = lc.cli("status", str(w.plan), "--json", env=env)
    assert r.returncode == 0, r.stderr


# -- invariants 2 and 3: a leaked key is never put back; an interrupted incident is continued ------


@pytest.mark.parametrize(
    ("primary", "sig"),
    [
        ("envfile", signal.SIGINT),
        ("envfile", signal.SIGKILL),
        ("vault", signal.SIGTERM),
        ("aws", signal.SIGINT),
    ],
)
def test_an_interrupted_incident_is_continued_and_its_leaked_key_never_put_back(
    make_world: Any, primary: str, sig: int, request: pytest.FixtureRequest
) -> None:
    w = _world(make_world, primary, request)
    leaked = w.keys[0]  # blue's: every consumer uses it
    before = w.failed()
    f = w.rotator("rotate", str(w.plan), "--incident", "--key-stdin", kill_after="Reset payments-blue", kill_signal=sig)
    assert "Reset payments-blue (its new key becomes the standby)" in f.err
    assert f.code != 0
    if sig != signal.SIGKILL:
        line = last_line(f.err)
        assert "nothing was written" not in line, line
        assert "incident" in line and f"rotator rotate {w.plan} --incident" in line, line
    st = status(w)
    assert st["incident"]["fp"] == fingerprint(leaked) and st["incident"]["where"] == "standby", st
    assert not st["rollback_possible"], st
    assert any("continuing incident" in ln for ln in st["left"]), st["left"]
    # Roll back or promote would put the leaked key back: refused, one line naming the incident.
    rb = lc.cli("rollback", str(w.plan), env=w.env)
    assert rb.returncode == Exit.LEAKED_KEY, rb.stderr
    assert f"incident {st['incident']['incident']}" in last_line(rb.stderr)
    assert set(w.fingerprints().values()) == {fingerprint(w.keys[2])}  # green's (seeded): untouched
    # A plain `rotate` continues the incident: only blue's reset is asked.
    f2 = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0.5,))
    assert f2.code == 0, f2.err
    assert f"continuing incident {st['incident']['incident']}" in f2.err
    assert f2.resets == [(BLUE, "the standby")]
    assert not w.works(leaked)
    assert f2.report is not None
    inc = f2.report["alternating"]["incident"]
    assert inc["leaked_fingerprint"] == fingerprint(leaked) and inc["revoked"] is True
    assert f2.report["old_key_check"]["revoked"] is True
    assert w.failed() == before, w.stats()
    st = status(w)
    assert st["incident"] is None and (st["active"]["app"], st["standby"]["app"]) == (GREEN, BLUE)
    assert lc.latest("payments") is not None
    w.no_leaks(f, f2)


def test_rollback_after_an_incident_promote_refuses_naming_the_incident(make_world: Any) -> None:
    w = seeded(make_world)
    f = w.rotator("rotate", str(w.plan), "--incident", "--key-stdin")  # walks away at blue's reset
    assert f.resets == [(BLUE, "the standby")] and f.code != 0
    st = status(w)
    assert not st["rollback_possible"]
    rb = lc.cli("rollback", str(w.plan), env=w.env)
    assert rb.returncode == Exit.LEAKED_KEY
    assert last_line(rb.stderr).startswith("rotator: cannot roll back: the standby key (payments-blue")
    assert set(w.fingerprints().values()) == {fingerprint(w.keys[2])}
    f2 = w.rotator("rotate", str(w.plan), "--incident", "--key-stdin", "--json", pauses=(0,))
    assert f2.code == 0 and f2.resets == [(BLUE, "the standby")], f2.err
    assert "continuing incident" in f2.err


# -- invariants 4 and 8: the wrong app reset in an incident ----------------------------------------


def test_an_incident_where_the_wrong_app_is_reset_is_never_a_success(make_world: Any) -> None:
    w = seeded(make_world)
    leaked = w.keys[0]
    # Asked for blue (the leaked app, now the standby), the operator resets green (the active app).
    f = w.rotator("rotate", str(w.plan), "--incident", "--key-stdin", "--json", pauses=(0.5,), wrong={0: GREEN})
    assert f.code != 0, f.err
    assert "the ACTIVE app (payments-green) was just reset" in f.err
    assert w.works(leaked)  # nobody reset blue
    new_green = w.keys[-1]
    assert set(w.fingerprints().values()) == {fingerprint(new_green)}  # the wrong app's new key taken as active
    asked = [a for a, _ in f.resets]
    assert asked[-1] == BLUE, f.resets  # and the ask for the leaked app went on
    st = status(w)
    assert st["active"]["fingerprint"] == fingerprint(new_green) and st["active"]["app"] == GREEN
    assert st["incident"] is not None and st["incident"]["fp"] == fingerprint(leaked)
    # The next run continues: blue's reset, proven.
    f2 = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0,))
    assert f2.code == 0, f2.err
    assert f2.resets == [(BLUE, "the standby")]
    assert not w.works(leaked)
    assert f2.report is not None and f2.report["old_key_check"]["revoked"] is True
    w.no_leaks(f, f2)


def test_an_incident_with_a_wrong_reset_then_the_right_one_ends_proven(make_world: Any) -> None:
    w = seeded(make_world)
    leaked = w.keys[0]
    f = w.rotator("rotate", str(w.plan), "--incident", "--key-stdin", "--json", pauses=(0.5, 0), wrong={0: GREEN})
    assert f.code == 0, f.err
    assert [a for a, _ in f.resets] == [BLUE, BLUE], f.resets  # asked for blue, and again after the mistake
    assert not w.works(leaked)
    assert f.report is not None
    inc = f.report["alternating"]["incident"]
    assert inc["revoked"] is True and inc["mistaken_reset"]["app"] == GREEN
    assert f.report["old_key_check"]["revoked"] is True
    w.no_leaks(f)


# -- invariant 6: nothing the operator did is lost -------------------------------------------------


def _when_asked(w: World, text: str, then: Callable[[], None]) -> threading.Thread:
    """Run `then` once the next `rotator` run's stderr shows `text` (the operator's moment)."""
    run_dir = w.tmp / f"run-{len(list(w.tmp.glob('run-*')))}"

    def watch() -> None:
        until = time.monotonic() + 60
        while time.monotonic() < until:
            err = run_dir / "stderr"
            if err.exists() and text in err.read_text(errors="replace"):
                then()
                return
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_a_standby_write_to_a_sealed_vault_is_retried_and_the_key_kept(make_world: Any) -> None:
    w = seeded(make_world, "vault")
    assert w.vault is not None
    vault = w.vault
    before = w.failed()

    def seal_for_a_while() -> None:
        vault.sealed = True
        threading.Timer(4.0, lambda: setattr(vault, "sealed", False)).start()

    watcher = _when_asked(w, "Reset payments-blue", seal_for_a_while)
    f = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0.5,))
    watcher.join(5)
    assert f.code == 0, f.err
    assert "payments-blue's new key" in f.err and "is NOT stored yet" in f.err
    new_blue = w.keys[-1]
    st = status(w)
    assert st["standby"]["app"] == BLUE and st["standby"]["fingerprint"] == fingerprint(new_blue), st
    assert st["standby"]["works"] is True
    assert w.failed() == before
    w.no_leaks(f)


def test_a_standby_write_racing_another_vault_writer_is_not_lost(make_world: Any) -> None:
    import hvac

    w = seeded(make_world, "vault")
    assert w.vault is not None
    url = w.vault.url

    def other_writer() -> None:  # someone adds a field to the same secret (the slots untouched)
        client = hvac.Client(url=url, token=VAULT_TOKEN)
        data = client.secrets.kv.v2.read_secret_version(
            path="apps/payments", mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]
        client.secrets.kv.v2.create_or_update_secret(
            path="apps/payments", secret={**data, "owner": "payments-team"}, mount_point="secret"
        )

    watcher = _when_asked(w, "Reset payments-blue", other_writer)
    f = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(1.0,))
    watcher.join(5)
    assert f.code == 0, f.err
    assert "--force" not in f.err
    st = status(w)
    assert st["standby"]["app"] == BLUE and st["standby"]["fingerprint"] == fingerprint(w.keys[-1]), st
    w.no_leaks(f)


# -- invariant 7: the low faults ---------------------------------------------------------------------


def test_a_rekey_that_became_the_active_apps_rotation_is_not_exit_0(make_world: Any) -> None:
    w = make_world()  # first use: the standby is empty
    # Asked for green (the standby), the operator resets blue: the app every consumer uses.
    f = w.rotator("rekey", str(w.plan), "--key-stdin", "--json", pauses=(0.5,), wrong={0: BLUE})
    assert f.code == Exit.NOT_REKEYED, f.err
    assert "the ACTIVE app (payments-blue) was just reset" in f.err
    assert "payments-green was NOT re-keyed: the standby slot is still empty" in f.err
    st = status(w)
    assert st["active"]["app"] == BLUE and st["active"]["fingerprint"] == fingerprint(w.keys[-1])
    assert st["standby"]["fingerprint"] is None
    w.no_leaks(f)


def test_a_standby_equal_to_the_active_key_is_refused_with_that_reason(make_world: Any) -> None:
    w = seeded(make_world)
    before = w.failed()
    store = w.tmp / "store.env"
    lines = store.read_text().splitlines()
    active = next(ln.split("=", 1)[1] for ln in lines if ln.startswith("ADJUTOR_API_KEY="))
    lines = [f"ADJUTOR_API_KEY_STANDBY={active}" if ln.startswith("ADJUTOR_API_KEY_STANDBY=") else ln for ln in lines]
    store.write_text("\n".join(lines) + "\n")
    edit_meta(
        w,
        "envfile",
        lambda t: json.dumps(
            {**json.loads(t or "{}"), "standby": {**json.loads(t or "{}")["standby"], "fp": fingerprint(active)}}
        ),
    )
    for args in (["status"], ["rotate", "--key-stdin"], ["rekey", "--key-stdin"]):
        run = w.rotator(args[0], str(w.plan), *args[1:], pauses=(0,))
        assert run.code == Exit.SLOT_RECORD and run.resets == [], (args, run.err)
        assert "both slots hold the same key" in last_line(run.err), run.err
        assert "has not reached every target" not in run.err
    assert w.failed() == before


def test_a_run_killed_while_armed_is_closed_by_the_next_arm(make_world: Any) -> None:
    from rotator.journal import Journal

    w = make_world()
    f = w.rotator("rekey", str(w.plan), "--key-stdin", kill_after="Reset payments-green")
    assert f.code == -9
    killed = lc.latest("payments")
    assert killed is not None and killed.state == "armed"
    f2 = w.rotator("rekey", str(w.plan), "--key-stdin", pauses=(0,))
    assert f2.code == 0, f2.err
    assert f"rotation {killed.id} ended before it moved anything: closed as aborted" in f2.err
    row = Journal().get(killed.id)
    assert row is not None and row.state == "aborted"
    assert any(e["status"] == "stale" for e in Journal().events(killed.id))


# -- item 9: the one failed call of an incident at high load --------------------------------------


def test_an_incident_with_an_instant_reset_fails_no_call_in_flight_on_the_leaked_key(make_world: Any) -> None:
    """A consumer reports the promoted key the moment it reloads, but a call it sent just before still
    carries the leaked key, and the API checks it only when the call arrives (here 50 ms later, as a
    remote API or a loaded machine does).  An operator who resets at the ask's first line would refuse
    that call: rotator asks only `[rotation] drain` seconds after the consumers confirmed.  Counted by
    the consumers themselves: no failed call, none on a key they had just replaced."""
    w = seeded(make_world)
    _http(f"{w.api}/_admin/latency", body={"latency": 0.05}, token=w.admin)
    before = w.stats()
    f = w.rotator("rotate", str(w.plan), "--incident", "--key-stdin", "--json", pauses=(0,))
    assert f.code == 0, f.err
    assert "for calls already in flight on payments-blue's key to end before asking its reset" in f.err, f.err
    after = w.stats()
    assert {k: after[k]["failed"] - before[k]["failed"] for k in after} == {"api": 0, "worker": 0}, after
    assert all(s["failed_stale"] == 0 for s in after.values()), after
    assert f.report is not None and f.report["alternating"]["incident"]["revoked"] is True
    w.no_leaks(f)
