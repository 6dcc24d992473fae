"""The services a benchmarked rotation talks to, each with an injected latency.

Two child processes, so that their CPU (and their GIL) is not the rotator's:

* `backends_main`: the Adjutor stand-in (probe), the Vault-protocol test double
  and moto's server (AWS), all threaded HTTP/1.1 servers on loopback.  The
  stand-in timestamps each keyed request on arrival with `time.perf_counter`
  (CLOCK_MONOTONIC on Linux, so comparable with the parent's clock).
* `consumers_main`: N webhook consumers in one asyncio process, one listening
  port each (so each is its own origin with its own connection, as N services
  would be).  ``POST /reload`` (signed, as rotator.consumer describes) starts a
  reload that takes `reload_delay` seconds from the notice's arrival; ``GET
  /fingerprint`` reports the fingerprint in use.  Every request is answered
  `latency` seconds after it arrived.

Every server closes a keep-alive connection idle for `idle_timeout` seconds (30 s by
default, as many load balancers and proxies do; nginx's is 75 s), can hold a new
connection's first answer back by `connect_latency` (a TCP/TLS handshake's round
trips, which loopback does not have), and records when it accepted each connection,
so a case can tell which connections a rotation re-opened after the key arrived.

Both are driven over a multiprocessing pipe: ``(command, *args)`` in, a reply out.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

from rotator.testing import moto_env

LOOPBACK = "127.0.0.1"
VAULT_TOKEN = "bench-root-token"
AWS_REGION = moto_env.REGION
AWS_ENV = moto_env.ENV


IDLE_TIMEOUT = 30.0


class Conns:
    """Connection settings and accept times of the servers in one child process."""

    idle_timeout = IDLE_TIMEOUT
    connect_latency = 0.0
    accepted: dict[str, list[float]] = {}

    @classmethod
    def opened(cls, service: str) -> None:
        cls.accepted.setdefault(service, []).append(time.perf_counter())

    @classmethod
    def since(cls, t: float) -> dict[str, int]:
        return {k: sum(1 for a in v if a >= t) for k, v in cls.accepted.items()}


def _connection_setup(service: str, setup: Any) -> Any:
    """A socketserver handler's setup() with the idle timeout, the handshake latency and
    the accept time (StreamRequestHandler applies `self.timeout` to the socket; an idle
    read past it ends the connection)."""

    def wrapped(self: Any) -> None:
        Conns.opened(service)
        self.timeout = Conns.idle_timeout
        if Conns.connect_latency > 0:
            time.sleep(Conns.connect_latency)
        setup(self)

    return wrapped


# ---------------------------------------------------------------- backends


def _timed_standin(latency: float) -> Any:
    """An AdjutorStandIn whose keyed requests are timestamped on arrival."""
    from rotator.testing.adjutor import MODELS_PATH, AdjutorStandIn, StandInHandler, StandInServer

    class Handler(StandInHandler):
        setup = _connection_setup("probe", StandInHandler.setup)

        def parse_request(self) -> bool:
            # Called as soon as the request line is in: the request's first bytes.
            self._arrived = time.perf_counter()
            return super().parse_request()

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == MODELS_PATH and self.headers.get("Authorization"):
                self.server.standin.arrivals.append(self._arrived)
            super().do_GET()

    class Server(StandInServer):
        handler = Handler

    class TimedStandIn(AdjutorStandIn):
        server_class = Server

        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.arrivals: list[float] = []

    return TimedStandIn(latency=latency).start()


class _MotoServer:
    """moto's server (its WSGI app) on a threaded HTTP/1.1 keep-alive server, with a
    latency added before each request is handled.

    Not werkzeug's server, as ThreadedMotoServer uses: it sends ``Connection: close`` on
    every answer, so every boto3 call opened a new connection, which AWS's endpoints do
    not make clients do."""

    def __init__(self, latency: float) -> None:
        import io
        import sys
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from moto.server import DomainDispatcherApplication, create_backend_app

        self.latency = latency
        app = DomainDispatcherApplication(create_backend_app)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            setup = _connection_setup("aws", BaseHTTPRequestHandler.setup)

            def log_message(self, *a: Any) -> None:
                pass

            def _wsgi(self) -> None:
                # Answered `latency` after it arrived: moto's own processing (a few ms)
                # counts toward the latency, as a real service's does.
                arrived = time.perf_counter()
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                environ = {
                    "REQUEST_METHOD": self.command,
                    "SCRIPT_NAME": "",
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(length),
                    "SERVER_NAME": LOOPBACK,
                    "SERVER_PORT": str(self.server.server_address[1]),
                    "SERVER_PROTOCOL": self.request_version,
                    "REMOTE_ADDR": self.client_address[0],
                    "wsgi.version": (1, 0),
                    "wsgi.url_scheme": "http",
                    "wsgi.input": io.BytesIO(body),
                    "wsgi.errors": sys.stderr,
                    "wsgi.multithread": True,
                    "wsgi.multiprocess": False,
                    "wsgi.run_once": False,
                }
                for k, v in self.headers.items():
                    key = "HTTP_" + k.upper().replace("-", "_")
                    if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                        environ[key] = v
                started: list[Any] = []

                def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                    started[:] = [status, headers]
                    return lambda data: None

                result = app(environ, start_response)
                try:
                    payload = b"".join(result)
                finally:
                    if hasattr(result, "close"):
                        result.close()
                wait = arrived + outer.latency - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                status, headers = started
                self.send_response(int(status.split(" ", 1)[0]), status.split(" ", 1)[1] if " " in status else "")
                for k, v in headers:
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _wsgi

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

        self._server = Server((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="moto", daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()


def backends_main(conn: Any) -> None:
    """Child process: stand-in, Vault double, moto.  Commands over `conn`."""
    os.environ.update(AWS_ENV)
    import boto3

    import rotator.testing.vaultserver as vaultserver
    from rotator.testing import ROOT, VaultServer

    # The Vault double's handler leaves Nagle on: its header and body writes then
    # wait ~40 ms for a delayed ACK on every keep-alive request.  Real Vault (Go)
    # sets TCP_NODELAY, so the benchmark does too.
    vaultserver._Handler.disable_nagle_algorithm = True
    vaultserver._Handler.setup = _connection_setup("vault", vaultserver._Handler.setup)  # type: ignore[method-assign]

    class Vault(VaultServer):
        """Answers `answer_in` seconds after a request arrived (its processing included)."""

        answer_in = 0.0

        def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
            arrived = time.perf_counter()
            reply = super().handle(method, target, headers, body)
            wait = arrived + self.answer_in - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            return reply

    standins = [_timed_standin(0.0)]  # one per app (several plans at once: one each)
    standin = standins[0]
    vault = Vault(tokens={VAULT_TOKEN: ROOT}, latency=0.0).start()
    moto = _MotoServer(0.0)
    sm = boto3.client("secretsmanager", endpoint_url=moto.url, region_name=AWS_REGION)
    conn.send(
        {"probe_url": standin.models_url, "vault_url": vault.url, "moto_url": moto.url, "key": standin.current_key}
    )
    while True:
        cmd, *args = conn.recv()
        try:
            if cmd == "latency":
                probe, vault_l, aws = args
                for st in standins:
                    st.latency = probe
                vault.answer_in, moto.latency = vault_l, aws
                reply: Any = True
            elif cmd == "conns":
                Conns.idle_timeout, Conns.connect_latency = args
                reply = True
            elif cmd == "accepted":
                reply = Conns.since(*args)
            elif cmd == "standins":
                while len(standins) < args[0]:
                    st = _timed_standin(standin.latency)
                    standins.append(st)
                reply = [st.models_url for st in standins[: args[0]]]
            elif cmd == "seed":
                vault_paths, aws_names, *which = args
                key = standins[which[0] if which else 0].current_key
                for p in vault_paths:
                    vault.put(p, {"api_key": key, "other": "kept"})
                existing = {s["Name"] for s in sm.list_secrets(MaxResults=100).get("SecretList", [])}
                for name in aws_names:
                    if name in existing:
                        sm.put_secret_value(SecretId=name, SecretString=key)
                    else:
                        sm.create_secret(Name=name, SecretString=key)
                reply = key
            elif cmd == "reset":
                st = standins[args[0] if args else 0]
                st.arrivals.clear()
                reply = st.reset()
            elif cmd == "arrivals":
                reply = list(standins[args[0] if args else 0].arrivals)
            elif cmd == "stop":
                conn.send(True)
                break
            else:
                reply = RuntimeError(f"unknown command {cmd}")
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            reply = RuntimeError(f"{cmd}: {type(exc).__name__}: {exc}")
        conn.send(reply)
    for st in standins:
        st.stop()
    vault.stop()
    moto.stop()


# ---------------------------------------------------------------- consumers


class _Farm:
    """N webhook consumers on N ports of one asyncio loop."""

    def __init__(self, hmac_key: bytes) -> None:
        self.hmac_key = hmac_key
        self.servers: list[asyncio.base_events.Server] = []
        self.latency = 0.0
        self.reload_delay = 0.0
        self.fp: list[str] = []
        self.signalled: list[float | None] = []  # arrival of the reload notice
        self.confirmed: list[float | None] = []  # answer that first reported the new fingerprint
        self.target: list[str | None] = []
        self.requests = 0

    async def setup(self, n: int, latency: float, reload_delay: float, fp: str) -> list[int]:
        for s in self.servers:
            s.close()
        self.servers = []
        self.latency, self.reload_delay = latency, reload_delay
        self.fp = [fp] * n
        self.clear()
        ports = []
        for i in range(n):
            server = await asyncio.start_server(
                lambda r, w, i=i: self._conn(i, r, w), LOOPBACK, 0, backlog=256, reuse_address=True
            )
            self.servers.append(server)
            ports.append(server.sockets[0].getsockname()[1])
        return ports

    def clear(self) -> None:
        n = len(self.fp)
        self.signalled = [None] * n
        self.confirmed = [None] * n
        self.target = [None] * n

    def collect(self) -> dict[str, Any]:
        out = {"signalled": self.signalled, "confirmed": self.confirmed, "fp": self.fp, "requests": self.requests}
        self.clear()
        return out

    async def _conn(self, i: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        Conns.opened("consumers")
        handshake = Conns.connect_latency
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), Conns.idle_timeout)
                except TimeoutError:
                    break  # idle too long: closed, as a proxy or load balancer would
                arrived = time.perf_counter() + handshake
                handshake = 0.0
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                self.requests += 1
                status, payload = self._handle(i, method, target.split("?", 1)[0], headers, body, arrived)
                wait = arrived + self.latency - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                if method == "GET" and target.startswith("/fingerprint"):
                    # The fingerprint in use when the answer leaves, not when the request came.
                    payload = {"fingerprint": self.fp[i]}
                    if self.target[i] is not None and self.fp[i] == self.target[i] and self.confirmed[i] is None:
                        self.confirmed[i] = time.perf_counter()
                raw = json.dumps(payload).encode()
                head_out = (
                    f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(raw)}\r\nCache-Control: no-store\r\n\r\n"
                ).encode()
                writer.write(head_out if method == "HEAD" else head_out + raw)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _handle(
        self, i: int, method: str, path: str, headers: dict[str, str], body: bytes, arrived: float
    ) -> tuple[int, dict[str, Any]]:
        from rotator.consumer import InvalidSignature, verify_webhook

        if method == "POST" and path == "/reload":
            try:
                verify_webhook(self.hmac_key, headers, body)
                fp = json.loads(body)["fingerprint"]
            except (InvalidSignature, ValueError, KeyError, TypeError):
                return 401, {"reloaded": False}
            self.signalled[i] = arrived
            self.target[i] = fp
            delay = arrived + self.reload_delay - time.perf_counter()
            asyncio.get_running_loop().call_later(max(delay, 0.0), self._reloaded, i, fp)
            return 200, {"reloading": True}
        if method in ("GET", "HEAD"):
            return 200, {"ok": True}
        return 405, {"error": "method not allowed"}

    def _reloaded(self, i: int, fp: str) -> None:
        self.fp[i] = fp


def consumers_main(conn: Any, hmac_key: bytes) -> None:
    """Child process: the consumer farm.  Commands over `conn`."""
    asyncio.run(_consumers(conn, hmac_key))


async def _consumers(conn: Any, hmac_key: bytes) -> None:
    farm = _Farm(hmac_key)
    loop = asyncio.get_running_loop()
    conn.send(True)
    while True:
        cmd, *args = await loop.run_in_executor(None, conn.recv)
        try:
            if cmd == "setup":
                reply: Any = await farm.setup(*args)
            elif cmd == "latency":
                farm.latency, farm.reload_delay = args
                reply = True
            elif cmd == "collect":
                reply = farm.collect()
            elif cmd == "conns":
                Conns.idle_timeout, Conns.connect_latency = args
                reply = True
            elif cmd == "accepted":
                reply = Conns.since(*args)
            elif cmd == "stop":
                conn.send(True)
                break
            else:
                reply = RuntimeError(f"unknown command {cmd}")
        except Exception as exc:  # noqa: BLE001
            reply = RuntimeError(f"{cmd}: {type(exc).__name__}: {exc}")
        conn.send(reply)
    for s in farm.servers:
        s.close()
