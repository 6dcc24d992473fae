"""The fork server (tests/forkserver.py) is `python -m rotator` to a test: the same output and
exit codes, the stub's stdin, environment and directory, signals forwarded, a killed stub
taking its command with it, and an exec whenever Python would start differently."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rotator.testing import AdjutorStandIn
from tests import forkserver
from tests.test_service import ServiceProc, write_plan
from tests.timing import scaled, wait_until

EXEC = forkserver.EXEC


def _run(cmd: list[str], *args: str, **kw: Any) -> tuple[int, str, str]:
    r = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=scaled(60), **kw)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("help", "exit-codes"),
        ("check", "no-such-plan.toml"),  # one line and exit 2
        ("rotate",),  # click's usage error
        ("history", "--json"),  # an empty journal
    ],
)
def test_the_same_output_and_exit_code_as_an_exec(args: tuple[str, ...], tmp_path: Path) -> None:
    env = {**os.environ, "ROTATOR_DATA_DIR": str(tmp_path)}
    assert _run(forkserver.command(), *args, env=env) == _run(EXEC, *args, env=env)


def test_the_stubs_directory_environment_and_stdin(tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    db = tmp_path / "elsewhere.db"
    env = {**os.environ, "ROTATOR_DB": f"sqlite:///{db}", "ROTATOR_DATA_DIR": str(tmp_path / "data")}
    code, out, err = _run(forkserver.command(), "history", "--json", env=env, cwd=tmp_path / "here")
    assert code == 0, err
    assert json.loads(out)["rotations"] == [] and db.exists()  # ROTATOR_DB reached the command
    code, _, err = _run(forkserver.command(), "check", "plan.toml", cwd=tmp_path / "here")
    assert code == 2 and "plan.toml" in err  # relative to the stub's directory
    (tmp_path / "here" / "plan.toml").write_text("not = [toml\n")
    code, _, err = _run(forkserver.command(), "check", "plan.toml", cwd=tmp_path / "here")
    assert code == 2 and "plan.toml" in err and "not found" not in err
    r = subprocess.run(
        [*forkserver.command(), "check", "-"], input="", capture_output=True, text=True, timeout=scaled(60)
    )
    assert (r.returncode, r.stdout, r.stderr) == _run(EXEC, "check", "-", input="")


def _serve(tmp_path: Path, standin: AdjutorStandIn, own_pid: bool = False) -> ServiceProc:
    """`rotator serve` up (uvicorn's startup complete: its signal handlers are in place), its
    output read all along; exec'd with `own_pid`, else through the fork server."""
    write_plan(tmp_path, standin)
    svc = ServiceProc(["--plans", str(tmp_path / "plans"), "--db", f"sqlite:///{tmp_path / 'j.db'}"], own_pid=own_pid)
    svc.wait_ready(30)
    return svc


def _connect(url: str) -> bool | None:
    """True: a connection was taken; False: refused (nothing listens); None: no answer in 5 s."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return False
    except OSError:
        return None
    return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_reaches_the_command_and_its_exit_is_the_stubs(
    sig: int, tmp_path: Path, standin: AdjutorStandIn
) -> None:
    codes = []
    for own_pid in (False, True):
        svc = _serve(tmp_path, standin, own_pid)
        svc.proc.send_signal(sig)
        try:
            codes.append(svc.proc.wait(scaled(30)))
        except subprocess.TimeoutExpired:
            svc.proc.kill()
            raise AssertionError(f"serve (exec'd: {own_pid}) did not end on {sig}:\n{svc.output()}") from None
    assert codes[0] == codes[1]


def test_a_killed_stub_takes_its_command_with_it(tmp_path: Path, standin: AdjutorStandIn) -> None:
    svc = _serve(tmp_path, standin)
    url = svc.url
    try:
        wait_until("serve to take a connection", lambda: _connect(url), timeout=30)
    finally:
        svc.proc.kill()  # also when the wait fails: no serve left behind
    assert svc.proc.wait(10) == -signal.SIGKILL
    forkserver.settled(svc.proc.pid)
    assert _connect(url) is False  # refused: serve is gone once settled() returns


def test_a_sitecustomize_on_pythonpath_runs_as_at_start_up(tmp_path: Path) -> None:
    """The crash tests' kill hook and the toy flow are a `sitecustomize` on PYTHONPATH."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.stderr.write(f'customized before rotator: {\"rotator.cli\" not in sys.modules}\\n')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    forked, execd = _run(forkserver.command(), "--version", env=env), _run(EXEC, "--version", env=env)
    assert forked == execd == (0, execd[1], "customized before rotator: True\n")
