"""A Vault-protocol server on loopback: a **test double**, not Vault.

No Vault binary can be installed where rotator's tests run, so this module
answers the small part of Vault's HTTP API that rotator's ``vault`` backend
uses, following the shapes and status codes in Vault's API documentation:

* ``GET /v1/sys/health`` (unauthenticated): 200 when unsealed and active, 503
  when sealed (``sealedcode`` / ``activecode`` / ``uninitcode`` honoured).
* ``GET /v1/auth/token/lookup-self``: the token's ``ttl``, ``policies``, ...
* ``POST /v1/sys/capabilities-self`` ``{"paths": [...]}``: capabilities per path.
* ``GET /v1/sys/internal/ui/mounts/<path>``: the mount's type and KV version
  (what ``vault kv`` asks first).
* ``POST /v1/auth/<mount>/login``: AppRole (``role_id`` / ``secret_id``) and
  Kubernetes (``role`` / ``jwt``) logins, which issue a new token.
* KV v2 at a mount: ``GET/POST/PUT/DELETE /v1/<mount>/data/<path>`` (``options.cas``
  check-and-set, every version kept, ``?version=N``) and
  ``GET /v1/<mount>/metadata/<path>``.
* KV v1 at a mount: ``GET/POST/PUT/DELETE /v1/<mount>/<path>``.

Every other request needs a valid ``X-Vault-Token``; a token that is unknown,
expired, or whose capabilities do not cover the path gets 403
``{"errors":["permission denied"]}``, as Vault answers.  A missing secret is
404 ``{"errors":[]}``.  While `sealed` is set, everything but ``sys/health`` is
503 ``{"errors":["Vault is sealed"]}``.

For tests and benchmarks it also has: per-token capabilities and TTLs,
injected latency (`latency` seconds per request), injected failures
(`fail_next`, including "do the write, then lose the response"), counters
(`writes`, `requests`), and direct access to the stored data (`put`, `get`).

Threaded (one thread per connection, HTTP/1.1 keep-alive, a deep listen
backlog), so hundreds of concurrent clients work.  Optional TLS, with client
certificates, for testing ``ca_cert`` / ``client_cert``.

Example::

    with VaultServer(tokens={"t0k": ROOT}) as vault:
        client = hvac.Client(url=vault.url, token="t0k")

In its own process (so its threads do not share the caller's GIL, e.g. for a
benchmark): ``python -m rotator.testing.vaultserver --token t0k --latency 0.02``
prints its URL on the first line of stdout and serves until interrupted.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import signal
import ssl
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from rotator.testing._http import Exchange, LoopbackServer, Served
from rotator.testing.vault_auth import ROOT, Caps, Login, TokenAuth, VaultToken
from rotator.testing.vault_http import DROP, HTTPServer, RequestRecord
from rotator.testing.vault_http import Handler as _Handler  # benchmarks/_services.py tunes it
from rotator.testing.vault_kv import KVStore
from rotator.testing.vault_wire import Reply, envelope, errors

__all__ = ["DROP", "ROOT", "RequestRecord", "VaultServer", "VaultToken"]

VAULT_VERSION = "1.15.6"


@dataclass
class _Failure:
    status: int
    contains: str
    method: str | None
    after: bool


class VaultServer(Served):
    """A threaded Vault-protocol HTTP server on 127.0.0.1 (a test double).

    `tokens` maps token strings to a `VaultToken`, to a capabilities dict, or
    to `ROOT`.  `mounts` maps KV mount paths to their version (1 or 2).
    Token auth is `vault_auth`'s, the KV engines `vault_kv`'s; this class routes
    the requests, injects latency and failures, and counts.
    """

    thread_name = "vault-double"

    def __init__(
        self,
        tokens: dict[str, VaultToken | Caps] | None = None,
        *,
        latency: float = 0.0,
        mounts: dict[str, int] | None = None,
        cas_required: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
        client_ca: str | Path | None = None,
        record_limit: int = 10_000,
    ) -> None:
        self.latency = latency
        self.sealed = False
        self.initialized = True
        self._lock = threading.Lock()
        self.kv = KVStore(dict(mounts or {"secret": 2}), self._lock, cas_required=cas_required)
        self.auth = TokenAuth(self._lock)
        for tok, spec in (tokens or {}).items():
            self.add_token(tok, spec)
        self._failures: list[_Failure] = []
        self._requests = 0
        self.records: deque[RequestRecord] = deque(maxlen=record_limit)
        # Every request and answer, bodies included, when a test sets a list here (never logged).
        self.exchanges: list[Exchange] | None = None
        self._host = host
        self._port = port
        self._tls = (certfile, keyfile, client_ca)

    @property
    def mounts(self) -> dict[str, int]:
        """KV mount path -> KV version (1 or 2); a test may add one."""
        return self.kv.mounts

    @mounts.setter
    def mounts(self, value: dict[str, int]) -> None:
        self.kv.mounts = value

    @property
    def cas_required(self) -> bool:
        """Every KV v2 write must carry check-and-set (the mount's ``cas_required``)."""
        return self.kv.cas_required

    @cas_required.setter
    def cas_required(self, value: bool) -> None:
        self.kv.cas_required = value

    # -- lifecycle ---------------------------------------------------------

    def _make_server(self) -> LoopbackServer:
        httpd = HTTPServer(self._host, self._port, _Handler)
        httpd.vault = self
        certfile, keyfile, client_ca = self._tls
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
            if client_ca:
                ctx.load_verify_locations(str(client_ca))
                ctx.verify_mode = ssl.CERT_REQUIRED
            # The handshake happens in the connection's thread, not in accept().
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        return httpd

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._tls[0] else "http"
        return f"{scheme}://{self._host}:{self.port}"

    # -- configuration -----------------------------------------------------

    def add_token(self, token: str, spec: VaultToken | Caps = ROOT, *, ttl: int = 0) -> VaultToken:
        return self.auth.add(token, spec, ttl=ttl)

    def revoke_token(self, token: str) -> None:
        self.auth.tokens.pop(token, None)

    def add_approle(
        self,
        role_id: str,
        secret_id: str | None,
        capabilities: Caps = ROOT,
        *,
        ttl: int = 3600,
        mount: str = "approle",
        policies: list[str] | None = None,
    ) -> None:
        """`secret_id` None: the role has ``bind_secret_id = false``."""
        self.auth.logins.append(Login(mount, "approle", role_id, secret_id, capabilities, ttl, policies or ["default"]))

    def add_kubernetes_role(
        self,
        role: str,
        jwt: str,
        capabilities: Caps = ROOT,
        *,
        ttl: int = 3600,
        mount: str = "kubernetes",
        policies: list[str] | None = None,
    ) -> None:
        self.auth.logins.append(Login(mount, "kubernetes", role, jwt, capabilities, ttl, policies or ["default"]))

    def fail_next(
        self, count: int = 1, status: int = 500, *, contains: str = "", method: str | None = None, after: bool = False
    ) -> None:
        """Answer the next `count` requests whose path contains `contains` with `status`.

        ``after=True`` performs the request first and then answers with the
        error (a write whose response is lost).  ``status=DROP`` closes the
        connection without an answer.
        """
        with self._lock:
            for _ in range(count):
                self._failures.append(_Failure(status, contains, method.upper() if method else None, after))

    # -- direct access to the stored data (no auth, not counted) ------------

    def put(self, path: str, data: dict[str, Any], mount: str = "secret") -> int:
        """Store `data` as a new version (KV v2) or the value (KV v1); returns the version (0 for v1)."""
        return self.kv.put(path, data, mount)

    def get(self, path: str, mount: str = "secret", version: int | None = None) -> dict[str, Any] | None:
        return self.kv.get(path, mount, version)

    def current_version(self, path: str, mount: str = "secret") -> int:
        return self.kv.current_version(path, mount)

    def versions(self, path: str, mount: str = "secret") -> list[int]:
        return self.kv.versions(path, mount)

    @property
    def writes(self) -> int:
        """Successful writes of secret data through the API."""
        return self.kv.writes

    @property
    def requests(self) -> int:
        return self._requests

    def reset_counters(self) -> None:
        with self._lock:
            self.kv.writes = 0
            self._requests = 0
            self.records.clear()

    # -- request handling --------------------------------------------------

    def _take_failure(self, method: str, path: str) -> _Failure | None:
        with self._lock:
            for i, f in enumerate(self._failures):
                if f.contains in path and (f.method is None or f.method == method):
                    return self._failures.pop(i)
        return None

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """Answer one request: (status, JSON body or None).  Status `DROP`: close without answering."""
        if self.latency:
            time.sleep(self.latency)
        parts = urlsplit(target)
        with self._lock:
            self._requests += 1
        failure = self._take_failure(method, parts.path)
        if failure is not None and not failure.after:
            return (DROP, None) if failure.status == DROP else errors(failure.status, "injected failure")
        reply = self._route(method, parts.path, parse_qs(parts.query), headers, body)
        if failure is not None:
            return (DROP, None) if failure.status == DROP else errors(failure.status, "injected failure")
        return reply

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Reply:
        if not path.startswith("/v1/"):
            return errors(404)
        rel = unquote(path[len("/v1/") :]).strip("/")
        while "//" in rel:
            rel = rel.replace("//", "/")
        if rel == "sys/health" and method in ("GET", "HEAD"):
            return self._health(query)
        if self.sealed:
            return errors(503, "Vault is sealed")
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return errors(400, "failed to parse JSON input")
        if not isinstance(payload, dict):
            return errors(400, "failed to parse JSON input")
        m = re.fullmatch(r"auth/(.+)/login", rel)
        if m and method in ("POST", "PUT"):
            return self.auth.login(m.group(1), payload)
        tok = self.auth.token(headers.get("x-vault-token"))
        if tok is None:
            return errors(403, "permission denied")
        return self._with_token(tok, method, rel, query, headers, payload)

    def _with_token(
        self,
        tok: VaultToken,
        method: str,
        rel: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        payload: dict[str, Any],
    ) -> Reply:
        """The routes a valid token reaches: its own lookup, mounts, capabilities, the KV engines."""
        if rel == "auth/token/lookup-self" and method == "GET":
            return self.auth.lookup_self(tok, headers.get("x-vault-token", ""))
        if rel.startswith("sys/internal/ui/mounts/") and method == "GET":
            return self._mount_info(tok, rel[len("sys/internal/ui/mounts/") :])
        if rel == "sys/capabilities-self" and method in ("POST", "PUT"):
            paths = payload.get("paths")
            if isinstance(paths, str):
                paths = [paths]
            if not isinstance(paths, list) or not paths:
                return errors(400, "missing paths")
            return self.auth.capabilities(tok, [str(p) for p in paths])
        mount, _, rest = rel.partition("/")
        version = self.mounts.get(mount)
        allowed = functools.partial(self.auth.allowed, tok)
        if version == 2:
            return self.kv.kv2(allowed, method, mount, rest, query, payload)
        if version == 1:
            return self.kv.kv1(allowed, method, mount, rest, payload)
        return errors(404, f'no handler for route "{rel}". route entry not found.')

    def _health(self, query: dict[str, list[str]]) -> Reply:
        def code(name: str, default: int) -> int:
            try:
                return int(query[name][0])
            except (KeyError, ValueError, IndexError):
                return default

        body = {
            "initialized": self.initialized,
            "sealed": self.sealed,
            "standby": False,
            "performance_standby": False,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": int(time.time()),
            "version": VAULT_VERSION,
            "cluster_name": "vault-cluster-rotator-test",
            "cluster_id": "00000000-0000-4000-8000-000000000000",
        }
        if not self.initialized:
            return code("uninitcode", 501), body
        if self.sealed:
            return code("sealedcode", 503), body
        return code("activecode", 200), body

    def _mount_info(self, tok: VaultToken, path: str) -> Reply:
        """What ``vault kv`` asks to learn a mount's KV version (any capability under it will do)."""
        mount = path.split("/", 1)[0]
        version = self.mounts.get(mount)
        if version is None:
            return errors(403, "permission denied")
        if tok.capabilities != ROOT:
            assert isinstance(tok.capabilities, dict)
            if not any(p.startswith(mount + "/") or p == mount for p in tok.capabilities):
                return errors(403, "permission denied")
        data = {
            "accessor": f"kv_{mount}",
            "config": {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0},
            "description": "key/value secret storage",
            "external_entropy_access": False,
            "local": False,
            "options": {"version": str(version)},
            "path": f"{mount}/",
            "seal_wrap": False,
            "type": "kv",
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, mount)),
        }
        return 200, envelope(data)

    def record(self, rec: RequestRecord) -> None:
        """Keep what the HTTP handler saw of one request (`records`)."""
        self.records.append(rec)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the URL is the first line printed."""
    parser = argparse.ArgumentParser(prog="python -m rotator.testing.vaultserver", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", action="append", default=[], help="a root token (repeatable)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--mount", action="append", default=[], help="MOUNT=VERSION, e.g. secret=2 (repeatable)")
    args = parser.parse_args(argv)
    mounts = dict((m.split("=", 1)[0], int(m.split("=", 1)[1])) for m in args.mount) or None
    server = VaultServer(tokens={t: ROOT for t in args.token}, latency=args.latency, mounts=mounts, port=args.port)
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(server.url, flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
