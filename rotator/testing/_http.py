"""One threaded loopback HTTP server for every test double (Adjutor stand-in,
Vault-protocol server, the demo's consumer, the tests' receivers).

`LoopbackServer` is `ThreadingHTTPServer` with what a double needs: no request
log (requests carry keys), a deep listen backlog (hundreds of clients at once),
a background thread, a `url`, and a `stop()` that also drops open keep-alive
connections, so a stopped server answers nothing more.  `JsonHandler` adds
HTTP/1.1 keep-alive with JSON bodies; any `BaseHTTPRequestHandler` works too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

MAX_BODY = 1 << 20


def write_ready_file(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write `data` as JSON to `path`, mode 0600, atomically (a reader never sees half)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(data).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)


@dataclass
class Exchange:
    """One request and its answer as a double saw them, bodies parsed (JSON, else None).
    Kept only in memory, only when a test asks (``exchanges = []``): they hold keys, so
    they are never written or logged; the tests check them against the official API specs."""

    method: str
    path: str  # without the query
    query: str
    content_type: str
    request: Any
    status: int
    response: Any


def parsed(body: bytes, content_type: str) -> Any:
    """`body` as JSON when it says so (None otherwise, or when it is not JSON)."""
    if not body or "json" not in content_type:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


class LoopbackServer(ThreadingHTTPServer):
    """A threading HTTP/1.1 server that keeps no request log and can drop its
    keep-alive connections on stop (so a stopped server answers nothing more)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(
        self, host: str, port: int, handler: type[BaseHTTPRequestHandler], *, tls: ssl.SSLContext | None = None
    ) -> None:
        """Listening once made (`port` 0 picks a free one); `start_background` serves.
        `tls`: serve HTTPS with this server context (the handshake runs in the
        connection's own thread, so a slow client never holds up the others)."""
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.tls = tls
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[0], self.server_address[1]
        if isinstance(host, bytes):
            host = host.decode()
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(30)  # a client that never finishes its handshake
        wrapped = self.tls.wrap_socket(request, server_side=True)  # takes over the descriptor
        wrapped.settimeout(None)
        with self._conns_lock:  # stop() must reach the TLS socket, the only one left open
            self._conns.discard(request)
            self._conns.add(wrapped)
        try:
            super().finish_request(wrapped, client_address)
        finally:
            with self._conns_lock:
                self._conns.discard(wrapped)
            with contextlib.suppress(OSError):
                wrapped.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-request (a test's stopped client, a probe's timeout) or
        refused the certificate is normal for a double: no traceback on stderr for it.
        Anything else is still printed."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError | ssl.SSLError):
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def start_background(self, name: str) -> Self:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close the listener and every open connection."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class JsonHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, JSON bodies with Content-Length, no request log."""

    protocol_version = "HTTP/1.1"
    server_version = "rotator-demo/1"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection is dropped after this
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # never log (requests carry keys)
        pass

    def read_body(self) -> bytes:
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            return b""
        return self.rfile.read(length)

    def read_json(self) -> Any:
        body = self.read_body()
        if not body:
            return {}
        try:
            return json.loads(body)
        except ValueError:
            return None

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def client_is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.client_address[0]).is_loopback
        except ValueError:
            return False


class Served:
    """A double's life around its server: `start` (or ``with``), `url`, `stop`.

    A subclass says how its server is made in `_make_server`; the server runs
    on a background thread named `thread_name`.
    """

    thread_name = "test-double"
    _server: LoopbackServer | None = None

    def _make_server(self) -> LoopbackServer:
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        self._server = self._make_server().start_background(self.thread_name)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def server(self) -> LoopbackServer:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._server

    @property
    def url(self) -> str:
        return self.server.url
