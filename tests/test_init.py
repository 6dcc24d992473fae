"""`rotator init`: a starter plan that passes `rotator check` as written, its placeholders named."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rotator.exitcodes import Exit
from rotator.starter import ALTERNATING_PRIMARIES, Primary

ROTATOR = [sys.executable, "-m", "rotator"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ROTATOR, *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60
    )


def test_every_starter_plan_passes_rotator_check_and_names_its_placeholders(tmp_path: Path) -> None:
    files = []
    for primary in Primary:
        for alternating in (False, True):
            if alternating and primary not in ALTERNATING_PRIMARIES:
                continue
            name = f"{primary}-{'alt' if alternating else 'single'}.toml"
            proc = run("init", name, "--primary", primary, *(["--alternating"] if alternating else []), cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr
            assert f"primary {primary}" in proc.stdout and "CHANGE-ME" in proc.stdout
            assert "CHANGE-ME" in (tmp_path / name).read_text()
            files.append(name)
    assert len(files) == 7
    check = run("check", *files, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.count(": ok (") == 7
    hints = [line for line in check.stdout.splitlines() if "is a placeholder (CHANGE-ME)" in line]
    assert len(hints) >= 7  # at least one a plan
    assert any("secret.apps is a placeholder" in h for h in hints)


def test_without_a_terminal_or_flag_the_primary_is_an_env_file(tmp_path: Path) -> None:
    proc = run("init", "plan.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'type = "envfile"' in (tmp_path / "plan.toml").read_text()
    assert "strategy" not in (tmp_path / "plan.toml").read_text()


def test_an_existing_file_is_kept_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "plan.toml").write_text("mine\n")
    proc = run("init", "plan.toml", cwd=tmp_path)
    assert proc.returncode == Exit.PLAN_INVALID
    assert proc.stderr.strip() == "rotator: plan.toml: already exists; give another path, or --force to overwrite it"
    assert (tmp_path / "plan.toml").read_text() == "mine\n"
    assert run("init", "plan.toml", "--force", cwd=tmp_path).returncode == 0


def test_alternating_needs_a_primary_that_can_hold_a_standby(tmp_path: Path) -> None:
    proc = run("init", "k.toml", "--alternating", "--primary", "kubernetes", cwd=tmp_path)
    assert proc.returncode == Exit.PLAN_INVALID
    assert "needs a primary that can hold a standby key" in proc.stderr
    assert not (tmp_path / "k.toml").exists()


@pytest.mark.timeout(60)
def test_on_a_terminal_it_asks(tmp_path: Path) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: rotator on a real terminal
        os.chdir(tmp_path)
        os.execv(sys.executable, [*ROTATOR, "init", "asked.toml"])
    seen = b""

    def wait_for(text: bytes) -> None:
        nonlocal seen
        end = time.monotonic() + 30
        while text not in seen and time.monotonic() < end:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
        assert text in seen, seen.decode(errors="replace")

    wait_for(b"[y/N]")
    os.write(fd, b"y\n")
    wait_for(b"(envfile, vault, aws)")
    os.write(fd, b"aws\n")
    wait_for(b"then: rotator check asked.toml")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    text = (tmp_path / "asked.toml").read_text()
    assert 'strategy = "alternating"' in text and 'type = "aws"' in text
