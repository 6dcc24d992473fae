"""Helpers for the reliability suites (crash and resume, faults, leaks, bad input).

* The canary scanner: every form a key can take on its way out (as is, base64
  standard and urlsafe at each of the three byte offsets, URL-encoded, hex,
  reversed, and any 16-character piece of it), searched in text, bytes, files,
  trees and the journal database.
* The CLI as an operator runs it (a real subprocess), with its output in files
  so a killed process leaves them readable, and polling helpers for the journal.
* Loopback services: a webhook consumer that can fail, hang, or report a stale
  fingerprint; and a third-party-style plugin package whose backends echo the
  key in their exceptions (found by rotator through its entry points).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

from rotator.journal import Journal, RotationRow, data_dir
from rotator.secret import fingerprint
from rotator.testing._http import LoopbackServer
from tests import forkserver
from tests.timing import scaled

T = TypeVar("T")

PIECE = 16  # a run of this many characters of a key, found anywhere, is a leak


# -- the canary scanner --------------------------------------------------------


def _b64_core(raw: bytes, offset: int, alphabet: Callable[[bytes], bytes]) -> bytes:
    """The base64 characters that depend only on `raw` when it starts `offset` bytes into a stream."""
    enc = alphabet(b"\0" * offset + raw).rstrip(b"=")
    start = -(-offset * 4 // 3)  # ceil(4 * offset / 3)
    end = (offset + len(raw)) * 4 // 3
    return enc[start:end]


def forms(canary: str) -> dict[str, bytes]:
    """Every encoding of `canary` the scanner looks for, by name."""
    raw = canary.encode()
    out = {"raw": raw, "reversed": raw[::-1], "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode()}
    out["url"] = quote(canary, safe="").encode()
    out["url+"] = quote_plus(canary).encode()
    for offset in range(3):
        out[f"base64@{offset}"] = _b64_core(raw, offset, base64.b64encode)
        out[f"urlsafe-base64@{offset}"] = _b64_core(raw, offset, base64.urlsafe_b64encode)
    return out


def _pieces(canary: str) -> set[bytes]:
    raw = canary.encode()
    return {raw[i : i + PIECE] for i in range(max(1, len(raw) - PIECE + 1))}


_FOLD = {ord(c): None for c in " \t\r\n│┃|─━"}  # rich may fold a long value over lines of a table


def find(data: bytes | str, canaries: Iterable[str], where: str) -> list[str]:
    """Where each canary (in any form, or a piece of one) occurs in `data`; [] when clean."""
    blob = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    folded = blob.decode("utf-8", "replace").translate(_FOLD).encode()
    hits = []
    for canary in canaries:
        for name, form in forms(canary).items():
            if form and (form in blob or form in folded):
                hits.append(f"{where}: canary {canary[:10]}… as {name}")
        if not any(h.startswith(f"{where}: canary {canary[:10]}") for h in hits):
            for piece in _pieces(canary):
                if piece in blob or piece in folded:
                    hits.append(f"{where}: a {PIECE}-character piece of canary {canary[:10]}…")
                    break
    return hits


def scan_tree(root: Path, canaries: Iterable[str], *, allowed: Iterable[Path] = ()) -> list[str]:
    """Every file under `root` except the `allowed` ones (the intended backends)."""
    canaries = list(canaries)
    keep = {Path(p).resolve() for p in allowed}
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.resolve() not in keep:
            hits += find(path.read_bytes(), canaries, str(path))
    return hits


def journal_files() -> list[Path]:
    """The journal database and its WAL and shared-memory files, as they are on disk now."""
    return sorted(data_dir().glob("journal.db*"))


def scan_journal(canaries: Iterable[str]) -> list[str]:
    canaries = list(canaries)
    files = journal_files()
    assert any(p.name == "journal.db" for p in files), "no journal database to scan"
    hits = []
    for p in files:
        hits += find(p.read_bytes(), canaries, p.name)
    return hits


def canary() -> str:
    """A fresh random key shaped like Adjutor's (``sk_test_`` and 40 letters and digits)."""
    from rotator.testing.adjutor import new_key

    return new_key()


# -- the CLI in a subprocess ---------------------------------------------------


def rotator_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def cli(
    *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """`rotator ARGS...` as a user runs it (through the fork server); stdin is `input` (bytes for binary pastes)."""
    data = input.encode("utf-8", "surrogateescape") if isinstance(input, str) else input
    r = subprocess.run(
        [*forkserver.command(), *args],
        input=data if data is not None else b"",
        capture_output=True,
        env=env or rotator_env(),
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        r.args, r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    )


@dataclass
class Running:
    """A `rotator` process started in the background, its output going to files."""

    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.close()

    def wait(self, timeout: float = 90) -> int:
        return self.proc.wait(scaled(timeout))

    def kill(self) -> int:
        self.proc.kill()  # SIGKILL: no cleanup, no journal update, no lock release
        code = self.proc.wait(10)
        forkserver.settled(self.proc.pid)  # and rotator itself is gone, not only the stub
        return code

    @property
    def out(self) -> str:
        return self.stdout.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.read_text(errors="replace")


def start(*args: str, logs: Path, env: dict[str, str] | None = None, own_pid: bool = False) -> Running:
    """`rotator ARGS...` in the background; `own_pid`: exec'd, so `proc.pid` is rotator's own
    (through the fork server it is the stub's)."""
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / "stdout.txt", logs / "stderr.txt"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [*forkserver.command(own_pid), *args],
            stdin=subprocess.PIPE,
            stdout=o,
            stderr=e,
            env=env or rotator_env(),
        )
    return Running(proc, out, err)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0, proc: Running | None = None) -> T:
    """Poll `probe` until it returns something truthy (no fixed sleeps); `timeout` is scaled."""
    until = time.monotonic() + scaled(timeout)
    while True:
        got = probe()
        if got:
            return got
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"rotator exited ({proc.proc.returncode}) before {what}:\n{proc.err}")
        if time.monotonic() > until:
            raise AssertionError(f"timed out waiting for {what}" + (f":\n{proc.err}" if proc else ""))
        time.sleep(0.02)


def latest(plan: str) -> RotationRow | None:
    rows = Journal().history(plan, 1)
    return rows[0] if rows else None


def armed(plan: str) -> Callable[[], RotationRow | None]:
    """True once the newest rotation of `plan` journaled its arm step (it waits for the key now)."""

    def probe() -> RotationRow | None:
        row = latest(plan)
        if row is None:
            return None
        return row if any(e["step"] == "arm" for e in Journal().events(row.id)) else None

    return probe


def in_state(plan: str, state: str) -> Callable[[], RotationRow | None]:
    def probe() -> RotationRow | None:
        row = latest(plan)
        return row if row is not None and row.state == state else None

    return probe


def one_line(stderr: str) -> str:
    """The single error line rotator ends with; no traceback anywhere."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "no error line"
    return lines[-1]


def env_fp(path: Path, variable: str = "ADJUTOR_API_KEY") -> str | None:
    from dotenv import dotenv_values

    value = dotenv_values(path).get(variable)
    return fingerprint(value) if value else None


# -- a webhook consumer on loopback -------------------------------------------


@dataclass
class Hook:
    """A consumer's reload webhook and confirm endpoint.

    `fail` answers that many POSTs with 500 first; `hang` makes each POST take
    that long; `stale` keeps reporting the old fingerprint whatever it is told.
    """

    reports: str | None = None  # the fingerprint GET answers
    fail: int = 0
    hang: float = 0.0
    stale: bool = False
    posts: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    _server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"{self._server.url}/reload"

    @property
    def confirm_url(self) -> str:
        return self.url.replace("/reload", "/fingerprint")

    def __enter__(self) -> Hook:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def _send(self, status: int, body: bytes = b"") -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self) -> None:
                self._send(204)

            def do_GET(self) -> None:
                self._send(200, json.dumps({"fingerprint": hook.reports}).encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.posts += 1
                if hook.hang:
                    time.sleep(hook.hang)
                if hook.fail > 0:
                    hook.fail -= 1
                    self._send(500)
                    return
                event = json.loads(body)
                hook.received.append(event)
                if not hook.stale:
                    hook.reports = event["fingerprint"]
                self._send(204)

        self._server = LoopbackServer("127.0.0.1", 0, Handler).start_background("leak-hook")
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.stop()


# -- a third-party plugin package whose backends echo the key ------------------

LEAKY_PACKAGE = "rotator_leaky_demo"
LEAKY_MODULE = '''
"""Backends that fail the way careless third-party code does: the key in the message."""
import logging

from rotator.plugin import Backend, Check, PluginError, Stored, Written

_STORE = {}
log = logging.getLogger("rotator_leaky_demo")


class _Echo(Backend):
    can_be_primary = False

    async def preflight(self):
        return Check(True, "ready")

    async def read(self):
        return Stored(_STORE.get(self.name))


class EchoRuntime(_Echo):
    async def write(self, secret, *, token, expected_version):
        log.error("storing %s failed", secret.reveal(), exc_info=RuntimeError(secret.reveal()))
        raise RuntimeError(f"bad value {secret.reveal()}")


class EchoPluginError(_Echo):
    async def write(self, secret, *, token, expected_version):
        raise PluginError(f"store refused the value {secret.reveal()!r} (url=https://x/?k={secret.reveal()})")
'''


def leaky_plugin_site(site: Path) -> Path:
    """Install (as an installer would: package + .dist-info with entry points) the echoing backends
    `echo-runtime` and `echo-pluginerror` into `site`; put `site` on PYTHONPATH to use them."""
    pkg = site / LEAKY_PACKAGE
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(LEAKY_MODULE)
    info = site / f"{LEAKY_PACKAGE}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rotator-leaky-demo\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[rotator.backends]\n"
        f"echo-runtime = {LEAKY_PACKAGE}:EchoRuntime\n"
        f"echo-pluginerror = {LEAKY_PACKAGE}:EchoPluginError\n"
    )
    return site
