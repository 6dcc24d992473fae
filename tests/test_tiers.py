"""The tiers' guard: a `unit` test that starts a subprocess or binds a socket fails, naming the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.timing import scaled

ROOT = Path(__file__).resolve().parent.parent

CASES = """
import asyncio, multiprocessing, socket, subprocess, pytest

@pytest.mark.unit
def test_runs_a_subprocess():
    subprocess.run(["true"], check=True)

@pytest.mark.unit
def test_binds_a_socket():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))

@pytest.mark.unit
def test_starts_a_process_from_asyncio():
    async def go():
        p = await asyncio.create_subprocess_exec("true")
        await p.wait()
    asyncio.run(go())

@pytest.mark.unit
def test_stays_in_process():
    assert sum(range(10)) == 45

@pytest.mark.process
def test_a_process_test_may():
    subprocess.run(["true"], check=True)

def test_unmarked_is_process():
    subprocess.run(["true"], check=True)
"""


def test_a_unit_test_that_starts_a_process_or_a_server_fails(tmp_path: Path) -> None:
    (tmp_path / "test_cases.py").write_text(CASES)
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.tiers", "-c", "/dev/null", "--rootdir", str(tmp_path),
         "-n", "0", "-q", "-p", "no:cacheprovider", "-rf", str(tmp_path / "test_cases.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "3 failed, 3 passed" in out, out
    failed = sorted(line.split("::")[1].split(" ")[0] for line in out.splitlines() if line.startswith("FAILED"))
    assert failed == ["test_binds_a_socket", "test_runs_a_subprocess", "test_starts_a_process_from_asyncio"], out
    assert "Mark it `process`" in out
