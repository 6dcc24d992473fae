"""`rotator demo --keep`, as a new user goes on by hand: the stand-in and consumers stay up in
either mode, the printed commands work as printed, and SIGTERM (or Ctrl-C) stops everything.
Human output is on stdout (`./demo | less` shows it)."""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROTATOR = Path(sys.executable).parent / "rotator"


def start_kept(mode: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotator", "demo", "--mode", mode, "--keep", "--pause", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen = ""
    end = time.monotonic() + 120
    while "keep running until Ctrl-C" not in seen and time.monotonic() < end and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            seen += os.read(proc.stdout.fileno(), 65536).decode()  # unbuffered: select sees what is left
    if "keep running until Ctrl-C" not in seen:
        proc.terminate()  # SIGTERM: the demo stops its stand-in and consumers too
        proc.wait(timeout=30)
        raise AssertionError(seen + proc.stderr.read())  # type: ignore[union-attr]
    return proc, seen


def by_hand(commands: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", " && ".join(commands)], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def stopped(proc: subprocess.Popen[str], api: str) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(api + "/v2/decisioning/models", timeout=2)  # the stand-in is gone too


def printed(seen: str) -> tuple[Path, dict[str, str], list[str]]:
    """The kept directory, the environment its lines export, and the command lines."""
    lines = [line.strip() for line in seen.splitlines() if line.startswith("  ")]
    root = Path(next(line for line in lines if line.startswith("cd "))[3:])
    env = dict(os.environ)
    for line in lines:
        if line.startswith("export "):
            name, _, value = line[7:].partition("=")
            env[name] = shlex.split(value.replace("$PATH", env.get("PATH", "")))[0]
    return root, env, [line.split("  #")[0].strip() for line in lines if line.startswith(("rotator ", "curl "))]


@pytest.mark.timeout(240)
def test_alternating_keep_leaves_a_world_the_printed_commands_drive() -> None:
    proc, seen = start_kept("alternating")
    try:
        root, env, commands = printed(seen)
        assert {c.split()[1] for c in commands if c.startswith("rotator ")} >= {"status", "rotate", "rekey", "rollback"}
        status = by_hand([c for c in commands if c.startswith("rotator status")], root, env)
        assert status.returncode == 0, status.stderr
        assert "active" in status.stdout and "standby" in status.stdout and "works" in status.stdout
        curl = next(c for c in commands if c.startswith("curl "))
        api = re.search(r"(http://127\.0\.0\.1:\d+)/_admin/reset", curl).group(1)  # type: ignore[union-attr]
        # The printed reset request works as printed (with the app rotator would name).
        active = re.search(r"active\s+(\S+)", status.stdout).group(1)  # type: ignore[union-attr]
        standby = "payments-green" if active == "payments-blue" else "payments-blue"
        reset = by_hand([curl.replace('"APP"', f'"{standby}"')], root, env)
        assert reset.returncode == 0, reset.stderr
        assert json.loads(reset.stdout)["key"].startswith("sk_")
    finally:
        if proc.poll() is None:
            stopped(proc, api)
    assert proc.returncode == 0


@pytest.mark.timeout(240)
def test_single_keep_prints_what_to_run_and_its_rotation_arms() -> None:
    proc, seen = start_kept("single")
    try:
        root, env, commands = printed(seen)
        assert "rotator rotate demo.toml" in commands
        curl = next(c for c in commands if c.startswith("curl "))
        api = re.search(r"(http://127\.0\.0\.1:\d+)/_admin/reset", curl).group(1)  # type: ignore[union-attr]
        history = by_hand(["rotator history --plan demo.toml"], root, env)
        assert history.returncode == 0 and "adjutor-demo" in history.stdout, history.stderr
        # A second rotation by hand: the printed reset request, its key piped in.
        take_key = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"key\"])'"
        again = by_hand([f"{curl} | {take_key} | rotator rotate demo.toml --key-stdin --reason 'by hand'"], root, env)
        assert again.returncode == 0, again.stderr
        assert "every target holds the new key" in again.stdout + again.stderr
        # the report and the consumers' lines were printed on stdout, for `./demo | less`
        assert "consumer api:" in seen and "window" in seen
    finally:
        if proc.poll() is None:
            stopped(proc, api)


@pytest.mark.timeout(120)
def test_a_terminated_demo_leaves_no_process_behind() -> None:
    """SIGTERM in the middle of the demo (not kept): its stand-in and consumers stop with it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotator", "demo", "--mode", "single", "--pause", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen = ""
    end = time.monotonic() + 60
    while "copying and pasting the new key takes" not in seen and time.monotonic() < end and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            seen += os.read(proc.stdout.fileno(), 65536).decode()
    assert "copying and pasting the new key takes" in seen, seen
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", seen)]
    api = re.search(r"stand-in on (http://\S+)", seen).group(1)  # type: ignore[union-attr]
    assert len(pids) == 2
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            for _ in range(50):  # reaped by the demo: gone, not a zombie of ours
                os.kill(pid, 0)
                time.sleep(0.1)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(api + "/v2/decisioning/models", timeout=2)
