"""Connections opened at arm stay open while the operator gets the key (issue 15).

A real HTTP server that closes connections idle for half a second, as a proxy's idle
timeout would (30-75 s in the field): without the keeper's rounds (`PluginContext.warm`,
which the armed session runs every 15 s) the signal after the wait needs a new
connection (a TCP and TLS handshake on the window's critical path); with them, the
server sees one connection from arm to the signal.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rotator_plugins.webhook import WebhookConsumer

from rotator.plugin import PluginContext, RotationEvent

IDLE = 0.5


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0
    heads = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE  # an idle keep-alive connection is closed after this
    server: _Server

    def setup(self) -> None:
        self.server.connections += 1
        super().setup()

    def log_message(self, *a: Any) -> None:
        pass

    def _answer(self, body: bytes = b"{}") -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.server.heads += 1
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(json.dumps({"reloading": True}).encode())


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    monkeypatch.setenv("WARM_HOOK_KEY", "whsec_warm_test")
    srv = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _signal_after_wait(server: _Server, warm_every: float | None) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/reload"

    async def scenario() -> None:
        ctx = PluginContext(max_threads=2)
        hook = WebhookConsumer(
            WebhookConsumer.Settings.model_validate({"name": "svc", "url": url, "hmac_key": {"env": "WARM_HOOK_KEY"}}),
            ctx,
        )
        try:
            await hook.open()
            waited = 0.0
            while waited < IDLE * 4:  # the operator, in the dashboard; the armed session's keeper
                step = warm_every or IDLE * 4
                await asyncio.sleep(step)
                waited += step
                if warm_every is not None:
                    await ctx.warm()
            await hook.signal(RotationEvent("s", "0123456789abcdef", "rot-1", int(time.time())))
        finally:
            await ctx.aclose()

    asyncio.run(scenario())


def test_without_keep_warm_the_signal_after_an_idle_timeout_reconnects(server: _Server) -> None:
    _signal_after_wait(server, None)
    assert server.connections == 2  # what the harness must show for the next test to mean anything


def test_keep_warm_rounds_hold_the_arm_connection_open_until_the_key(server: _Server) -> None:
    _signal_after_wait(server, IDLE / 3)
    assert server.connections == 1
    assert server.heads >= 3  # open's HEAD, then the rounds' (no key, no write)
