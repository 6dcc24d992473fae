"""The leak suite: a fresh random canary key through every path a rotation can
take, with debug logging on, then a scan of everything rotator left behind for
the canary in any form (tests/leakcheck.py: as is, base64 standard and urlsafe
at each byte offset, URL-encoded, hex, reversed, or any 16-character piece).

Scanned: stdout and stderr (the --json report is stdout), `rotator show --json`
and `rotator history --json`, the journal database with its -wal and -shm
files, what consumers were sent, and every file under the test's directories
except the two .env files that are the plan's intended backends.

Paths: success; a refused key (also by an API that echoes the key it refuses);
probe unavailable; partial failure; SIGKILL during the fan-out, then resume;
third-party backends whose exceptions echo the key (a RuntimeError, and a
PluginError whose text rotator must scrub); an env file's temp file left by a
write that was killed before its rename.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from rotator.exitcodes import Exit
from rotator.journal import data_dir
from rotator.testing import ROOT, VaultServer, plans
from rotator.testing._http import LoopbackServer
from rotator.testing.adjutor import AdjutorStandIn

try:
    from tests import leakcheck as lc
except ImportError:
    import leakcheck as lc  # type: ignore[no-redef]

TOKEN = "leaks-vault-token"

# Third-party backends (lc.leaky_plugin_site) that put the key in their exceptions.
ECHO_BACKENDS = [
    {"name": "echo-rt", "type": "echo-runtime", "retries": 1},
    {"name": "echo-pe", "type": "echo-pluginerror", "retries": 1},
]

RELOAD = """
import os, pathlib
(pathlib.Path(__file__).parent / "reloaded").write_text(os.environ["ROTATOR_FINGERPRINT"])
"""


class EchoAPI:
    """An API that refuses every key and quotes it back in its error message."""

    def __enter__(self) -> EchoAPI:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                body = json.dumps({"status": "error", "message": f"Invalid token {token} for this app"}).encode()
                self.send_response(401)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = LoopbackServer("127.0.0.1", 0, Handler).start_background("echo-api")
        return self

    @property
    def url(self) -> str:
        return f"{self.server.url}/v2/decisioning/models"

    def __exit__(self, *_: object) -> None:
        self.server.stop()


@dataclass
class World:
    tmp: Path
    standin: AdjutorStandIn
    vault: VaultServer
    hook: lc.Hook
    old: str
    env: dict[str, str]
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (what, text) to scan
    canaries: list[str] = field(default_factory=list)

    def plan(self, *, probe_url: str | None = None, extra: list[dict[str, Any]] | None = None) -> Path:
        """The .env primary, a Vault mirror, the app's .env (and `extra` backends); a webhook and a command."""
        return plans.write_plan(
            self.tmp / "plan.toml",
            plans.plan(
                "leaks",
                probe=plans.adjutor_probe(
                    probe_url or self.standin.models_url, check_old_key=True, retries=1, backoff=0.01
                ),
                backends=[
                    plans.envfile("store", self.tmp / "store.env", primary=True),
                    plans.vault(
                        "vault", self.vault.url, "apps/billing", token_env="LEAKS_VAULT_TOKEN", timeout=60, retries=2
                    ),
                    plans.envfile("app", self.tmp / "app/.env"),
                    *(extra or []),
                ],
                consumers=[
                    plans.webhook(
                        "hook",
                        self.hook.url,
                        hmac_env="LEAKS_HOOK_KEY",
                        confirm_url=self.hook.confirm_url,
                        reads_from=["app"],
                    ),
                    plans.command("reloader", [sys.executable, self.tmp / "reload.py"], retries=0),
                ],
            ),
        )

    def cli(self, *args: str, input: str | None = None, code: int | None = None) -> Any:
        r = lc.cli("-vv", *args, input=input, env=self.env)
        self.outputs += [(f"{args[0]} stdout", r.stdout), (f"{args[0]} stderr", r.stderr)]
        if code is not None:
            assert r.returncode == code, r.stderr
        return r

    def rotate(self, plan: Path, key: str, code: int) -> dict[str, Any]:
        self.canaries.append(key)
        r = self.cli("rotate", str(plan), "--key-stdin", "--json", input=key + "\n", code=code)
        return json.loads(r.stdout)

    def scan(self, root: Path) -> list[str]:
        """Everything rotator left behind, for every canary of this test."""
        canaries = [self.old, *self.canaries]
        hits = []
        for what, text in self.outputs:
            hits += lc.find(text, canaries, what)
        hits += lc.find(json.dumps(self.hook.received), canaries, "webhook payloads")
        hits += lc.scan_journal(canaries)
        hits += lc.scan_tree(data_dir(), canaries)
        hits += lc.scan_tree(root, canaries, allowed=[self.tmp / "store.env", self.tmp / "app" / ".env"])
        return hits


@pytest.fixture
def world(tmp_path: Path, standin: AdjutorStandIn) -> Iterator[World]:
    tmp = tmp_path / "w"
    (tmp / "app").mkdir(parents=True)
    old = standin.current_key
    for f in (tmp / "store.env", tmp / "app" / ".env"):
        f.write_text(f"ADJUTOR_API_KEY={old}\n")
    (tmp / "reload.py").write_text(RELOAD)
    site = lc.leaky_plugin_site(tmp_path / "site")
    env = lc.rotator_env(
        LEAKS_VAULT_TOKEN=TOKEN,
        LEAKS_HOOK_KEY="hook-signing-key-for-tests",
        PYTHONPATH=str(site),
    )
    with VaultServer(tokens={TOKEN: ROOT}) as vault, lc.Hook() as hook:
        vault.put("apps/billing", {"api_key": old})
        yield World(tmp, standin, vault, hook, old, env)


# -- the paths -------------------------------------------------------------------


def success(w: World) -> None:
    report = w.rotate(w.plan(), w.standin.reset(), Exit.DONE)
    assert report["state"] == "done"


def refused(w: World) -> None:
    w.standin.reset()
    report = w.rotate(w.plan(), lc.canary(), Exit.KEY_REFUSED)
    assert report["state"] == "refused"


def refused_by_an_echoing_api(w: World) -> None:
    with EchoAPI() as api:
        report = w.rotate(w.plan(probe_url=api.url), lc.canary(), Exit.KEY_REFUSED)
    assert report["probe"]["detail"] == "HTTP 401: Invalid token [REDACTED] for this app"


def unavailable(w: World) -> None:
    w.standin.unavailable = True
    report = w.rotate(w.plan(), w.standin.reset(), Exit.PROBE_UNAVAILABLE)
    assert report["state"] == "unavailable"


def partial(w: World) -> None:
    w.vault.fail_next(3, 503, contains="data/apps/billing", method="POST")
    report = w.rotate(w.plan(), w.standin.reset(), Exit.PARTIAL)
    assert {t["name"]: t["status"] for t in report["targets"]}["vault"] == "failed"
    w.cli("resume", report["id"], "--json", code=Exit.DONE)


def crash_and_resume(w: World) -> None:
    plan = w.plan()
    run = lc.start("-vv", "rotate", str(plan), "--key-stdin", "--json", logs=w.tmp.parent / "killed", env=w.env)
    lc.wait_for("arm", lc.armed("leaks"), proc=run)
    new = w.standin.reset()
    w.canaries.append(new)
    w.vault.latency = 30.0
    run.send(new + "\n")
    row = lc.wait_for("fanning_out", lc.in_state("leaks", "fanning_out"), proc=run)
    run.kill()
    w.vault.latency = 0.0
    w.outputs += [("killed stdout", run.out), ("killed stderr", run.err)]
    w.cli("rotate", str(plan), "--key-stdin", input="", code=Exit.KEY_REFUSED)  # warns; nothing written
    w.cli("resume", row.id, "--json", code=Exit.DONE)


def echoing_backends(w: World) -> None:
    report = w.rotate(w.plan(extra=ECHO_BACKENDS), w.standin.reset(), Exit.PARTIAL)
    t = {t["name"]: t for t in report["targets"]}
    # An arbitrary exception's text is never shown; a PluginError's is, scrubbed.
    assert t["echo-rt"]["detail"] == "RuntimeError (details withheld: may hold secret material)"
    assert t["echo-pe"]["detail"] == "store refused the value '[REDACTED]' (url=https://x/?k=[REDACTED])"
    assert t["echo-rt"]["attempts"] == 1 and t["echo-pe"]["attempts"] == 2  # only PluginError is retryable
    assert {t[n]["status"] for n in ("store", "vault", "app", "hook")} == {"ok"}


def killed_mid_write(w: World) -> None:
    """An earlier rotator was killed between writing an env file's temp file and renaming it:
    the temp file holds a key.  The next arm removes it (and says so)."""
    stale = w.tmp / "app" / "..env.k1ll3d.rotator-tmp"  # as _files.atomic_write names them
    key = lc.canary()
    w.canaries.append(key)
    stale.write_text(f"ADJUTOR_API_KEY={key}\n")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    w.rotate(w.plan(), w.standin.reset(), Exit.DONE)
    assert not stale.exists()
    assert "temp file(s) beside" in w.outputs[-1][1]


PATHS: dict[str, Callable[[World], None]] = {
    "success": success,
    "refused": refused,
    "refused-by-an-echoing-api": refused_by_an_echoing_api,
    "probe-unavailable": unavailable,
    "partial-then-resume": partial,
    "sigkill-then-resume": crash_and_resume,
    "echoing-backends": echoing_backends,
    "temp-file-of-a-killed-write": killed_mid_write,
}


@pytest.mark.parametrize("path", PATHS)
def test_no_canary_escapes(path: str, world: World, tmp_path: Path) -> None:
    PATHS[path](world)
    rows = json.loads(world.cli("history", "--json", code=0).stdout)["rotations"]
    for row in rows:
        world.cli("show", row["id"], "--json", code=0)
    hits = world.scan(tmp_path)
    assert not hits, "\n".join(hits)
    # The scan is not vacuous: the intended backends do hold the key (or still the old one).
    assert world.old.encode() in (world.tmp / "store.env").read_bytes() or any(
        c.encode() in (world.tmp / "store.env").read_bytes() for c in world.canaries
    )


def test_in_process_exception_texts_logs_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same echoing backends driven in-process: every text rotator derives from them (target
    details, progress lines, the report, the journal, debug logs with tracebacks) is clean."""
    import asyncio

    from rotator import pipeline, registry
    from rotator.journal import Journal
    from rotator.logs import configure
    from rotator.pipeline import arm
    from rotator.pipeline.state import RotationState
    from rotator.plan import load_plan
    from rotator.secret import Secret

    site = lc.leaky_plugin_site(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    registry.clear_cache()
    key = lc.canary()
    (tmp_path / "store.env").write_text("ADJUTOR_API_KEY=sk_test_old\n")
    plan_path = plans.write_plan(
        tmp_path / "plan.toml",
        plans.plan("inproc", backends=[plans.envfile("store", tmp_path / "store.env", primary=True), *ECHO_BACKENDS]),
    )
    logs = io.StringIO()
    configure(level="debug", stream=logs, json=True)
    progress: list[str] = []

    async def go() -> Any:
        rot = RotationState(load_plan(plan_path), Journal(), progress_fn=lambda p: progress.append(f"{p}"))
        try:
            assert (await arm.run(rot)).ok
            return await pipeline.rotate(rot, Secret(key))
        finally:
            await arm.disarm(rot)

    try:
        report = asyncio.run(go())
    finally:
        registry.clear_cache()
        configure(level="warning")
    assert report.exit_code == Exit.PARTIAL
    texts = {
        "report": json.dumps(report.as_dict()),
        "progress": "\n".join(progress),
        "logs": logs.getvalue(),
        "details": "\n".join(t.detail for t in report.targets),
    }
    assert "storing [REDACTED] failed" in texts["logs"] and "RuntimeError: [REDACTED]" in texts["logs"]
    hits = [h for what, text in texts.items() for h in lc.find(text, [key], what)]
    hits += lc.scan_journal([key])
    hits += lc.scan_tree(tmp_path, [key], allowed=[tmp_path / "store.env"])
    assert not hits, hits


def test_the_scanner_finds_every_form() -> None:
    """If the scanner were blind, the suite would prove nothing."""
    import base64
    from urllib.parse import quote

    key = lc.canary()
    raw = key.encode()
    leaks = {
        "raw": f"error: {key}!",
        "reversed": "x" + key[::-1],
        "hex": raw.hex(),
        "url": quote(f"k={key}&", safe=""),
        "folded by a table": f"│ {key[:20]}   │\n│ {key[20:]} │",
        "piece": f"...{key[5:25]}...",
    }
    for offset in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            leaks[f"{enc.__name__}@{offset}"] = enc(b"pad"[:offset] + raw + b"tail").decode()
    for name, text in leaks.items():
        assert lc.find(text, [key], name), name
        assert lc.find(text.encode(), [key], name), name
    assert not lc.find(f"fingerprint {lc.fingerprint(key)} [REDACTED]", [key], "clean")
    assert re.fullmatch(r"sk_test_[A-Za-z0-9]{40}", key)
