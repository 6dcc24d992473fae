"""The listener consumers call: aiohttp's low-level server on loopback or a Unix socket.

No routing, no access log (nothing a request carries is logged, bodies least of
all): each request becomes an `Outgoing` for the engine, except the metrics path.
A body up to `max_body` is read whole (it can be held and replayed); a larger or
chunked one is streamed through and never held.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import socket
import stat
from pathlib import Path
from typing import Any

from aiohttp import web

from rotator.proxy.config import Address
from rotator.proxy.engine import Engine
from rotator.proxy.engine_types import PROXY_HEADER, Outgoing
from rotator.proxy.upstream import forwardable
from rotator.secret import Secret


class ProxyServer:
    """Serves `engine` at `address`; `tokens` (if any) are the local per-consumer tokens a caller must send."""

    def __init__(
        self,
        engine: Engine,
        address: Address,
        *,
        max_body: int,
        metrics_path: str = "/metrics",
        tokens: list[Secret] | None = None,
        socket_mode: int = 0o600,
    ) -> None:
        self.engine = engine
        self.address = address
        self.max_body = max_body
        self.metrics_path = metrics_path
        self._tokens = [t.reveal().encode() for t in tokens or []]
        self._mode = socket_mode
        self._runner: web.ServerRunner | None = None

    async def start(self) -> None:
        server = web.Server(self._handle, access_log=None)
        self._runner = web.ServerRunner(server, access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        await listen(self._runner, self.address, self._mode, backlog=1024)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        unlink_socket(self.address)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == self.metrics_path and request.method == "GET":
            return web.Response(body=self.engine.metrics.render(), content_type="text/plain", charset="utf-8")
        if self._tokens and not self._allowed(request.headers.get("Authorization", "")):
            return web.json_response(
                {"status": "error", "message": "this proxy needs the consumer's local token as its bearer token"},
                status=401,
                headers={PROXY_HEADER: "consumer-token"},
            )
        length = request.content_length
        stream: Any = None
        if not request.body_exists:
            body: bytes | None = b""
        elif length is not None and length <= self.max_body:
            body = await request.read()
        else:
            body, stream = None, request.content
        req = Outgoing(request.method, request.raw_path, forwardable(request.headers), body)
        answer = await self.engine.handle(req, stream)
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)  # type: ignore[arg-type]

    def _allowed(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        given = token.strip().encode()
        if scheme.lower() != "bearer" or not given:
            return False
        # Every token compared (no early exit): the time says nothing of which one matched.
        return sum(hmac.compare_digest(given, t) for t in self._tokens) > 0


async def listen(runner: web.BaseRunner, address: Address, mode: int, *, backlog: int = 128) -> None:
    """Start a site for `runner` at `address`; a Unix socket is made with `mode` (never wider for a moment)."""
    if address.path is None:
        site: web.BaseSite = web.TCPSite(runner, address.host, address.port, backlog=backlog, reuse_address=True)
        await site.start()
        return
    path = address.path
    _remove_stale(path)
    old = os.umask(0o777 & ~mode)
    try:
        site = web.UnixSite(runner, str(path), backlog=backlog)
        await site.start()
    finally:
        os.umask(old)
    os.chmod(path, mode)


def _remove_stale(path: Path) -> None:
    """A socket file left by a process that died is removed; one something answers on is not."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise OSError(f"something already listens on {path}")


def unlink_socket(address: Address | None) -> None:
    if address is not None and address.path is not None:
        with contextlib.suppress(OSError):
            address.path.unlink()
