"""Alternating plans (issue 11) end to end, with real processes only.

The Adjutor stand-in runs as a process with two apps (resetting one revokes only
its key); two consumer processes (`rotator.demo.consumer_app`) call its API every
5 ms with the key from their own env file, counting every failed call with its
time; `rotator` runs as an operator runs it (`python -m rotator ... --key-stdin`),
and the test plays the operator: it reads which app rotator says to reset, resets
exactly that app through the stand-in's admin API, waits (the operator's pause),
and types the key.  The promote, re-key, incident, roll back, a SIGKILL between
promote and re-key, and a mistaken reset of the active app, with the primary in
an env file, Vault (the Vault-protocol server, hvac) and AWS (moto, boto3).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rotator.exitcodes import Exit
from rotator.secret import fingerprint
from rotator.testing import ROOT, VaultServer
from tests.timing import scaled

try:
    from tests import forkserver
    from tests import leakcheck as lc
    from tests.fixtures_backends import *  # noqa: F403
    from tests.fixtures_backends import AWS_REGION
except ImportError:  # pragma: no cover - run from inside tests/
    sys.path.insert(0, str(Path(__file__).parent))
    import forkserver  # type: ignore[no-redef]
    import leakcheck as lc  # type: ignore[no-redef]
    from fixtures_backends import *  # type: ignore[no-redef]  # noqa: F403
    from fixtures_backends import AWS_REGION  # type: ignore[no-redef]

BLUE, GREEN = "payments-blue", "payments-green"
HOOK_ENV = "ALT_HOOK_KEY"
VAULT_TOKEN = "alt-vault-token"
MODELS = "/v2/decisioning/models"
RESET_LINE = re.compile(r"Reset (\S+) \(its new key becomes (the standby|the ACTIVE key)\)")

PLAN = """
[secret]
name = "payments"
strategy = "alternating"
apps = ["{blue}", "{green}"]

[probe]
preset = "adjutor"
url = "{api}/v2/decisioning/models"
watch_interval = 0.2
paths = {paths}

[rotation]
deadline = 20

{primary}

[[backends]]
name = "api-env"
type = "envfile"
path = "{tmp}/api/.env"
variable = "ADJUTOR_API_KEY"

[[backends]]
name = "worker-env"
type = "envfile"
path = "{tmp}/worker/.env"
variable = "ADJUTOR_API_KEY"

[[consumers]]
name = "api"
type = "webhook"
url = "{api_url}/reload"
confirm_url = "{api_url}/fingerprint"
hmac_key = {{ env = "{hook_env}" }}
reads_from = ["api-env"]

[[consumers]]
name = "worker"
type = "signal"
pidfile = "{tmp}/worker/worker.pid"
signal = "HUP"
expect_cmdline = "rotator.demo.consumer_app"
confirm_url = "{worker_url}/fingerprint"
reads_from = ["worker-env"]
{extra}"""

HOOK_CONSUMER = """
[[consumers]]
name = "hook"
type = "webhook"
url = "{url}"
confirm_url = "{confirm_url}"
hmac_key = {{ env = "{hook_env}" }}
retries = 0
reads_from = ["api-env"]
"""

ENVFILE_PRIMARY = """[[backends]]
name = "store"
type = "envfile"
primary = true
path = "{tmp}/store.env"
variable = "ADJUTOR_API_KEY"
"""

VAULT_PRIMARY = """[[backends]]
name = "store"
type = "vault"
primary = true
url = "{vault_url}"
path = "apps/payments"
token = {{ env = "ALT_VAULT_TOKEN" }}
"""

AWS_PRIMARY = """[[backends]]
name = "store"
type = "aws"
primary = true
secret_id = "prod/payments/adjutor"
region = "{region}"
endpoint_url = "{aws_url}"
json_key = "api_key"
"""


def _http(url: str, *, body: Any = None, token: str | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Admin-Token", token)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _wait_file(path: Path, proc: subprocess.Popen[bytes], what: str, timeout: float = 20.0) -> dict[str, Any]:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if path.exists():
            return json.loads(path.read_text())  # type: ignore[no-any-return]
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited ({proc.returncode})")
        time.sleep(0.02)
    raise AssertionError(f"{what} did not start")


@dataclass
class Flow:
    """One `rotator` run and what the operator did in it."""

    code: int
    out: str
    err: str
    resets: list[tuple[str, str]]  # (app, the slot rotator said its key goes to)
    report: dict[str, Any] | None

    @property
    def apps_reset(self) -> list[str]:
        return [a for a, _ in self.resets]


@dataclass
class World:
    tmp: Path
    env: dict[str, str]
    api: str
    admin: str
    consumers: dict[str, str]  # name -> url
    procs: list[subprocess.Popen[bytes]]
    plan: Path
    keys: list[str] = field(default_factory=list)  # every key the stand-in issued (the canaries)
    store_files: list[Path] = field(default_factory=list)  # where keys belong (env-file backends)
    vault: VaultServer | None = None  # the Vault primary's server (in this process), when it is one

    def reset(self, app: str) -> str:
        key = _http(f"{self.api}/_admin/reset", body={"app": app}, token=self.admin)["key"]
        self.keys.append(key)
        return str(key)

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: _http(f"{url}/stats") for name, url in self.consumers.items()}

    def failed(self) -> dict[str, int]:
        return {name: s["failed"] for name, s in self.stats().items()}

    def fingerprints(self) -> dict[str, str]:
        return {name: s["fingerprint"] for name, s in self.stats().items()}

    def works(self, key: str) -> bool:
        req = urllib.request.Request(f"{self.api}/v2/decisioning/models", headers={"Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(req, timeout=5):
                return True
        except urllib.error.HTTPError as exc:
            assert exc.code in (401, 403)
            return False

    def rotator(
        self,
        *args: str,
        pauses: tuple[float, ...] = (),
        kill_after: str | None = None,
        wrong: dict[int, str] | None = None,
        timeout: float = 120,
        kill_signal: int = 9,
    ) -> Flow:
        """`rotator ARGS --key-stdin`, the test as the operator: for each reset rotator asks
        for, reset the app it names, wait `pauses[i]`, type the key (`wrong[i]`: reset that
        app instead, by mistake).  `kill_after`: SIGKILL rotator once stderr shows it."""
        logs = self.tmp / f"run-{len(list(self.tmp.glob('run-*')))}"
        logs.mkdir()
        out_p, err_p = logs / "stdout", logs / "stderr"
        with out_p.open("wb") as o, err_p.open("wb") as e:
            proc = subprocess.Popen(
                [*forkserver.command(), *args],
                stdin=subprocess.PIPE,
                stdout=o,
                stderr=e,
                env=self.env,
            )
        resets: list[tuple[str, str]] = []
        assert proc.stdin is not None
        if not pauses and kill_after is None:
            proc.stdin.close()  # an operator who walks away: rotator reads the end of stdin when it asks
        try:
            until = time.monotonic() + timeout
            killed = False
            while proc.poll() is None and time.monotonic() < until:
                text = err_p.read_text(errors="replace")
                if kill_after is not None and kill_after in text:
                    proc.send_signal(kill_signal)  # SIGKILL by default; SIGINT (Ctrl-C) / SIGTERM: it ends itself
                    killed = kill_signal == 9
                    if not killed:
                        proc.wait(30)
                    else:
                        proc.wait(10)
                        forkserver.settled(proc.pid)
                    break
                asked = RESET_LINE.findall(text)
                while len(asked) > len(resets):
                    i = len(resets)
                    resets.append(asked[i])
                    if i < len(pauses):
                        key = self.reset((wrong or {}).get(i, asked[i][0]))
                        time.sleep(pauses[i])
                        proc.stdin.write(key.encode() + b"\n")
                        proc.stdin.flush()
                        if i + 1 == len(pauses):
                            proc.stdin.close()
                time.sleep(0.01)
            if not killed:
                proc.wait(max(until - time.monotonic(), 1))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if not proc.stdin.closed:
                proc.stdin.close()
        out = out_p.read_text(errors="replace")
        report = json.loads(out) if out.strip().startswith("{") else None
        return Flow(proc.returncode, out, err_p.read_text(errors="replace"), resets, report)

    def no_leaks(self, *flows: Flow) -> None:
        hits: list[str] = []
        for f in flows:
            hits += lc.find(f.out, self.keys, "stdout") + lc.find(f.err, self.keys, "stderr")
        hits += lc.scan_journal(self.keys)
        hits += lc.scan_tree(self.tmp, self.keys, allowed=self.store_files)
        assert not hits, hits


def _consumer(tmp: Path, name: str, api: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    ready = tmp / name / "ready.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rotator.demo.consumer_app",
            "--env-file",
            str(tmp / name / ".env"),
            "--api",
            api,
            "--hmac-key-env",
            HOOK_ENV,
            "--pidfile",
            str(tmp / name / "worker.pid" if name == "worker" else tmp / name / "app.pid"),
            "--ready-file",
            str(ready),
            "--interval",
            "0.005",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, str(_wait_file(ready, proc, name)["url"])


@pytest.fixture
def make_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []
    servers: list[VaultServer] = []

    def make(
        primary: str = "envfile",
        aws_url: str | None = None,
        hook: lc.Hook | None = None,
        services: dict[str, str] | None = None,
    ) -> World:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", HOOK_ENV: "alt-hook-signing-key", "ALT_VAULT_TOKEN": VAULT_TOKEN}
        ready = tmp_path / "adjutor.json"
        standin = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rotator.testing.adjutor",
                "--ready-file",
                str(ready),
                "--app",
                BLUE + (services or {}).get(BLUE, ""),
                "--app",
                GREEN + (services or {}).get(GREEN, ""),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(standin)
        info = _wait_file(ready, standin, "the Adjutor stand-in")
        ready.unlink()  # it holds the keys: not a file rotator made
        blue_key = info["apps"][BLUE]
        keys = [blue_key, info["apps"][GREEN]]
        for name in ("api", "worker"):
            (tmp_path / name).mkdir()
            (tmp_path / name / ".env").write_text(f"ADJUTOR_API_KEY={blue_key}\n")
        consumers = {}
        for name in ("api", "worker"):
            proc, url = _consumer(tmp_path, name, info["url"], env)
            procs.append(proc)
            consumers[name] = url
        store_files = [tmp_path / "api" / ".env", tmp_path / "worker" / ".env"]
        if primary == "envfile":
            (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={blue_key}\n")
            store_files.append(tmp_path / "store.env")
            prim = ENVFILE_PRIMARY.format(tmp=tmp_path)
        elif primary == "vault":
            server = VaultServer(tokens={VAULT_TOKEN: ROOT})
            server.__enter__()
            servers.append(server)
            server.put("apps/payments", {"api_key": blue_key})
            prim = VAULT_PRIMARY.format(vault_url=server.url)
        else:
            import boto3

            assert aws_url is not None
            sm = boto3.client("secretsmanager", endpoint_url=aws_url, region_name=AWS_REGION)
            sm.create_secret(Name="prod/payments/adjutor", SecretString=json.dumps({"api_key": blue_key}))
            prim = AWS_PRIMARY.format(region=AWS_REGION, aws_url=aws_url)
        plan = tmp_path / "payments.toml"
        plan.write_text(
            PLAN.format(
                blue=BLUE,
                green=GREEN,
                api=info["url"],
                tmp=tmp_path,
                primary=prim,
                api_url=consumers["api"],
                worker_url=consumers["worker"],
                hook_env=HOOK_ENV,
                paths=json.dumps(sorted({p for s in (services or {}).values() for p in s[1:].split(",")} - {MODELS})),
                extra=HOOK_CONSUMER.format(url=hook.url, confirm_url=hook.confirm_url, hook_env=HOOK_ENV)
                if hook
                else "",
            )
        )
        env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
        world = World(tmp_path, env, info["url"], info["admin_token"], consumers, procs, plan, keys, store_files)
        world.vault = servers[-1] if primary == "vault" else None
        return world

    try:
        yield make
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for s in servers:
            s.__exit__(None, None, None)


def seeded(make_world: Any, primary: str = "envfile", aws_url: str | None = None, hook: lc.Hook | None = None) -> World:
    """A world whose standby was seeded by the one-time `rotator rekey` (green reset, 0 failed calls)."""
    w = make_world(primary, aws_url, hook)
    f = w.rotator("rekey", str(w.plan), "--key-stdin", "--json", pauses=(0,))
    assert f.code == 0, f.err
    assert f.resets == [(GREEN, "the standby")]
    assert "Business → Apps → payments-green → View details → Reset app key: no consumer uses this key" in f.err
    return w


def status(w: World) -> dict[str, Any]:
    r = lc.cli("status", str(w.plan), "--json", env=w.env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


# -- planned rotation ------------------------------------------------------------------------------


@pytest.mark.parametrize("pause", [0.0, 2.0, 10.0])
def test_planned_rotation_fails_no_call_at_any_operator_pause(make_world: Any, pause: float) -> None:
    w = seeded(make_world)
    blue_before = w.keys[0]
    time.sleep(0.3)  # the consumers run on blue
    before = w.failed()
    st = status(w)
    assert (st["active"]["app"], st["standby"]["app"]) == (BLUE, GREEN)
    assert st["active"]["works"] and st["standby"]["works"]
    assert st["next"].startswith("promote")

    f = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(pause,))
    assert f.code == 0, f.err
    # One reset, of the app no consumer used any more (blue, after the promote to green).
    assert f.resets == [(BLUE, "the standby")]
    assert "Business → Apps → payments-blue → View details → Reset app key: no consumer uses this key" in f.err
    assert w.failed() == before, (w.stats(), f.err)
    assert f.report is not None
    alt = f.report["alternating"]
    assert alt["active"]["app"] == GREEN and alt["standby"]["app"] == BLUE
    assert alt["promote"]["window_s"] is not None and alt["promote"]["window_s"] < scaled(5)
    assert alt["rekeys"][-1]["previous_revoked"] is True
    green = fingerprint(w.keys[2])  # the seed's reset of green
    assert set(w.fingerprints().values()) == {green}
    assert not w.works(blue_before)  # the old blue key is revoked, proven by rotator too
    st = status(w)
    assert (st["active"]["app"], st["standby"]["app"]) == (GREEN, BLUE)
    assert st["standby"]["fingerprint"] == fingerprint(w.keys[-1])
    assert st["last_step"] == "rekey" and not st["rollback_possible"]
    r = lc.cli("rollback", str(w.plan), env=w.env)
    assert r.returncode == Exit.PLAN_INVALID
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .startswith("rotator: nothing to roll back: payments-blue was re-keyed after the last promote")
    )
    w.no_leaks(f)


def test_first_use_rekeys_the_standby_first_then_promotes_then_rekeys_the_retired_app(make_world: Any) -> None:
    w = make_world()
    before = w.failed()
    f = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0.0, 0.0))
    assert f.code == 0, f.err
    assert "re-keying the standby (payments-green) first, then promoting it" in f.err
    assert f.resets == [(GREEN, "the standby"), (BLUE, "the standby")]
    assert w.failed() == before, (w.stats(), f.err)
    st = status(w)
    assert (st["active"]["app"], st["standby"]["app"]) == (GREEN, BLUE)
    assert st["active"]["works"] and st["standby"]["works"]
    w.no_leaks(f)


# -- incident ----------------------------------------------------------------------------------------


def test_incident_moves_off_the_leaked_key_first_and_proves_it_revoked(make_world: Any) -> None:
    w = seeded(make_world)
    leaked = w.keys[0]  # blue's key, in use by every consumer
    before = w.failed()
    f = w.rotator("rotate", str(w.plan), "--incident", "--key-stdin", "--json", pauses=(2.0,))
    assert f.code == 0, f.err
    assert f.resets == [(BLUE, "the standby")]
    assert w.failed() == before, (w.stats(), f.err)
    assert not w.works(leaked)
    assert f.report is not None
    inc = f.report["alternating"]["incident"]
    assert inc["leaked_fingerprint"] == fingerprint(leaked)
    # Out of use before the operator's 2 s pause even began; revoked after it.
    assert 0 < inc["leaked_in_use_s"] < inc["revoked_after_s"]
    assert inc["revoked_after_s"] >= 2.0
    assert "the leaked key" in f.err and "stayed in use" in f.err
    w.no_leaks(f)


def test_incident_without_a_standby_makes_the_operator_choose(make_world: Any) -> None:
    w = make_world()
    f = w.rotator("rotate", str(w.plan), "--incident", "--key-stdin")
    assert f.code == Exit.PLAN_INVALID, f.err
    line = f.err.strip().splitlines()[-1]
    assert "--revoke-now" in line and "--standby-first" in line and "standby slot is empty" in line
    assert f.resets == []
    # --standby-first: 0 failed calls, two resets, the leaked (blue) key dies at the second.
    before = w.failed()
    f = w.rotator("rotate", str(w.plan), "--incident", "--standby-first", "--key-stdin", "--json", pauses=(0, 0))
    assert f.code == 0, f.err
    assert f.apps_reset == [GREEN, BLUE]
    assert w.failed() == before
    assert not w.works(w.keys[0])
    w.no_leaks(f)


def test_incident_revoke_now_without_a_standby_is_the_single_app_flow(make_world: Any) -> None:
    w = make_world()
    leaked = w.keys[0]
    f = w.rotator("rotate", str(w.plan), "--incident", "--revoke-now", "--key-stdin", "--json", pauses=(0,))
    assert f.code == 0, f.err
    assert f.resets == [(BLUE, "the ACTIVE key")]
    assert "incident, revoke now: reset payments-blue" in f.err
    assert set(w.fingerprints().values()) == {fingerprint(w.keys[-1])}
    assert f.report is not None
    inc = f.report["alternating"]["incident"]
    assert inc["choice"] == "revoke-now" and inc["leaked_revoked"] is True
    assert inc["leaked_fingerprint"] == fingerprint(leaked) and not w.works(leaked)
    w.no_leaks(f)


# -- roll back ---------------------------------------------------------------------------------------


def test_rollback_after_a_promote_fails_no_call_and_only_once(make_world: Any) -> None:
    w = seeded(make_world)
    before = w.failed()
    # The operator walks away after the promote: rotator asks for blue's key and reads the end of stdin.
    f = w.rotator("rotate", str(w.plan), "--key-stdin", "--json")
    assert f.resets == [(BLUE, "the standby")]
    assert f.code == Exit.KEY_REFUSED, f.err
    last = f.err.strip().splitlines()[-1]
    assert "the input ended before payments-blue's key" in last and "undoes the promote" in last, last
    st = status(w)
    assert st["active"]["app"] == GREEN and st["last_step"] == "promote" and st["rollback_possible"], st
    assert any("was not re-keyed" in line for line in st["left"])
    r = lc.cli("rollback", str(w.plan), "--json", env=w.env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["alternating"]["active"]["app"] == BLUE
    assert set(w.fingerprints().values()) == {fingerprint(w.keys[0])}
    assert w.failed() == before
    again = lc.cli("rollback", str(w.plan), env=w.env)
    assert again.returncode == Exit.PLAN_INVALID
    assert again.stderr.strip().splitlines()[-1] == (
        "rotator: nothing to roll back: the last promote was already rolled back"
    )
    w.no_leaks(f)


# -- a crash between promote and re-key -----------------------------------------------------------


def test_sigkill_between_promote_and_rekey_then_rotate_finishes_the_rekey(make_world: Any) -> None:
    w = seeded(make_world)
    before = w.failed()
    f = w.rotator("rotate", str(w.plan), "--key-stdin", kill_after="Reset payments-blue")
    assert f.code == -9
    st = status(w)
    assert st["last_step"] == "promote" and st["next"].startswith("re-key")
    r = lc.cli("resume", lc.latest("payments").id, env=w.env)  # type: ignore[union-attr]
    assert r.returncode == Exit.NOTHING_TO_RESUME, r.stderr  # journaled rekey_left: the reset is left
    assert "its re-key is left" in r.stderr and "was not re-keyed" in r.stderr
    f2 = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0,))
    assert f2.code == 0, f2.err
    assert "only the re-key is left" in f2.err
    assert f2.resets == [(BLUE, "the standby")]
    assert w.failed() == before
    st = status(w)
    assert (st["active"]["app"], st["standby"]["app"], st["last_step"]) == (GREEN, BLUE, "rekey")
    w.no_leaks(f, f2)


def test_a_promote_that_fails_midway_is_finished_by_resume_with_no_failed_call(make_world: Any) -> None:
    with lc.Hook() as hook:
        w = seeded(make_world, hook=hook)
        hook.fail = 1000  # a consumer that fails its reload: the promote stops half-way
        before = w.failed()
        f = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0,))
        assert f.code == Exit.PARTIAL, f.err
        assert f.resets == []  # no re-key while the promote is unfinished
        assert w.failed() == before  # both keys work: the half-way state fails no call
        row = lc.latest("payments")
        assert row is not None and row.state == "partial"
        # Re-keying now could revoke a key a target still uses: refused until the promote is finished.
        again = w.rotator("rotate", str(w.plan), "--key-stdin")
        assert again.code == Exit.PARTIAL and again.resets == [], again.err
        assert f"rotation {row.id} (partial" in again.err.strip().splitlines()[-1]
        hook.fail = 0
        r = lc.cli("resume", row.id, env=w.env)
        assert r.returncode == 0, r.stderr
        assert "was not re-keyed" in r.stderr  # what is left, from the slots
        assert hook.reports == fingerprint(w.keys[2])
        st = status(w)
        assert st["active"]["app"] == GREEN and st["next"].startswith("re-key")
        assert w.failed() == before
        w.no_leaks(f)


def test_the_journal_names_apps_and_fingerprints_of_every_step_never_a_key(make_world: Any) -> None:
    from rotator.journal import Journal

    w = seeded(make_world)
    f = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0,))
    assert f.code == 0, f.err
    row = lc.latest("payments")
    assert row is not None
    events = Journal().events(row.id)
    steps = {e["step"]: e for e in events}
    assert {"slots", "promote", "rekey", "revoked"} <= steps.keys()
    assert GREEN in steps["promote"]["detail"] and BLUE in steps["promote"]["detail"]
    assert steps["promote"]["fingerprint"] == fingerprint(w.keys[2])
    assert steps["rekey"]["target"] == BLUE and steps["rekey"]["fingerprint"] == fingerprint(w.keys[-1])
    assert steps["revoked"]["fingerprint"] == fingerprint(w.keys[0])
    show = lc.cli("show", row.id, env=w.env)
    assert show.returncode == 0 and "promote" in show.stdout
    w.no_leaks(f)


def test_check_hints_at_alternating_mode_for_a_single_plan(tmp_path: Path) -> None:
    plan = tmp_path / "single.toml"
    plan.write_text(
        '[secret]\nname = "x"\n[probe]\npreset = "adjutor"\n'
        '[[backends]]\nname = "s"\ntype = "envfile"\nprimary = true\npath = "/tmp/x.env"\nvariable = "K"\n'
    )
    r = lc.cli("check", str(plan))
    assert r.returncode == 0, r.stderr
    ok, hint = r.stdout.strip().splitlines()
    assert ": ok (" in ok and r.stderr == ""
    assert "hint:" in hint and 'strategy = "alternating"' in hint


# -- bad input ----------------------------------------------------------------------------------------


def test_a_pasted_key_equal_to_a_slot_is_the_key_was_not_reset(make_world: Any) -> None:
    w = seeded(make_world)
    green_key = w.keys[2]  # the standby's key, pasted again for the re-key of the standby
    proc = subprocess.run(
        [*forkserver.command(), "rekey", str(w.plan), "--key-stdin"],
        input=green_key.encode() + b"\n",
        capture_output=True,
        env=w.env,
        timeout=60,
    )
    assert proc.returncode == Exit.KEY_REFUSED
    err = proc.stderr.decode()
    assert "the key was not reset: this is the standby slot's key (payments-green" in err
    assert status(w)["standby"]["fingerprint"] == fingerprint(green_key)
    assert not lc.find(err, w.keys, "stderr")


def test_a_paste_that_is_not_a_key_is_one_line_and_exit_3(make_world: Any) -> None:
    w = make_world()
    r = lc.cli("rekey", str(w.plan), "--key-stdin", input="   \n", env=w.env)
    assert r.returncode == Exit.KEY_REFUSED
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("rotator: the pasted key was rejected: ") and last.endswith("nothing more was written")
    assert "Traceback" not in r.stderr and status(w)["standby"]["fingerprint"] is None


def test_mistaken_reset_of_the_active_app_is_said_at_once_and_its_key_taken_as_active(make_world: Any) -> None:
    w = seeded(make_world)
    before = sum(w.failed().values())
    # Asked to reset blue (the standby after the promote), the operator resets green: the active app.
    f = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(1.5,), wrong={0: GREEN})
    assert f.code == 0, f.err
    assert "the ACTIVE app (payments-green) was just reset" in f.err
    new_green = w.keys[-1]
    assert set(w.fingerprints().values()) == {fingerprint(new_green)}
    assert f.report is not None
    mistake = f.report["alternating"]["mistaken_reset"]
    assert mistake["app"] == GREEN
    assert 1.5 <= mistake["failed_call_window_s"] < scaled(10)  # the pause before the paste, then one window
    assert sum(w.failed().values()) > before  # single-app style: those calls did fail
    st = status(w)
    assert st["active"]["fingerprint"] == fingerprint(new_green) and st["active"]["works"]
    assert st["active"]["app"] == GREEN  # inferred: the standby is blue's
    w.no_leaks(f)


def test_a_standby_app_lacking_an_api_service_is_never_promoted(make_world: Any) -> None:
    bvn = "/v2/verification/bvn"
    w = make_world(services={BLUE: f"={MODELS},{bvn}", GREEN: f"={MODELS}"})
    before = w.failed()
    f = w.rotator("rekey", str(w.plan), "--key-stdin", "--json", pauses=(0,))
    assert f.code == Exit.KEY_REFUSED, f.err
    # The JSON says why the key was refused, not only that the input ended.
    error = json.loads(f.out)["error"]
    assert error.startswith("no more keys: the input ended before payments-green's key (") and bvn in error, error
    # Refused with the URL that lacks the service, asked again; the operator has no other key.
    line = next(x for x in f.err.splitlines() if "the API refused this key" in x)
    assert bvn in line and "HTTP 403" in line and "nothing was written" in line, line
    assert (
        f.err.strip().splitlines()[-1].startswith("rotator: no more keys: the input ended before payments-green's key")
    )
    st = status(w)
    assert st["standby"]["fingerprint"] is None and st["next"].startswith("re-key the standby first")
    assert w.failed() == before
    w.no_leaks(f)


def test_the_flows_run_without_the_cli(make_world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the service will do: arm, then `pipeline.rotate_alternating` with an Operator of its own
    (here: a queue the "page" fills), in-process; the stand-in and the consumers are processes."""
    import asyncio

    from rotator import pipeline
    from rotator.journal import Journal
    from rotator.pipeline.ask import ResetAsk, SourcesOperator
    from rotator.pipeline.state import RotationState
    from rotator.plan import load_plan

    w = seeded(make_world)
    monkeypatch.setenv(HOOK_ENV, w.env[HOOK_ENV])
    before = w.failed()
    asked: list[ResetAsk] = []

    class Page:
        name = "page"

        def __init__(self) -> None:
            self.keys: asyncio.Queue[str] = asyncio.Queue()

        async def read(self) -> str:
            return await self.keys.get()

    page = Page()

    class PageOperator(SourcesOperator):
        def show(self, ask: ResetAsk) -> None:  # the page shows the instruction; the operator resets that app
            asked.append(ask)
            page.keys.put_nowait(w.reset(ask.app))

    async def scenario() -> dict[str, Any]:
        state = RotationState(load_plan(w.plan), Journal(), reason="from the service")
        try:
            alt = await pipeline.arm_alternating(state)
            report = await pipeline.rotate_alternating(state, alt, PageOperator([page], None))
            return report.as_dict()
        finally:
            await pipeline.arm.disarm(state)

    report = asyncio.run(scenario())
    assert report["exit_code"] == 0, report["message"]
    assert [a.app for a in asked] == [BLUE] and asked[0].instruction.endswith("no consumer uses this key")
    assert report["alternating"]["active"]["app"] == GREEN
    assert w.failed() == before
    assert not lc.find(json.dumps(report), w.keys, "report")


# -- the standby on Vault and AWS --------------------------------------------------------------------


def test_vault_holds_the_standby_planned_rotation_no_failed_call(make_world: Any) -> None:
    w = seeded(make_world, "vault")
    before = w.failed()
    f = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0.5,))
    assert f.code == 0, f.err
    assert w.failed() == before
    st = status(w)
    assert (st["active"]["app"], st["standby"]["app"]) == (GREEN, BLUE)
    w.no_leaks(f)


def test_aws_holds_the_standby_planned_rotation_no_failed_call(make_world: Any, aws_env: str) -> None:
    w = seeded(make_world, "aws", aws_env)
    before = w.failed()
    f = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0.5,))
    assert f.code == 0, f.err
    assert w.failed() == before
    st = status(w)
    assert (st["active"]["app"], st["standby"]["app"]) == (GREEN, BLUE)
    w.no_leaks(f)
