"""Consumers against real things: an HTTP service, a running process, a real command.

Each test reads like the runbook: start the consumer, arm (open + preflight),
send the reload, wait for it to report the new fingerprint.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from rotator_plugins._http_confirm import display_url
from rotator_plugins.command import CommandConsumer
from rotator_plugins.envfile import EnvFileBackend
from rotator_plugins.signal import ProcessId, SignalConsumer
from rotator_plugins.webhook import WebhookConsumer

from rotator.consumer import InvalidSignature, verify_webhook
from rotator.plugin import Confirmation, Consumer, PluginContext, PluginError, RotationEvent
from rotator.secret import Secret, fingerprint
from rotator.testing._http import LoopbackServer
from tests.timing import scaled

HMAC_KEY = "whsec_test_0123456789"
NEW_KEY = Secret("sk_live_newkey987654321")
OLD_FP = fingerprint("sk_live_oldkey123456789")


def event(fp: str = NEW_KEY.fingerprint) -> RotationEvent:
    return RotationEvent(secret_name="adjutor", fingerprint=fp, rotation_id="rot-42", timestamp=int(time.time()))


def build(cls: type[Consumer], **settings: Any) -> Any:
    return cls(cls.Settings.model_validate({"name": "c1", **settings}), PluginContext(max_threads=2))


def run(coro_fn: Callable[[], Any]) -> Any:
    """Run an async scenario, closing the plugin context's HTTP client afterwards."""
    return asyncio.run(coro_fn())


def one_line(message: str) -> bool:
    return "\n" not in message and "\r" not in message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- a consumer service over HTTP ----------------------------------------------------------


@dataclass
class Service:
    """State of the stand-in service: what it received and which key it says it uses."""

    hmac_key: bytes
    fingerprint: str = OLD_FP
    post_status: int | None = None  # force an answer to POST
    reload_delay: float = 0.0
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    post_clients: list[tuple[str, int]] = field(default_factory=list)
    clients_seen_before_post: set[tuple[str, int]] = field(default_factory=set)
    confirm_gets: int = 0
    confirm_signed: list[bool] = field(default_factory=list)
    url: str = ""

    def reload(self, fp: str) -> None:
        if self.reload_delay:
            threading.Timer(self.reload_delay, lambda: setattr(self, "fingerprint", fp)).start()
        else:
            self.fingerprint = fp


def make_handler(svc: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so the warmed connection is reused

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, payload: dict[str, Any] | None = None) -> None:
            body = json.dumps(payload or {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            svc.clients_seen_before_post.add(self.client_address)
            self._answer(204)

        def do_GET(self) -> None:
            svc.clients_seen_before_post.add(self.client_address)
            if self.path.startswith("/confirm"):
                svc.confirm_gets += 1
                try:
                    verify_webhook(svc.hmac_key, dict(self.headers), b"")
                    svc.confirm_signed.append(True)
                except InvalidSignature:
                    svc.confirm_signed.append(False)
                self._answer(200, {"fingerprint": svc.fingerprint})
            else:
                self._answer(404)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            svc.post_clients.append(self.client_address)
            try:
                verify_webhook(svc.hmac_key, dict(self.headers), body)
            except InvalidSignature:
                self._answer(401, {"error": "bad signature"})
                return
            svc.posts.append((dict(self.headers), body))
            if svc.post_status is not None:
                self._answer(svc.post_status)
                return
            svc.reload(json.loads(body)["fingerprint"])
            self._answer(200, {"ok": True})

    return Handler


@pytest.fixture
def service() -> Iterator[Service]:
    svc = Service(hmac_key=HMAC_KEY.encode())
    server = LoopbackServer("127.0.0.1", 0, make_handler(svc)).start_background("webhook-service")
    svc.url = server.url
    try:
        yield svc
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def webhook_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_KEY", HMAC_KEY)


def webhook(svc: Service, **extra: Any) -> WebhookConsumer:
    settings = {
        "type": "webhook",
        "url": f"{svc.url}/rotated",
        "hmac_key": {"env": "WEBHOOK_KEY"},
        "confirm_url": f"{svc.url}/confirm",
        **extra,
    }
    return build(WebhookConsumer, **settings)


# --- webhook ------------------------------------------------------------------------------


def test_webhook_reload_is_signed_carries_no_key_and_is_confirmed(service: Service) -> None:
    c = webhook(service)

    async def scenario() -> tuple[Any, str, Confirmation, float]:
        await c.open()
        check = await c.preflight()
        detail = await c.signal(event())
        loop = asyncio.get_running_loop()
        started = loop.time()
        confirmation = await c.confirm(NEW_KEY.fingerprint, loop.time() + 5)
        elapsed = loop.time() - started
        await c.close()
        await c.ctx.aclose()
        return check, detail, confirmation, elapsed

    check, detail, confirmation, elapsed = run(scenario)
    assert check.ok is True and OLD_FP in check.detail
    assert "answered 200" in detail
    assert len(service.posts) == 1
    headers, body = service.posts[0]
    payload = json.loads(body)
    assert payload == {
        "secret": "adjutor",
        "fingerprint": NEW_KEY.fingerprint,
        "rotation_id": "rot-42",
        "timestamp": payload["timestamp"],
        "reason": "rotation",
    }
    assert NEW_KEY.reveal().encode() not in body and HMAC_KEY.encode() not in body
    assert headers["Content-Type"] == "application/json"
    assert confirmation.confirmed is True and confirmation.reported_fingerprint == NEW_KEY.fingerprint
    assert elapsed < scaled(1.0)
    assert all(service.confirm_signed)
    # The warm-up at arm opened the connection the signal then used: no handshake on the clock.
    assert service.post_clients[0] in service.clients_seen_before_post


def test_webhook_confirm_polls_fast_until_the_consumer_reloads(service: Service) -> None:
    service.reload_delay = 0.3
    c = webhook(service)

    async def scenario() -> tuple[Confirmation, float]:
        await c.open()
        await c.signal(event())
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await c.confirm(NEW_KEY.fingerprint, loop.time() + 5)
        await c.ctx.aclose()
        return result, loop.time() - started

    result, elapsed = run(scenario)
    assert result.confirmed is True
    assert 0.25 < elapsed < scaled(1.5)
    assert service.confirm_gets >= 4  # ~50 ms apart


def test_webhook_confirm_gives_up_at_the_deadline(service: Service) -> None:
    service.post_status = 202  # accepted, but the service never reloads
    c = webhook(service)

    async def scenario() -> tuple[Confirmation, float]:
        await c.signal(event())
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await c.confirm(NEW_KEY.fingerprint, loop.time() + 0.3)
        await c.ctx.aclose()
        return result, loop.time() - started

    result, elapsed = run(scenario)
    assert result.confirmed is False
    assert result.reported_fingerprint == OLD_FP
    assert 0.25 < elapsed < scaled(1.0)
    assert f"still reports {OLD_FP}" in result.detail and one_line(result.detail)


def test_webhook_wrong_hmac_key_is_refused_and_not_retryable(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_KEY", "not-the-shared-key")
    c = webhook(service)

    async def scenario() -> None:
        try:
            await c.signal(event())
        finally:
            await c.ctx.aclose()

    with pytest.raises(PluginError) as info:
        run(scenario)
    assert info.value.retryable is False
    message = str(info.value)
    assert one_line(message) and "401" in message and "hmac_key" in message and "/rotated" in message
    assert "not-the-shared-key" not in message
    assert service.posts == []


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (400, False), (404, False)])
def test_webhook_error_statuses(service: Service, status: int, retryable: bool) -> None:
    service.post_status = status
    c = webhook(service, url=f"{service.url}/rotated?token=tok_in_query")

    async def scenario() -> None:
        try:
            await c.signal(event())
        finally:
            await c.ctx.aclose()

    with pytest.raises(PluginError) as info:
        run(scenario)
    assert info.value.retryable is retryable
    assert str(status) in str(info.value) and "tok_in_query" not in str(info.value)


def test_webhook_unreachable_fails_preflight_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/rotated"
    c = build(WebhookConsumer, type="webhook", url=url, hmac_key={"env": "WEBHOOK_KEY"})

    async def scenario() -> Any:
        await c.open()  # warming is best effort: no error here
        check = await c.preflight()
        with pytest.raises(PluginError) as info:
            await c.signal(event())
        await c.ctx.aclose()
        return check, info.value

    check, error = run(scenario)
    assert check.ok is False and url in check.detail and "refused" in check.detail and one_line(check.detail)
    assert error.retryable is True and url in str(error)
    assert c.can_confirm is False


def test_webhook_missing_hmac_key_fails_at_arm(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBHOOK_KEY")
    c = webhook(service)

    async def scenario() -> Any:
        check = await c.preflight()
        with pytest.raises(PluginError) as info:
            await c.open()
        await c.ctx.aclose()
        return check, info.value

    check, error = run(scenario)
    assert check.ok is False and "WEBHOOK_KEY" in check.detail
    assert error.retryable is False and "WEBHOOK_KEY" in str(error)


def test_webhook_settings_are_checked() -> None:
    base = {"name": "w", "type": "webhook", "url": "https://app.example/hook", "hmac_key": {"env": "K"}}
    s = WebhookConsumer.Settings.model_validate(base)
    assert s.confirm_url is None and s.headers == {}
    bad_values: list[dict[str, Any]] = [
        {"url": "ftp://x/y"},
        {"url": "app.example/hook"},
        {"hmac_key": "inline-secret"},
        {"confirm_url": "nope"},
        {"headers": {"X-Rotator-Signature": "v1=forged"}},
        {"headers": {"Bad Header": "x"}},
        {"extra_key": 1},
    ]
    for bad in bad_values:
        with pytest.raises(ValidationError):
            WebhookConsumer.Settings.model_validate({**base, **bad})
    with pytest.raises(ValidationError):
        WebhookConsumer.Settings.model_validate({k: v for k, v in base.items() if k != "hmac_key"})


def test_display_url_drops_credentials_and_query() -> None:
    assert display_url("https://user:pw@host.example:8443/a/b?token=x#f") == "https://host.example:8443/a/b"


# --- signal -------------------------------------------------------------------------------

# A service that reads APP_KEY from its env file at start and on SIGHUP, and reports
# the fingerprint of the key it uses at GET /confirm (port printed on its ready line).
SERVICE_SCRIPT = textwrap.dedent(
    """
    import http.server, json, os, signal, sys, threading
    from dotenv import dotenv_values
    from rotator.consumer import fingerprint

    envfile, pidfile, marker, mode = sys.argv[1:5]
    state = {"fp": None}

    def load(*_):
        state["fp"] = fingerprint(dotenv_values(envfile)["APP_KEY"])
        with open(marker, "a") as f:
            f.write("reloaded\\n")

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def do_GET(self):
            body = json.dumps({"fingerprint": state["fp"]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    state["fp"] = fingerprint(dotenv_values(envfile)["APP_KEY"])
    if mode == "reloads":
        signal.signal(signal.SIGHUP, load)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    # Only the main thread may take SIGHUP: delivered to the server thread, it would
    # run the handler only when the main thread next wakes (never, in pause()).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    with open(pidfile, "w") as f:
        f.write(f"{os.getpid()}\\n")
    print("ready", server.server_address[1], flush=True)
    while True:
        signal.pause()
    """
)


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    pidfile: Path
    marker: Path
    envfile: Path
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def reloads(self) -> int:
        return len(self.marker.read_text().splitlines()) if self.marker.exists() else 0

    def wait_for_reloads(self, n: int, timeout: float = 5.0) -> int:
        end = time.monotonic() + scaled(timeout)
        while self.reloads() < n and time.monotonic() < end:
            time.sleep(0.01)
        return self.reloads()


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def start(tag: str = "a", mode: str = "reloads") -> Proc:
        pytest.importorskip("dotenv")
        envfile = tmp_path / f"{tag}.env"
        if not envfile.exists():
            envfile.write_text("# app\nAPP_KEY=sk_live_oldkey123456789\n")
        pidfile, marker = tmp_path / f"{tag}.pid", tmp_path / f"{tag}.reloads"
        argv = [sys.executable, "-c", SERVICE_SCRIPT, str(envfile), str(pidfile), str(marker), mode]
        popen = subprocess.Popen([*argv, "rotator-test-service"], stdout=subprocess.PIPE, text=True)
        assert popen.stdout is not None
        line = popen.stdout.readline()  # readiness: the service says so once its pidfile is written
        assert line.startswith("ready"), line
        proc = Proc(popen, pidfile, marker, envfile, int(line.split()[1]))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.popen.kill()
        proc.popen.wait()
        if proc.popen.stdout:
            proc.popen.stdout.close()


def signal_consumer(proc: Proc, **extra: Any) -> SignalConsumer:
    return build(SignalConsumer, type="signal", pidfile=str(proc.pidfile), **extra)


def test_sighup_reaches_the_service_which_reloads_the_new_key(start_service: Callable[..., Proc]) -> None:
    proc = start_service()
    backend = EnvFileBackend(
        EnvFileBackend.Settings.model_validate(
            {"name": "env", "type": "envfile", "path": str(proc.envfile), "variable": "APP_KEY"}
        ),
        PluginContext(max_threads=2),
    )
    c = signal_consumer(
        proc, expect_cmdline="rotator-test-service", confirm_url=f"http://127.0.0.1:{proc.port}/confirm"
    )

    async def scenario() -> Any:
        await c.open()
        check = await c.preflight()
        await backend.write(NEW_KEY, token="rot-42/env", expected_version=None)
        detail = await c.signal(event())
        loop = asyncio.get_running_loop()
        confirmation = await c.confirm(NEW_KEY.fingerprint, loop.time() + 5)
        await c.ctx.aclose()
        await backend.ctx.aclose()
        return check, detail, confirmation

    check, detail, confirmation = run(scenario)
    assert check.ok is True and f"process {proc.pid}" in check.detail
    assert detail.startswith(f"sent SIGHUP to process {proc.pid}")
    assert proc.wait_for_reloads(1) == 1
    assert confirmation.confirmed is True and confirmation.reported_fingerprint == NEW_KEY.fingerprint
    assert "still running" in confirmation.detail


def test_signal_by_pid_with_usr1_and_alive_check(start_service: Callable[..., Proc]) -> None:
    proc = start_service()
    c = build(SignalConsumer, type="signal", pid=proc.pid, signal="sigusr2", alive_after=0.1)
    assert c.settings.signal == "USR2"
    # USR2 is not handled by the service, so the default action ends it.

    async def scenario() -> Confirmation:
        await c.open()
        assert (await c.preflight()).ok is True
        await c.signal(event())
        result: Confirmation = await c.confirm(NEW_KEY.fingerprint, asyncio.get_running_loop().time() + 5)
        await c.ctx.aclose()
        return result

    result = run(scenario)
    assert result.confirmed is False and "exited" in result.detail and one_line(result.detail)


def test_signal_confirms_by_being_alive_without_confirm_url(start_service: Callable[..., Proc]) -> None:
    proc = start_service()
    c = signal_consumer(proc, alive_after=0.05)

    async def scenario() -> Confirmation:
        await c.open()
        await c.signal(event())
        result: Confirmation = await c.confirm(NEW_KEY.fingerprint, asyncio.get_running_loop().time() + 5)
        await c.ctx.aclose()
        return result

    result = run(scenario)
    assert proc.wait_for_reloads(1) == 1
    assert result.confirmed is True and result.reported_fingerprint is None and "not checked" in result.detail


def test_pidfile_now_naming_another_process_is_refused(start_service: Callable[..., Proc]) -> None:
    first = start_service("first")
    other = start_service("other")
    c = signal_consumer(first)

    async def scenario() -> None:
        await c.open()
        assert (await c.preflight()).ok is True
        first.pidfile.write_text(f"{other.pid}\n")  # the service "restarted" as another process
        try:
            await c.signal(event())
        finally:
            await c.ctx.aclose()

    with pytest.raises(PluginError) as info:
        run(scenario)
    message = str(info.value)
    assert info.value.retryable is False and one_line(message)
    assert str(first.pid) in message and str(other.pid) in message and "not sending SIGHUP" in message
    time.sleep(0.2)
    assert first.reloads() == 0 and other.reloads() == 0


def test_reused_pid_with_another_start_time_is_refused(start_service: Callable[..., Proc]) -> None:
    proc = start_service()
    c = signal_consumer(proc)

    async def scenario() -> None:
        await c.open()
        armed = c._armed
        assert armed is not None and armed.start is not None
        # As if the process seen at arm had died and the kernel handed its pid to this one.
        c._armed = ProcessId(armed.pid, armed.start - 1, armed.name)
        try:
            await c.signal(event())
        finally:
            await c.ctx.aclose()

    with pytest.raises(PluginError) as info:
        run(scenario)
    assert info.value.retryable is False and "start time changed" in str(info.value)
    time.sleep(0.2)
    assert proc.reloads() == 0


def test_unexpected_command_line_is_refused(start_service: Callable[..., Proc]) -> None:
    proc = start_service()
    c = signal_consumer(proc, expect_cmdline="nginx: master process")

    async def scenario() -> Any:
        await c.open()
        check = await c.preflight()
        with pytest.raises(PluginError) as info:
            await c.signal(event())
        await c.ctx.aclose()
        return check, info.value

    check, error = run(scenario)
    assert check.ok is False and "nginx: master process" in check.detail and one_line(check.detail)
    assert error.retryable is False
    assert proc.reloads() == 0


@pytest.mark.parametrize(("content", "expected"), [(None, "does not exist"), ("not a pid\n", "does not hold a pid")])
def test_bad_pidfile_fails_preflight(tmp_path: Path, content: str | None, expected: str) -> None:
    pidfile = tmp_path / "app.pid"
    if content is not None:
        pidfile.write_text(content)
    c = build(SignalConsumer, type="signal", pidfile=str(pidfile))

    async def scenario() -> Any:
        await c.open()
        check = await c.preflight()
        await c.ctx.aclose()
        return check

    check = run(scenario)
    assert check.ok is False and expected in check.detail and str(pidfile) in check.detail


def test_dead_pid_fails_preflight() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    c = build(SignalConsumer, type="signal", pid=p.pid)

    async def scenario() -> Any:
        check = await c.preflight()
        await c.ctx.aclose()
        return check

    check = run(scenario)
    assert check.ok is False and f"no process {p.pid}" in check.detail


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_process_we_may_not_signal_fails_preflight(start_service: Callable[..., Proc]) -> None:
    proc = start_service()  # runs as root; the check runs in a child that becomes nobody
    c = build(SignalConsumer, type="signal", pid=proc.pid)  # built here: nobody cannot read our site-packages
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            check = asyncio.run(c.preflight())
            os.write(write_end, json.dumps([check.ok, check.detail]).encode())
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent, then exit
            os.write(write_end, json.dumps([None, repr(exc)]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(child, 0)
    ok, detail = json.loads(data)
    assert ok is False and f"not allowed to signal process {proc.pid}" in detail, detail


def test_signal_settings_are_checked() -> None:
    base = {"name": "s", "type": "signal", "pid": 1234}
    assert SignalConsumer.Settings.model_validate(base).signal == "HUP"
    assert SignalConsumer.Settings.model_validate({**base, "signal": "SIGUSR1"}).signal == "USR1"
    assert SignalConsumer.Settings.model_validate({**base, "signal": "TERM", "alive_after": 0}).signal == "TERM"
    bad_values: list[dict[str, Any]] = [
        {"signal": "NOPE"},
        {"signal": "KILL"},
        {"signal": "TERM"},  # ends the process, yet alive_after defaults to 0.2
        {"pidfile": "/run/app.pid"},  # both pid and pidfile
        {"pid": None},  # neither
        {"pid": 0},
        {"confirm_url": "not-a-url"},
    ]
    for bad in bad_values:
        with pytest.raises(ValidationError):
            SignalConsumer.Settings.model_validate({**base, **bad})


# --- command ------------------------------------------------------------------------------


def command(argv: list[str], **extra: Any) -> CommandConsumer:
    return build(CommandConsumer, type="command", argv=argv, **extra)


def run_signal(c: CommandConsumer) -> str:
    async def scenario() -> str:
        try:
            return await c.signal(event())
        finally:
            await c.ctx.aclose()

    result: str = run(scenario)
    return result


def test_command_gets_the_fingerprint_not_the_key_nor_rotators_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "hvs.rotator-own-credential")
    out = tmp_path / "env.json"
    script = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w')); print('reloaded app')"
    c = command([sys.executable, "-c", script, str(out)], env={"APP_NAME": "billing"}, cwd=str(tmp_path))
    assert run(c.preflight).ok is True
    detail = run_signal(c)
    env = json.loads(out.read_text())
    assert env["ROTATOR_FINGERPRINT"] == NEW_KEY.fingerprint
    assert env["ROTATOR_SECRET_NAME"] == "adjutor"
    assert env["ROTATOR_ROTATION_ID"] == "rot-42"
    assert env["APP_NAME"] == "billing"
    assert "VAULT_TOKEN" not in env and "WEBHOOK_KEY" not in env
    assert NEW_KEY.reveal() not in out.read_text()
    assert detail.endswith("exited 0: reloaded app")


def test_command_stdin_is_closed(tmp_path: Path) -> None:
    c = command([sys.executable, "-c", "import sys; print('read', len(sys.stdin.read()), 'bytes')"])
    assert run_signal(c).endswith("read 0 bytes")


def test_command_failure_reports_exit_code_and_last_stderr_line() -> None:
    script = "import sys; sys.stderr.write('starting\\n' + 'x' * 300 + '\\n\\n'); sys.exit(3)"
    with pytest.raises(PluginError) as info:
        run_signal(command([sys.executable, "-c", script]))
    message = str(info.value)
    assert one_line(message) and "exited with 3" in message and "starting" not in message
    assert "x" * 200 in message and "x" * 201 not in message
    assert info.value.retryable is True


def test_command_timeout_kills_it_and_its_children(tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {child_pid}; wait"
    c = command(["sh", "-c", script], timeout=0.5)
    started = time.monotonic()
    with pytest.raises(PluginError) as info:
        run_signal(c)
    assert time.monotonic() - started < scaled(5)
    assert info.value.retryable is True and "0.5s" in str(info.value) and "killed" in str(info.value)
    pid = int(child_pid.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat")
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            break
        time.sleep(0.02)
    else:
        pytest.fail("the command's child outlived the timeout")


def test_command_preflight_finds_the_program(tmp_path: Path) -> None:
    assert run(command(["sh", "-c", "true"]).preflight).ok is True
    missing = run(command(["no-such-reload-tool-xyz"]).preflight)
    assert missing.ok is False and "no-such-reload-tool-xyz" in missing.detail and "PATH" in missing.detail
    script = tmp_path / "reload.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    assert run(command([str(script)]).preflight).ok is False  # not executable
    script.chmod(0o755)
    assert run(command([str(script)]).preflight).ok is True
    assert run(command(["./reload.sh"], cwd=str(tmp_path)).preflight).ok is True
    assert run(command(["sh"], cwd=str(tmp_path / "nope")).preflight).ok is False


def test_command_not_found_at_signal_is_not_retryable() -> None:
    with pytest.raises(PluginError) as info:
        run_signal(command(["/nonexistent/reload"]))
    assert info.value.retryable is False and "/nonexistent/reload" in str(info.value)


def test_command_settings_are_checked() -> None:
    base = {"name": "c", "type": "command", "argv": ["systemctl", "reload", "app"]}
    CommandConsumer.Settings.model_validate(base)
    for bad in ({"argv": []}, {"argv": [""]}, {"env": {"ROTATOR_FINGERPRINT": "x"}}, {"env": {"1X": "y"}}):
        with pytest.raises(ValidationError):
            CommandConsumer.Settings.model_validate({**base, **bad})
    assert os.environ.get("ROTATOR_FINGERPRINT") is None


def test_webhook_confirmed_by_its_reload_answer_without_polling() -> None:
    """A consumer that reloads before answering and says so needs no confirm poll."""
    polls: list[str] = []
    fp = {"now": "0000000000000000"}

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def _json(self, obj: dict[str, Any]) -> None:
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fp["now"] = data["fingerprint"]  # "reloaded"
            self._json({"reloaded": True, "fingerprint": fp["now"]})

        def do_GET(self) -> None:
            polls.append(self.path)
            self._json({"fingerprint": fp["now"]})

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = LoopbackServer("127.0.0.1", 0, H).start_background("answering-consumer")
    url = server.url
    try:
        os.environ["ROTATOR_T_ANSWER_KEY"] = "k" * 32
        c = build(
            WebhookConsumer,
            type="webhook",
            url=f"{url}/reload",
            confirm_url=f"{url}/fingerprint",
            hmac_key={"env": "ROTATOR_T_ANSWER_KEY"},
        )

        async def scenario() -> tuple[str, Confirmation]:
            await c.open()
            await c.preflight()
            polls.clear()
            detail = await c.signal(event())
            conf = await c.confirm(NEW_KEY.fingerprint, asyncio.get_running_loop().time() + 5)
            await c.ctx.aclose()
            return detail, conf

        detail, conf = run(scenario)
    finally:
        server.stop()
        os.environ.pop("ROTATOR_T_ANSWER_KEY", None)
    assert "running on the new key" in detail
    assert conf.confirmed and conf.reported_fingerprint == NEW_KEY.fingerprint
    assert polls == []  # confirmed from the answer: confirm_url never polled
