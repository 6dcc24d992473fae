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

Both are driven over a multiprocessing pipe: ``(command, *args)`` in, a reply out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from typing import Any

from rotator.testing import moto_env

LOOPBACK = "127.0.0.1"
VAULT_TOKEN = "bench-root-token"
AWS_REGION = moto_env.REGION
AWS_ENV = moto_env.ENV


# ---------------------------------------------------------------- backends


def _timed_standin(latency: float) -> Any:
    """An AdjutorStandIn whose keyed requests are timestamped on arrival."""
    from rotator.testing.adjutor import MODELS_PATH, AdjutorStandIn, _StandInHandler, _StandInServer

    class Handler(_StandInHandler):
        def parse_request(self) -> bool:
            # Called as soon as the request line is in: the request's first bytes.
            self._arrived = time.perf_counter()
            return super().parse_request()

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == MODELS_PATH and self.headers.get("Authorization"):
                self.server.standin.arrivals.append(self._arrived)
            super().do_GET()

    class Server(_StandInServer):
        handler = Handler

    class TimedStandIn(AdjutorStandIn):
        server_class = Server

        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.arrivals: list[float] = []

    return TimedStandIn(latency=latency).start()


class _MotoServer:
    """moto's server (its WSGI app, threaded werkzeug, as ThreadedMotoServer runs it)
    with a latency added before each request is handled."""

    def __init__(self, latency: float) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import WSGIRequestHandler, make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.latency = latency
        app = DomainDispatcherApplication(create_backend_app)

        def delayed(environ: Any, start_response: Any) -> Any:
            # Answered `latency` after it arrived: moto's own processing (a few ms)
            # counts toward the latency, as a real service's does.
            arrived = time.perf_counter()
            result = app(environ, start_response)
            wait = arrived + self.latency - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            return result

        class Handler(WSGIRequestHandler):
            disable_nagle_algorithm = True

            def log_request(self, *a: Any, **k: Any) -> None:
                pass

        self._server = make_server(LOOPBACK, 0, delayed, threaded=True, request_handler=Handler)
        self._server.daemon_threads = True
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

    standin = _timed_standin(0.0)
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
                standin.latency, vault.answer_in, moto.latency = probe, vault_l, aws
                reply: Any = True
            elif cmd == "seed":
                vault_paths, aws_names = args
                key = standin.current_key
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
                standin.arrivals.clear()
                reply = standin.reset()
            elif cmd == "arrivals":
                reply = list(standin.arrivals)
            elif cmd == "stop":
                conn.send(True)
                break
            else:
                reply = RuntimeError(f"unknown command {cmd}")
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            reply = RuntimeError(f"{cmd}: {type(exc).__name__}: {exc}")
        conn.send(reply)
    standin.stop()
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
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.perf_counter()
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
