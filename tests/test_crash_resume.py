"""rotator killed mid-rotation (SIGKILL: no cleanup at all), then finished with
`rotator resume`, as an operator would after a crash during an incident.

The fan-out is held up by a Vault-protocol server answering slowly; the test
waits (polling the journal, no fixed sleeps) until the journal says
`fanning_out`, kills rotator, and checks that the journal says how far it got,
that `rotate` warns about the unfinished rotation, that the dead process's lock
is taken over, and that `resume` brings every backend and consumer to the new key.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rotator.exitcodes import Exit
from rotator.journal import Journal, LockHeld, locks
from rotator.secret import fingerprint
from rotator.testing import ROOT, VaultServer, plans
from rotator.testing.adjutor import AdjutorStandIn

try:
    from tests import leakcheck as lc
except ImportError:
    import leakcheck as lc  # type: ignore[no-redef]

VAULT_TOKEN = "crash-vault-token"
HELD = 30.0  # seconds the Vault server holds each request while the fan-out is "stuck"

RELOAD = """
import os, pathlib
(pathlib.Path(__file__).parent / "reloaded").write_text(os.environ["ROTATOR_FINGERPRINT"])
"""


@dataclass
class World:
    tmp: Path
    plan: Path
    name: str
    old: str
    vault: VaultServer
    standin: AdjutorStandIn

    def fingerprints(self) -> dict[str, str | None]:
        """What every backend and the consumer hold now, as fingerprints."""
        vault = self.vault.get("apps/billing") or {}
        out = {
            "app": lc.env_fp(self.tmp / "app" / ".env"),
            "vault": fingerprint(vault["api_key"]) if vault.get("api_key") else None,
            "reloader": (self.tmp / "reloaded").read_text() if (self.tmp / "reloaded").exists() else None,
        }
        if (self.tmp / "store.env").exists():
            out["store"] = lc.env_fp(self.tmp / "store.env")
        return out


def make_world(tmp: Path, standin: AdjutorStandIn, vault: VaultServer, *, vault_primary: bool) -> World:
    old = standin.current_key
    (tmp / "app").mkdir(parents=True)
    (tmp / "app" / ".env").write_text(f"PORT=8080\nADJUTOR_API_KEY={old}\n")
    vault.put("apps/billing", {"api_key": old, "db_password": "hunter2"})
    (tmp / "reload.py").write_text(RELOAD)
    vault_backend = plans.vault(
        "vault", vault.url, "apps/billing", token_env="CRASH_VAULT_TOKEN", timeout=60, retries=1
    )
    name = "crash-" + tmp.name.replace("_", "-")[-30:]
    if vault_primary:
        backends = [
            {**vault_backend, "name": "store", "primary": True},
            plans.envfile("mirror", tmp / "mirror.env"),
        ]
        (tmp / "mirror.env").write_text(f"ADJUTOR_API_KEY={old}\n")
    else:
        backends = [plans.envfile("store", tmp / "store.env", primary=True), vault_backend]
        (tmp / "store.env").write_text(f"ADJUTOR_API_KEY={old}\n")
    plan = plans.write_plan(
        tmp / "plan.toml",
        plans.plan(
            name,
            probe=plans.adjutor_probe(standin.models_url, retries=1, backoff=0.01),
            backends=[*backends, plans.envfile("app", tmp / "app/.env")],
            consumers=[plans.command("reloader", [sys.executable, tmp / "reload.py"], retries=0)],
        ),
    )
    return World(tmp, plan, name, old, vault, standin)


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch) -> Iterator[VaultServer]:
    monkeypatch.setenv("CRASH_VAULT_TOKEN", VAULT_TOKEN)
    with VaultServer(tokens={VAULT_TOKEN: ROOT}) as server:
        yield server


@pytest.fixture
def world(tmp_path: Path, standin: AdjutorStandIn, vault: VaultServer) -> World:
    return make_world(tmp_path / "w", standin, vault, vault_primary=False)


def crash_while(w: World, state: str, logs: Path) -> tuple[str, int]:
    """Rotate; once armed, hold Vault up and paste the new key; SIGKILL rotator when the journal
    reaches `state` (or, for "armed", while it waits for the key).  Returns (new key, dead pid)."""
    run = lc.start("-vv", "rotate", str(w.plan), "--key-stdin", "--json", logs=logs, own_pid=True)
    lc.wait_for("arm", lc.armed(w.name), proc=run)
    new = w.standin.reset()  # Adjutor revokes the old key now
    if state != "armed":
        w.vault.latency = HELD
        run.send(new + "\n")
        lc.wait_for(state, lc.in_state(w.name, state), proc=run)
    pid = run.proc.pid
    run.kill()
    w.vault.latency = 0.0
    return new, pid


def lock_row(plan: str) -> dict | None:
    with Journal().engine.connect() as c:
        row = c.execute(locks.select().where(locks.c.plan == plan)).mappings().first()
    return dict(row) if row else None


def test_killed_during_fan_out_then_resume_finishes_everything(world: World, tmp_path: Path) -> None:
    w = world
    new, dead = crash_while(w, "fanning_out", tmp_path / "run1")
    fp = fingerprint(new)

    # The journal says how far it got: key accepted with its fingerprint, primary written, fanning out.
    row = lc.latest(w.name)
    assert row is not None and row.state == "fanning_out"
    assert row.new_fp == fp and row.old_fp == fingerprint(w.old)
    steps = [(e["step"], e["status"]) for e in Journal().events(row.id)]
    assert ("arm", "ok") in steps and ("key", "accepted") in steps and ("primary", "ok") in steps
    # The primary holds the key; Vault (held up) does not; the consumer was never told.
    now = w.fingerprints()
    assert now["store"] == fp and now["vault"] == fingerprint(w.old) and now["reloader"] is None
    show = lc.cli("show", row.id)
    assert show.returncode == 0 and "fanning_out" in show.stdout and fp in show.stdout

    # The dead process still "holds" the lock; nobody else may take it while it lived, but now:
    lock = lock_row(w.name)
    assert lock is not None and lock["pid"] == dead and lock["holder"] == row.id

    # `rotate` of the same plan warns about the unfinished rotation, takes the dead holder's
    # lock over (so it is not "busy"), and a bad paste still writes nothing.
    before = {p: p.read_bytes() for p in w.tmp.rglob("*.env")}
    r = lc.cli("rotate", str(w.plan), "--key-stdin", input="\n")
    assert r.returncode == Exit.KEY_REFUSED, r.stderr
    assert f"rotation {row.id} of {w.name} did not finish (fanning_out)" in r.stderr
    assert f"rotator resume {row.id}" in r.stderr
    assert {p: p.read_bytes() for p in w.tmp.rglob("*.env")} == before
    assert lock_row(w.name) is None  # taken over, then released

    # Resume, with Vault answering promptly again: everything ends on the new key.
    r = lc.cli("resume", row.id, "--json")
    assert r.returncode == Exit.DONE, r.stderr
    report = json.loads(r.stdout)
    assert report["state"] == "done" and report["new_fingerprint"] == fp
    status = {t["name"]: t["status"] for t in report["targets"]}
    assert status["store"] == "unchanged" and status["reloader"] == "ok"
    # Vault still holds the killed process's write for HELD s, then makes it: on a busy machine
    # the steps above can take longer, and the resume finds the key there already.
    assert status["vault"] in ("ok", "unchanged") and status["app"] in ("ok", "unchanged")
    assert w.fingerprints() == {"store": fp, "vault": fp, "app": fp, "reloader": fp}
    assert w.vault.get("apps/billing") == {"api_key": new, "db_password": "hunter2"}
    done = Journal().get(row.id)
    assert done is not None and done.state == "done" and done.key_received_at == row.key_received_at
    assert lock_row(w.name) is None
    # Resuming a finished rotation is a no-op.
    again = lc.cli("resume", row.id)
    assert again.returncode == 0 and "already done" in again.stderr

    # And the key went nowhere but the backends.
    hits = lc.find(r.stdout + r.stderr, [new], "resume output")
    hits += lc.scan_journal([new])
    hits += lc.scan_tree(tmp_path, [new], allowed=[w.tmp / "store.env", w.tmp / "app" / ".env"])
    assert not hits, hits


def test_a_live_rotation_keeps_its_lock_even_against_its_own_resume(world: World, tmp_path: Path) -> None:
    """`rotator resume ID` while rotation ID still runs elsewhere must not take its lock."""
    w = world
    run = lc.start("rotate", str(w.plan), "--key-stdin", logs=tmp_path / "run")
    try:
        row = lc.wait_for("arm", lc.armed(w.name), proc=run)
        with pytest.raises(LockHeld, match=f"locked by {row.id}"):
            Journal().acquire(w.name, row.id)
    finally:
        run.kill()
    Journal().acquire(w.name, row.id)  # its holder is dead now: taken over
    Journal().release(w.name, row.id)


def test_killed_before_the_key_arrived_must_be_entered_again(world: World, tmp_path: Path) -> None:
    w = world
    before = {p: p.read_bytes() for p in w.tmp.rglob("*.env")}
    crash_while(w, "armed", tmp_path / "run1")
    row = lc.latest(w.name)
    assert row is not None and row.state == "armed"
    r = lc.cli("resume", row.id)
    assert r.returncode == Exit.NOTHING_TO_RESUME
    line = lc.one_line(r.stderr)
    assert line.startswith("rotator: ") and "never wrote the primary" in line and "key must be entered again" in line
    assert len(r.stderr.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in w.tmp.rglob("*.env")} == before
    # It was never half done, so `rotate` does not warn about it.
    r = lc.cli("rotate", str(w.plan), "--key-stdin", input="\n")
    assert r.returncode == Exit.KEY_REFUSED and "did not finish" not in r.stderr


def test_killed_during_the_primary_write(tmp_path: Path, standin: AdjutorStandIn, vault: VaultServer) -> None:
    """Vault is the primary and holds the write up: the journal says key_accepted.  Whether the
    write landed is decided by the primary: not there, the key must be entered again; there, resume."""
    w = make_world(tmp_path / "w", standin, vault, vault_primary=True)
    new, _ = crash_while(w, "key_accepted", tmp_path / "run1")
    row = lc.latest(w.name)
    assert row is not None and row.state == "key_accepted" and row.new_fp == fingerprint(new)
    assert w.fingerprints()["vault"] == fingerprint(w.old)

    r = lc.cli("resume", row.id)
    assert r.returncode == Exit.NOTHING_TO_RESUME, r.stderr
    line = lc.one_line(r.stderr)
    assert "never wrote the primary" in line and "key must be entered again" in line
    assert (w.tmp / "mirror.env").read_text() == f"ADJUTOR_API_KEY={w.old}\n"

    # The held write lands after all (its answer lost with the process): now resume can finish.
    vault.put("apps/billing", {"api_key": new, "db_password": "hunter2"})
    r = lc.cli("resume", row.id, "--json")
    assert r.returncode == Exit.DONE, r.stderr
    fp = fingerprint(new)
    assert w.fingerprints() == {"vault": fp, "app": fp, "reloader": fp}
    assert lc.env_fp(w.tmp / "mirror.env") == fp


def test_killed_during_the_primary_write_is_unfinished_for_rotate_resume_and_history(
    tmp_path: Path, standin: AdjutorStandIn, vault: VaultServer
) -> None:
    """SIGKILLed while the primary's write is in flight: `rotate` warns about it, `history`
    marks it, and `resume` picks it up: one definition of unfinished (report.RESUMABLE)."""
    w = make_world(tmp_path / "w", standin, vault, vault_primary=True)
    new, _ = crash_while(w, "key_accepted", tmp_path / "run1")
    row = lc.latest(w.name)
    assert row is not None and row.state == "key_accepted"

    hist = lc.cli("history", "--plan", w.name)
    assert hist.returncode == 0, hist.stderr
    line = next(x for x in hist.stdout.splitlines() if x.startswith(row.id))
    assert f"unfinished: `rotator resume {row.id}`" in line
    rows = json.loads(lc.cli("history", "--plan", w.name, "--json").stdout)["rotations"]
    assert [r["resumable"] for r in rows if r["id"] == row.id] == [True]

    r = lc.cli("rotate", str(w.plan), "--key-stdin", input="\n")
    assert r.returncode == Exit.KEY_REFUSED, r.stderr
    assert f"rotation {row.id} of {w.name} did not finish (key_accepted)" in r.stderr

    # The write landed after all: resume finishes it, and it is no longer unfinished.
    vault.put("apps/billing", {"api_key": new, "db_password": "hunter2"})
    assert lc.cli("resume", row.id).returncode == Exit.DONE
    r = lc.cli("rotate", str(w.plan), "--key-stdin", input="\n")
    assert r.returncode == Exit.KEY_REFUSED and "did not finish" not in r.stderr
    hist = lc.cli("history", "--plan", w.name)
    assert "unfinished" not in hist.stdout


def test_sync_repairs_a_tampered_target(world: World, tmp_path: Path) -> None:
    w = world
    new = w.standin.reset()
    r = lc.cli("rotate", str(w.plan), "--key-stdin", "--json", input=new + "\n")
    assert r.returncode == Exit.DONE, r.stderr
    fp = fingerprint(new)
    (w.tmp / "reloaded").unlink()

    # Someone puts the old key back into the app's env file, and edits Vault by hand.
    app = w.tmp / "app" / ".env"
    app.write_text(app.read_text().replace(new, w.old))
    w.vault.put("apps/billing", {"api_key": "sk_test_handedited", "db_password": "hunter2"})
    check = lc.cli("sync", str(w.plan), "--check", "--json")
    assert check.returncode == Exit.DRIFT, check.stderr
    drift = {t["name"]: t["status"] for t in json.loads(check.stdout)["targets"]}
    assert drift == {"vault": "drift", "app": "drift"}

    r = lc.cli("sync", str(w.plan), "--json")
    assert r.returncode == Exit.DONE, r.stderr
    report = json.loads(r.stdout)
    assert {t["name"]: t["status"] for t in report["targets"]} == {
        "store": "unchanged",
        "vault": "ok",
        "app": "ok",
        "reloader": "ok",
    }
    assert w.fingerprints() == {"store": fp, "vault": fp, "app": fp, "reloader": fp}
    assert app.read_text() == f"PORT=8080\nADJUTOR_API_KEY={new}\n"
    assert lc.cli("sync", str(w.plan), "--check").returncode == Exit.DONE
