"""The CLI under an operator's hands (issue 16 items 3, 4, 10, 11; issue 13's CLI side):
Ctrl-C at the key and during the fan-out, a journal whose disk fills, and a
documented exit code with a one-line fix for every situation that is not a bug.
Real `rotator` processes throughout."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.exitcodes import Exit
from rotator.journal import Journal
from rotator.secret import fingerprint
from rotator.testing import plans
from rotator.testing.adjutor import AdjutorStandIn
from tests.timing import scaled

try:
    from tests import leakcheck as lc
except ImportError:
    import leakcheck as lc  # type: ignore[no-redef]

OLD = "sk_test_" + "0ld" * 10


def two_envfiles(tmp: Path, name: str, *, consumers: list[dict[str, object]] | None = None, **kw: object) -> Path:
    for f in ("store.env", "app.env"):
        (tmp / f).write_text(f"ADJUTOR_API_KEY={OLD}\n")
    return plans.write_plan(
        tmp / "plan.toml",
        plans.plan(
            name,
            backends=[plans.envfile("store", tmp / "store.env", primary=True), plans.envfile("app", tmp / "app.env")],
            consumers=consumers or [],
            **kw,  # type: ignore[arg-type]
        ),
    )


def lock_free(plan: str) -> bool:
    return Journal().lock_row(plan) is None


# -- Ctrl-C while waiting for the key (issue 16 item 3) -------------------------


class ControllingTerminal:
    """A pty that is the child's controlling terminal, as an operator's is: ^C typed on
    it is a SIGINT from the terminal driver, and /dev/tty is this pty."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = pty.openpty()

        def become_session_leader() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True, preexec_fn=become_session_leader
        )
        os.close(slave)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {text!r}:\n{self.seen.decode(errors='replace')}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                assert chunk, f"process ended before {text!r}:\n{self.seen.decode(errors='replace')}"
                self.seen += chunk

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if the process is still running after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.05)[0]:
                with contextlib.suppress(OSError):
                    self.seen += os.read(self.master, 65536)
        return self.proc.poll()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)


def test_ctrl_c_at_the_hidden_prompt_ends_at_once_and_restores_echo(tmp_path: Path) -> None:
    plan = two_envfiles(tmp_path, "ctrl-c-tty")
    term = ControllingTerminal([sys.executable, "-m", "rotator", "rotate", str(plan)])
    try:
        term.expect(b"new key:")
        assert not termios.tcgetattr(term.master)[3] & termios.ECHO  # hidden while asking
        os.write(term.master, b"\x03")  # Ctrl-C, through the terminal driver
        code = term.wait(15)  # was: waits for Enter forever
        assert code == Exit.INTERRUPTED, term.seen.decode(errors="replace")
        screen = term.seen.decode(errors="replace")
        assert "interrupted while waiting for the key: nothing was written" in screen
        assert "Traceback" not in screen
        assert termios.tcgetattr(term.master)[3] & termios.ECHO  # echo back on
    finally:
        term.close()
    row = lc.latest("ctrl-c-tty")
    assert row is not None and row.state == "aborted"
    assert lock_free("ctrl-c-tty")


def test_ctrl_c_with_key_stdin_left_open_ends_at_once(tmp_path: Path) -> None:
    plan = two_envfiles(tmp_path, "ctrl-c-stdin")
    run = lc.start("rotate", str(plan), "--key-stdin", "--json", logs=tmp_path / "logs")
    try:
        lc.wait_for("arm", lc.armed("ctrl-c-stdin"), proc=run)
        run.proc.send_signal(signal.SIGINT)  # stdin stays open: nobody sends a key
        try:
            code = run.wait(15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 15 s after Ctrl-C:\n{run.err}")
    finally:
        if run.proc.poll() is None:
            run.kill()
    assert code == Exit.INTERRUPTED, run.err
    assert "interrupted while waiting for the key: nothing was written" in lc.one_line(run.err)
    body = json.loads(run.out)  # --json: still one object on stdout
    assert body["exit_code"] == 130 and body["schema"] == 1 and body["primary_written"] is False
    row = lc.latest("ctrl-c-stdin")
    assert row is not None and row.state == "aborted"
    assert lock_free("ctrl-c-stdin")


# -- SIGINT during the fan-out (issue 16 item 4) --------------------------------


def test_sigint_during_the_fan_out_says_what_holds_the_key_and_how_to_resume(tmp_path: Path) -> None:
    with lc.Hook(hang=20.0) as hook:
        hook.reports = fingerprint(OLD)
        env = lc.rotator_env(HOOK_KEY="k" * 32)
        plan = two_envfiles(
            tmp_path,
            "sigint-fanout",
            consumers=[plans.webhook("api", hook.url, hmac_env="HOOK_KEY", confirm_url=hook.confirm_url)],
        )
        new = lc.canary()
        run = lc.start("rotate", str(plan), "--key-stdin", "--json", logs=tmp_path / "logs", env=env)
        try:
            lc.wait_for("arm", lc.armed("sigint-fanout"), proc=run)
            run.send(new + "\n")
            lc.wait_for("the webhook hanging", lambda: hook.posts >= 1, proc=run)
            run.proc.send_signal(signal.SIGINT)
            code = run.wait(30)
        finally:
            if run.proc.poll() is None:
                run.kill()
            hook.hang = 0.0
        line = lc.one_line(run.err)
        assert code == Exit.INTERRUPTED, run.err
        assert "nothing further was written" not in run.err
        row = lc.latest("sigint-fanout")
        assert row is not None and row.state == "fanning_out"
        assert "the primary holds the new key" in line and "api" in line and f"rotator resume {row.id}" in line
        body = json.loads(run.out)
        assert body["id"] == row.id and body["resumable"] is True and "api" in body["not_finished"]
        assert lc.env_fp(tmp_path / "store.env") == fingerprint(new)
        assert lock_free("sigint-fanout")

        done = lc.cli("resume", row.id, env=env)
        assert done.returncode == 0, done.stderr
        assert hook.reports == fingerprint(new)

        # After the resume, show and history report the real span and keep the first attempt's figures.
        shown = json.loads(lc.cli("show", row.id, "--json").stdout)["rotation"]
        assert shown["resumed"] is True and shown["first_attempt"]["state"] == "interrupted"
        assert shown["span_seconds"] > shown["window_seconds"]  # the interruption is in the span, not the window
        assert "old_fp" not in shown and shown["new_fingerprint"] == fingerprint(new)
        text = lc.cli("show", row.id).stdout
        assert "first attempt: interrupted" in text and "span:" in text and "resume start" in text
        assert "exit None" not in text
        hist = lc.cli("history", "--plan", str(plan))  # a plan file, as well as a secret's name
        assert "(resumed: " in next(x for x in hist.stdout.splitlines() if x.startswith(row.id))
        assert not lc.find(run.out + run.err + done.stdout + done.stderr, [new], "output")


# -- the journal's disk fills between arm and key (issue 16 item 10) ------------


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path) -> None:
    """Write until the filesystem says ENOSPC."""
    with (where / "filler").open("wb") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()


def test_journal_disk_full_between_arm_and_key_is_one_line_with_its_own_code(tmp_path: Path) -> None:
    plan = two_envfiles(tmp_path, "disk-full")
    with tmpfs(tmp_path / "state", "8m") as state:
        env = lc.rotator_env(ROTATOR_DATA_DIR=str(state))
        new = lc.canary()
        run = lc.start("rotate", str(plan), "--key-stdin", logs=tmp_path / "logs", env=env)
        try:
            lc.wait_for("arm", lambda: "Armed." in run.err, proc=run)
            fill(state)
            run.send(new + "\n")
            code = run.wait(60)
        finally:
            if run.proc.poll() is None:
                run.kill()
        line = lc.one_line(run.err)
        assert code == Exit.JOURNAL, run.err
        assert "internal error" not in run.err
        assert "the journal could not be written" in line and "full" in line, line
        # Nothing written: the write-ahead record comes before any backend.
        assert lc.env_fp(tmp_path / "store.env") == fingerprint(OLD)
        assert lc.env_fp(tmp_path / "app.env") == fingerprint(OLD)


# -- exit 1 only for bugs (issue 16 item 11) ------------------------------------


def test_the_primary_unreachable_at_write_is_its_own_code_with_the_fix(tmp_path: Path) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    from rotator.testing import moto_env

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    env = lc.rotator_env(**moto_env.ENV)
    sm = boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name=moto_env.REGION,
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )
    sm.create_secret(Name="prod/adjutor", SecretString=OLD)
    (tmp_path / "app.env").write_text(f"ADJUTOR_API_KEY={OLD}\n")
    plan = plans.write_plan(
        tmp_path / "plan.toml",
        plans.plan(
            "primary-down",
            backends=[
                # arm reads the secret within this timeout too: on a busy machine it takes longer
                plans.aws("store", "prod/adjutor", primary=True, endpoint_url=url, timeout=scaled(1), retries=0),
                plans.envfile("app", tmp_path / "app.env"),
            ],
            rotation={"deadline": scaled(4)},
        ),
    )
    stopped = False
    run = lc.start("rotate", str(plan), "--key-stdin", "--json", logs=tmp_path / "logs", env=env)
    try:
        lc.wait_for("arm", lc.armed("primary-down"), proc=run)
        server.stop()  # AWS unreachable after arm
        stopped = True
        run.send(lc.canary() + "\n")
        code = run.wait(60)
    finally:
        if run.proc.poll() is None:
            run.kill()
        if not stopped:
            server.stop()
    assert code == Exit.PRIMARY_FAILED, run.err
    assert "Traceback" not in run.err
    line = next(x for x in run.err.splitlines() if "was not written" in x)  # the outcome line (a timeline follows)
    assert "internal error" not in run.err
    assert "was not written" in line and "run `rotator rotate` again with the same new key" in line, line
    assert json.loads(run.out)["exit_code"] == Exit.PRIMARY_FAILED
    assert lc.env_fp(tmp_path / "app.env") == fingerprint(OLD)


def test_unknown_or_unreachable_db_and_a_missing_driver_are_not_bugs() -> None:
    for url in ("mysqlx://nowhere/x", "mysql://x", "not-a-url"):
        # Another database: said so, exit 10; not the advice to install a driver (exit 13).
        unknown = lc.cli("--db", url, "history")
        assert unknown.returncode == Exit.JOURNAL, unknown.stderr
        assert lc.one_line(unknown.stderr).startswith("rotator: unsupported journal URL "), unknown.stderr
        assert "--db" in lc.one_line(unknown.stderr) and "pip install" not in unknown.stderr

    down = lc.cli("--db", "postgresql://rotator@127.0.0.1:1/journal", "history", "--json")
    assert down.returncode == Exit.JOURNAL, down.stderr
    assert "cannot open the journal" in lc.one_line(down.stderr)
    assert json.loads(down.stdout)["exit_code"] == Exit.JOURNAL

    # psycopg not installed: an interpreter where importing it fails as it does when it is absent.
    script = (
        "import sys; sys.modules['psycopg'] = None; from rotator.cli import main; "
        "main(['--db', 'postgresql://rotator@127.0.0.1:1/journal', 'history'])"
    )
    missing = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert missing.returncode == Exit.MISSING_EXTRA, missing.stderr
    assert "pip install 'rotator[postgres]'" in lc.one_line(missing.stderr)


def test_resume_of_a_rotation_that_never_wrote_anything(tmp_path: Path) -> None:
    plan = two_envfiles(tmp_path, "never-wrote")
    run = lc.start("rotate", str(plan), "--key-stdin", logs=tmp_path / "logs")
    lc.wait_for("arm", lc.armed("never-wrote"), proc=run)
    run.kill()  # SIGKILL while waiting for the key: the entry stays armed
    row = lc.latest("never-wrote")
    assert row is not None
    r = lc.cli("resume", row.id, "--json")
    assert r.returncode == Exit.NOTHING_TO_RESUME, r.stderr
    assert "the key must be entered again" in lc.one_line(r.stderr)
    assert json.loads(r.stdout)["exit_code"] == Exit.NOTHING_TO_RESUME


def test_resume_names_the_journal_it_looked_in() -> None:
    r = lc.cli("resume", "01NOSUCHROTATION")
    assert r.returncode == Exit.PLAN_INVALID
    assert "journal sqlite:///" in lc.one_line(r.stderr)


# -- operator safety (issue 13 items 2, 3, 4) -----------------------------------


def adjutor_plan(tmp: Path, name: str, standin: AdjutorStandIn) -> Path:
    old = standin.current_key
    for f in ("store.env", "app.env"):
        (tmp / f).write_text(f"ADJUTOR_API_KEY={old}\n")
    return plans.write_plan(
        tmp / "plan.toml",
        plans.plan(
            name,
            probe=plans.adjutor_probe(standin.models_url, retries=0),
            backends=[plans.envfile("store", tmp / "store.env", primary=True), plans.envfile("app", tmp / "app.env")],
        ),
    )


def test_dry_run_says_loudly_not_to_reset(tmp_path: Path, standin: AdjutorStandIn) -> None:
    plan = adjutor_plan(tmp_path, "dry", standin)
    r = lc.cli("rotate", str(plan), "--dry-run", "--key-stdin", input=standin.current_key + "\n")
    assert r.returncode == 0, r.stderr
    assert "DRY RUN — do NOT reset the key" in r.stderr
    assert "Now reset the key" not in r.stderr and "Reset app key" not in r.stderr
    assert standin.resets == 0


def test_pasting_the_key_the_primary_holds_is_refused_unless_resync(tmp_path: Path, standin: AdjutorStandIn) -> None:
    plan = adjutor_plan(tmp_path, "not-reset", standin)
    before = (tmp_path / "app.env").read_bytes()
    same = standin.current_key
    r = lc.cli("rotate", str(plan), "--key-stdin", "--json", input=same + "\n")
    assert r.returncode == Exit.KEY_NOT_RESET, r.stderr
    line = lc.one_line(r.stderr)
    assert "the key was not reset" in line and "every target holds the new key" not in r.stderr
    body = json.loads(r.stdout)
    assert body["exit_code"] == Exit.KEY_NOT_RESET and "the key was not reset" in body["error"]
    assert (tmp_path / "app.env").read_bytes() == before
    assert body["probe"] is None  # refused before the probe: the key was not tried against the API
    row = lc.latest("not-reset")
    assert row is not None and row.state == "refused"

    again = lc.cli("rotate", str(plan), "--key-stdin", "--resync", "--json", input=same + "\n")
    assert again.returncode == 0, again.stderr
    assert any("re-sync" in w for w in json.loads(again.stdout)["warnings"])


def test_arm_warns_before_the_reset_when_the_api_is_down(tmp_path: Path, standin: AdjutorStandIn) -> None:
    plan = adjutor_plan(tmp_path, "api-down", standin)
    standin.unavailable = True
    run = lc.start("rotate", str(plan), "--key-stdin", logs=tmp_path / "logs")
    try:
        lc.wait_for("arm", lc.armed("api-down"), proc=run)
        lc.wait_for("the instruction", lambda: "Now reset the key" in run.err, proc=run)
        err = run.err
        probe_line = next(x for x in err.splitlines() if " probe " in f" {x} " and "arm" in x)
        assert "✓" not in probe_line and "HTTP 503" in probe_line, probe_line
        warning = err.index("The API looks down")
        assert warning < err.index("Now reset the key")  # said before the operator resets anything
        assert "--accept-unprobed" in err[warning:]
    finally:
        run.send("\n")
        run.wait(30)


# -- notifications from the CLI (issue 13) --------------------------------------


class Receiver:
    """A notification receiver on loopback: keeps each JSON body, answers 200."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler

        from rotator.testing._http import LoopbackServer

        got = self.bodies = []  # type: list[dict[str, object]]

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def do_POST(self) -> None:
                got.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = LoopbackServer("127.0.0.1", 0, Handler).start_background("notify-receiver")
        self.url = f"{self.server.url}/hook"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_rotate_and_sync_notify_and_a_failed_notification_never_fails_the_run(
    tmp_path: Path, standin: AdjutorStandIn
) -> None:
    receiver = Receiver()
    try:
        old = standin.current_key
        for f in ("store.env", "app.env"):
            (tmp_path / f).write_text(f"ADJUTOR_API_KEY={old}\n")
        data = plans.plan(
            "notified",
            probe=plans.adjutor_probe(standin.models_url),
            backends=[
                plans.envfile("store", tmp_path / "store.env", primary=True),
                plans.envfile("app", tmp_path / "app.env"),
            ],
        )
        data["notify"] = [
            {"type": "webhook", "name": "pager", "url": {"env": "PAGER_URL"}, "hmac_key": {"env": "PAGER_KEY"}},
            {"type": "slack", "name": "gone", "url": {"env": "GONE_URL"}, "retries": 0},
        ]
        plan = plans.write_plan(tmp_path / "plan.toml", data)
        env = lc.rotator_env(
            PAGER_URL=receiver.url, PAGER_KEY="p" * 32, GONE_URL=f"http://127.0.0.1:{free_port()}/services/x"
        )
        new = standin.reset()
        r = lc.cli("rotate", str(plan), "--key-stdin", "--json", input=new + "\n", env=env)
        assert r.returncode == 0, r.stderr  # the dead Slack hook does not fail the rotation
        (sent,) = receiver.bodies
        assert sent["event"] == "rotate.succeeded" and sent["new_fingerprint"] == fingerprint(new)
        failed = [x for x in r.stderr.splitlines() if x.startswith("! notification")]
        assert len(failed) == 1 and failed[0].startswith("! notification gone (slack) failed:"), r.stderr
        notes = {n["name"]: n["status"] for n in json.loads(r.stdout)["notifications"]}
        assert notes == {"pager": "sent", "gone": "failed"}
        assert not lc.find(r.stdout + r.stderr + json.dumps(receiver.bodies), [new], "output")

        # A sync that finds nothing to change is not news; one that repairs a backend is.
        assert lc.cli("sync", str(plan), env=env).returncode == 0
        assert len(receiver.bodies) == 1
        (tmp_path / "app.env").write_text(f"ADJUTOR_API_KEY={old}\n")
        synced = lc.cli("sync", str(plan), env=env)
        assert synced.returncode == 0, synced.stderr
        assert "every backend matches the primary (1 written)" in synced.stderr  # a sync reports as a sync
        assert "key received: fingerprint" not in synced.stderr and "the new key" not in synced.stderr
        # A repairing sync is drift: its own event, naming the backend with its fingerprint before and after.
        assert [b["event"] for b in receiver.bodies] == ["rotate.succeeded", "sync.drift_repaired"]
        assert [d["backend"] for d in receiver.bodies[1]["drift"]] == ["app"]
    finally:
        receiver.server.stop()


# -- CLI habits (issue 13) ------------------------------------------------------


def test_cli_habits(tmp_path: Path) -> None:
    bare = lc.cli()
    assert bare.returncode == 0 and "Usage: rotator" in bare.stdout and "ROTATOR_DATA_DIR" in bare.stdout
    assert lc.cli("-V").stdout.startswith("rotator, version ")
    unknown = lc.cli("rotat")
    assert unknown.returncode == Exit.PLAN_INVALID and "rotator -h" in unknown.stderr
    helptext = lc.cli("--help").stdout
    for var in (
        "ROTATOR_DB",
        "ROTATOR_DATA_DIR",
        "ROTATOR_API_TOKEN",
        "ROTATOR_API_TOKEN_FILE",
        "ROTATOR_HOST",
        "ROTATOR_PORT",
    ):
        assert var in helptext, var

    good = two_envfiles(tmp_path, "habits")
    (tmp_path / "typo.toml").write_text(
        good.read_text().replace("[secret]", '[probe]\nurl = "https://x.invalid/"\ncheck_old_keys = true\n\n[secret]')
    )
    both = lc.cli("check", str(tmp_path), "-o", "json")
    assert both.returncode == Exit.PLAN_INVALID
    assert "probe.check_old_keys: unknown key (did you mean `check_old_key`?)" in both.stderr
    result = json.loads(both.stdout)
    assert result["schema"] == 1 and [p["ok"] for p in result["plans"]] == [True, False]
    assert "1 backend" not in lc.cli("check", str(good)).stdout  # two backends, no consumers: plural right
    assert "2 backends, 0 consumers" in lc.cli("check", str(good)).stdout

    # -q and -v after the subcommand; -q really quiet on success.
    quiet = lc.cli("sync", str(good), "-q", "-v")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.strip() == ""
    assert json.loads(lc.cli("plugins", "--output", "json").stdout)["plugins"]
    targets = json.loads(lc.cli("plugins", "--plan", str(good), "--json").stdout)["targets"]
    assert [(t["name"], t["primary"]) for t in targets] == [("store", True), ("app", False)]

    script = lc.cli("completion", "bash")
    assert script.returncode == 0 and "_ROTATOR_COMPLETE" in script.stdout
    done = subprocess.run(
        [sys.executable, "-m", "rotator"],
        env=lc.rotator_env(_ROTATOR_COMPLETE="bash_complete", COMP_WORDS="rotator rot", COMP_CWORD="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "rotate" in done.stdout


def test_demo_keep_leaves_a_plan_that_can_really_be_rerun(tmp_path: Path) -> None:
    import re
    import urllib.request

    demo = lc.start("demo", "--mode", "single", "--keep", logs=tmp_path / "logs")
    try:
        # What a person reads is on stdout (`./demo --keep | less`).
        lc.wait_for("the demo kept running", lambda: "keep running until Ctrl-C" in demo.out, timeout=90, proc=demo)
        root = Path(re.search(r"working directory (\S+)", demo.out).group(1))  # type: ignore[union-attr]
        api = re.search(r"started the Adjutor stand-in on (\S+)", demo.out).group(1)  # type: ignore[union-attr]
        assert f"cd {root}\n" in demo.out and f"export ROTATOR_DB=sqlite:///{root / 'journal.db'}\n" in demo.out
        assert "rotator rotate demo.toml" in demo.out
        token = (root / "admin.token").read_text().strip()
        assert oct((root / "admin.token").stat().st_mode & 0o777) == "0o600"
        request = urllib.request.Request(f"{api}/_admin/reset", method="POST", headers={"X-Admin-Token": token})
        with urllib.request.urlopen(request, timeout=10) as resp:
            new = json.loads(resp.read())["key"]
        again = lc.cli(
            "--db",
            f"sqlite:///{root / 'journal.db'}",
            "rotate",
            str(root / "demo.toml"),
            "--key-stdin",
            "--json",
            input=new + "\n",
        )
        assert again.returncode == 0, again.stderr
        assert {t["name"]: t["status"] for t in json.loads(again.stdout)["targets"]}["api"] == "ok"
        demo.proc.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0, demo.err
    finally:
        if demo.proc.poll() is None:
            demo.kill()
    assert not lc.find(again.stdout + again.stderr + demo.out, [new], "output")


def test_json_on_failure_is_still_one_object_on_stdout(tmp_path: Path) -> None:
    plan = two_envfiles(tmp_path, "json-fail")
    bad = plans.write_plan(
        tmp_path / "bad.toml",
        plans.plan("json-fail", backends=[plans.envfile("store", tmp_path / "store.env")]),
    )
    r = lc.cli("rotate", str(bad), "--key-stdin", "-o", "json")
    assert r.returncode == Exit.PLAN_INVALID
    body = json.loads(r.stdout)
    assert body == {
        "schema": 1,
        "problems": [f"{bad}: backends: exactly one backend needs primary = true (found 0)"],
        "error": f"{bad}: backends: exactly one backend needs primary = true (found 0)",
        "exit_code": 2,
    }
    (tmp_path / "app.env").unlink()
    (tmp_path / "app.env").mkdir()  # not a file: arm refuses it
    r = lc.cli("rotate", str(plan), "--key-stdin", "--json")
    assert r.returncode == Exit.PREFLIGHT_FAILED, r.stderr
    body = json.loads(r.stdout)
    assert body["exit_code"] == Exit.PREFLIGHT_FAILED and body["error"].startswith("not armed: app: ")
    assert "Now reset the key" not in r.stderr
