"""What both halves of the demo use: the consumers' signing key's variable, waiting for a
child's ready file, a loopback JSON call, writing an env file (mode 0600), and the targets.

Its own module so that `run` (which starts the alternating half) and `alternating` (which
uses these) import it, not each other."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from rotator.testing import plans

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
