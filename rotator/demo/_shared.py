"""What both halves of the demo use: the consumers' signing key's variable, waiting for a
child's ready file, a loopback JSON call, writing an env file (mode 0600), the targets, and
what `--keep` leaves running.

Its own module so that `run` (which starts the alternating half) and `alternating` (which
uses these) import it, not each other."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rotator.testing import plans

if TYPE_CHECKING:
    from rich.console import Console

HOOK_ENV = "ROTATOR_DEMO_HOOK_KEY"


def _wait_ready(path: Path, proc: subprocess.Popen[bytes], what: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        if path.exists() and path.stat().st_size:
            try:
                return dict(json.loads(path.read_text()))
            except ValueError:
                pass
        time.sleep(0.01)
    raise RuntimeError(f"{what} was not ready within {timeout:.0f}s")


def _http_json(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> dict[str, Any]:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)  # noqa: S310 - loopback URL we started
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
        return dict(json.loads(resp.read()))


def _write_env(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)


def demo_targets(root: Path, api_url: str, worker_url: str) -> dict[str, Any]:
    """The demo's targets, the same in both modes: three .env stores (the first the primary),
    a webhook consumer and a SIGHUP consumer, each reading its own env file."""
    return {
        "backends": [
            plans.envfile("store", root / "store/adjutor.env", primary=True),
            plans.envfile("api-env", root / "api/.env"),
            plans.envfile("worker-env", root / "worker/.env"),
        ],
        "consumers": [
            plans.webhook(
                "api",
                f"{api_url}/reload",
                hmac_env=HOOK_ENV,
                confirm_url=f"{api_url}/fingerprint",
                reads_from=["api-env"],
            ),
            plans.signal(
                "worker",
                pidfile=str(root / "worker/worker.pid"),
                expect_cmdline="rotator.demo.consumer_app",
                confirm_url=f"{worker_url}/fingerprint",
                reads_from=["worker-env"],
            ),
        ],
    }


@dataclass
class Kept:
    """A mode's world left running by `--keep`: its processes, and the commands to go on by hand."""

    title: str
    root: Path
    procs: list[subprocess.Popen[bytes]]
    commands: list[str]


def secret_file(path: Path, value: str) -> Path:
    """A 0600 file holding `value` (the stand-in's admin token, the webhook's signing key)."""
    _write_env(path, value + "\n")
    return path


def rotator_command() -> str:
    """How to call the running rotator from another shell (`.venv/bin/rotator` after ./demo)."""
    here = Path(sys.executable).parent / "rotator"
    return str(here) if here.exists() and shutil.which("rotator") != str(here) else "rotator"


def reset_command(api: str, admin_file: Path, app: str | None = None) -> str:
    """The stand-in's 'Reset app key' as a curl (it answers with the new key to paste)."""
    body = f""" -H 'Content-Type: application/json' -d '{{"app": "{app}"}}'""" if app else ""
    return f'curl -s -X POST -H "X-Admin-Token: $(cat {admin_file})"{body} {api}/_admin/reset'


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each, then wait (SIGKILL whatever is still there after 5 s)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()


def hold(out: Console, kept: list[Kept]) -> None:
    """`--keep`: print each kept world's commands, run until Ctrl-C (or a process ends), then stop them."""
    rotator = rotator_command()
    for k in kept:
        out.print(f"\n[bold]kept ({k.title})[/]: {k.root}; to go on by hand, from another terminal:")
        setup = [f"cd {k.root}", f"export ROTATOR_DB=sqlite:///{k.root / 'journal.db'}"]
        if rotator != "rotator":
            setup.append(f'export PATH="{Path(rotator).parent}:$PATH"')
        for line in [*setup, *k.commands]:
            out.print(f"  {line}", markup=False, highlight=False)
    out.print("\nThe stand-ins and consumers keep running until Ctrl-C here.")
    out.file.flush()  # a pipe (`./demo --keep | tee log`) sees the commands now, not at exit
    procs = [p for k in kept for p in k.procs]
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.2)
        out.print("[red]a demo process ended; stopping the others[/]")
    except KeyboardInterrupt:
        out.print("stopping the stand-ins and the consumers (the directories above stay)")
    finally:
        stop(procs)


@contextlib.contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile, so the demo's `finally` blocks stop its
    children as at Ctrl-C: a terminated demo leaves no stand-in or consumer behind."""

    def _terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
