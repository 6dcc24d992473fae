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
import json
import re
import secrets
import signal
import ssl
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from rotator.testing._http import Exchange, LoopbackServer, Served, parsed

__all__ = ["DROP", "ROOT", "RequestRecord", "VaultServer", "VaultToken"]

ROOT = "root"
"""Capabilities spec meaning "the root policy": every capability on every path."""

DROP = 0
"""`fail_next` status meaning: close the connection without answering."""

VAULT_VERSION = "1.15.6"

_Caps = dict[str, list[str]] | str


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class VaultToken:
    """A token the server accepts.

    `capabilities` maps ACL path patterns (as in a Vault policy: exact, a
    trailing ``*``, or ``+`` for one segment) to capabilities (``read``,
    ``create``, ``update``, ``delete``, ``list``, ``deny``), or is `ROOT`.
    `ttl` 0 means the token never expires (like a root token).
    """

    capabilities: _Caps = ROOT
    ttl: int = 0
    policies: list[str] = field(default_factory=lambda: ["default"])
    renewable: bool = False
    display_name: str = "token"
    path: str = "auth/token/create"
    meta: dict[str, str] | None = None
    created: float = field(default_factory=time.time)
    accessor: str = field(default_factory=lambda: secrets.token_hex(12))

    def remaining(self, now: float) -> int:
        if not self.ttl:
            return 0
        return max(0, int(self.created + self.ttl - now))

    def expired(self, now: float) -> bool:
        return bool(self.ttl) and now >= self.created + self.ttl


@dataclass
class _Login:
    mount: str
    kind: str  # "approle" | "kubernetes"
    ident: str  # role_id or role name
    credential: str | None  # secret_id or jwt
    capabilities: _Caps
    ttl: int
    policies: list[str]


@dataclass
class _Version:
    data: dict[str, Any]
    created: float
    deleted: float | None = None
    destroyed: bool = False

    def metadata(self, number: int) -> dict[str, Any]:
        return {
            "created_time": _rfc3339(self.created),
            "custom_metadata": None,
            "deletion_time": _rfc3339(self.deleted) if self.deleted else "",
            "destroyed": self.destroyed,
            "version": number,
        }


@dataclass
class _Entry:
    versions: dict[int, _Version] = field(default_factory=dict)
    current: int = 0
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    plain: dict[str, Any] | None = None  # KV v1


@dataclass
class _Failure:
    status: int
    contains: str
    method: str | None
    after: bool


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it (no bodies, no token values)."""

    method: str
    path: str
    namespace: str | None
    has_token: bool
    status: int


_Reply = tuple[int, dict[str, Any] | None]


def _errors(status: int, *messages: str) -> _Reply:
    return status, {"errors": list(messages)}


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    for i, part in enumerate(re.split(r"(\+|\*$)", pattern)):
        if part == "+" and i % 2:
            out += "[^/]+"
        elif part == "*" and i % 2:
            out += ".*"
        else:
            out += re.escape(part)
    return re.compile(out)


class VaultServer(Served):
    """A threaded Vault-protocol HTTP server on 127.0.0.1 (a test double).

    `tokens` maps token strings to a `VaultToken`, to a capabilities dict, or
    to `ROOT`.  `mounts` maps KV mount paths to their version (1 or 2).
    """

    thread_name = "vault-double"

    def __init__(
        self,
        tokens: dict[str, VaultToken | _Caps] | None = None,
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
        self.cas_required = cas_required
        self.mounts: dict[str, int] = dict(mounts or {"secret": 2})
        self._tokens: dict[str, VaultToken] = {}
        for tok, spec in (tokens or {}).items():
            self.add_token(tok, spec)
        self._logins: list[_Login] = []
        self._kv: dict[tuple[str, str], _Entry] = {}
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._writes = 0
        self._requests = 0
        self.records: deque[RequestRecord] = deque(maxlen=record_limit)
        # Every request and answer, bodies included, when a test sets a list here (never logged).
        self.exchanges: list[Exchange] | None = None
        self._host = host
        self._port = port
        self._tls = (certfile, keyfile, client_ca)

    # -- lifecycle ---------------------------------------------------------

    def _make_server(self) -> LoopbackServer:
        httpd = _HTTPServer(self._host, self._port, _Handler)
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

    def add_token(self, token: str, spec: VaultToken | _Caps = ROOT, *, ttl: int = 0) -> VaultToken:
        if isinstance(spec, VaultToken):
            tok = spec
        elif spec == ROOT:
            tok = VaultToken(ROOT, ttl=ttl, policies=["root"], display_name="root")
        else:
            tok = VaultToken(spec, ttl=ttl)
        self._tokens[token] = tok
        return tok

    def revoke_token(self, token: str) -> None:
        self._tokens.pop(token, None)

    def add_approle(
        self,
        role_id: str,
        secret_id: str | None,
        capabilities: _Caps = ROOT,
        *,
        ttl: int = 3600,
        mount: str = "approle",
        policies: list[str] | None = None,
    ) -> None:
        """`secret_id` None: the role has ``bind_secret_id = false``."""
        self._logins.append(_Login(mount, "approle", role_id, secret_id, capabilities, ttl, policies or ["default"]))

    def add_kubernetes_role(
        self,
        role: str,
        jwt: str,
        capabilities: _Caps = ROOT,
        *,
        ttl: int = 3600,
        mount: str = "kubernetes",
        policies: list[str] | None = None,
    ) -> None:
        self._logins.append(_Login(mount, "kubernetes", role, jwt, capabilities, ttl, policies or ["default"]))

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
        with self._lock:
            return self._store(mount, path.strip("/"), dict(data))

    def get(self, path: str, mount: str = "secret", version: int | None = None) -> dict[str, Any] | None:
        with self._lock:
            entry = self._kv.get((mount, path.strip("/")))
            if entry is None:
                return None
            if self.mounts.get(mount) == 1:
                return dict(entry.plain) if entry.plain is not None else None
            ver = entry.versions.get(version or entry.current)
            if ver is None or ver.deleted or ver.destroyed:
                return None
            return dict(ver.data)

    def current_version(self, path: str, mount: str = "secret") -> int:
        with self._lock:
            entry = self._kv.get((mount, path.strip("/")))
            return entry.current if entry else 0

    def versions(self, path: str, mount: str = "secret") -> list[int]:
        with self._lock:
            entry = self._kv.get((mount, path.strip("/")))
            return sorted(entry.versions) if entry else []

    @property
    def writes(self) -> int:
        """Successful writes of secret data through the API."""
        return self._writes

    @property
    def requests(self) -> int:
        return self._requests

    def reset_counters(self) -> None:
        with self._lock:
            self._writes = 0
            self._requests = 0
            self.records.clear()

    # -- request handling --------------------------------------------------

    def _token(self, value: str | None) -> VaultToken | None:
        if not value:
            return None
        tok = self._tokens.get(value)
        if tok is None or tok.expired(time.time()):
            return None
        return tok

    @staticmethod
    def _caps(tok: VaultToken, acl_path: str) -> list[str]:
        if tok.capabilities == ROOT:
            return ["root"]
        assert isinstance(tok.capabilities, dict)
        best: tuple[int, int] | None = None
        found: list[str] = []
        for pattern, caps in tok.capabilities.items():
            if not _pattern_regex(pattern).fullmatch(acl_path):
                continue
            rank = (0 if ("*" in pattern or "+" in pattern) else 1, len(pattern))
            if best is None or rank > best:
                best, found = rank, list(caps)
        if not found or "deny" in found:
            return ["deny"]
        return sorted(set(found))

    def _allowed(self, tok: VaultToken, acl_path: str, capability: str) -> bool:
        caps = self._caps(tok, acl_path)
        return "root" in caps or capability in caps

    def _store(self, mount: str, path: str, data: dict[str, Any]) -> int:
        now = time.time()
        entry = self._kv.setdefault((mount, path), _Entry(created=now, updated=now))
        entry.updated = now
        if self.mounts.get(mount) == 1:
            entry.plain = data
            return 0
        entry.current += 1
        entry.versions[entry.current] = _Version(data, now)
        return entry.current

    def _take_failure(self, method: str, path: str) -> _Failure | None:
        with self._lock:
            for i, f in enumerate(self._failures):
                if f.contains in path and (f.method is None or f.method == method):
                    return self._failures.pop(i)
        return None

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Reply:
        """Answer one request: (status, JSON body or None).  Status `DROP`: close without answering."""
        if self.latency:
            time.sleep(self.latency)
        parts = urlsplit(target)
        with self._lock:
            self._requests += 1
        failure = self._take_failure(method, parts.path)
        if failure is not None and not failure.after:
            return (DROP, None) if failure.status == DROP else _errors(failure.status, "injected failure")
        reply = self._route(method, parts.path, parse_qs(parts.query), headers, body)
        if failure is not None:
            return (DROP, None) if failure.status == DROP else _errors(failure.status, "injected failure")
        return reply

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> _Reply:
        if not path.startswith("/v1/"):
            return _errors(404)
        rel = unquote(path[len("/v1/") :]).strip("/")
        while "//" in rel:
            rel = rel.replace("//", "/")
        if rel == "sys/health" and method in ("GET", "HEAD"):
            return self._health(query)
        if self.sealed:
            return _errors(503, "Vault is sealed")
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return _errors(400, "failed to parse JSON input")
        if not isinstance(payload, dict):
            return _errors(400, "failed to parse JSON input")
        m = re.fullmatch(r"auth/(.+)/login", rel)
        if m and method in ("POST", "PUT"):
            return self._login(m.group(1), payload)
        tok = self._token(headers.get("x-vault-token"))
        if tok is None:
            return _errors(403, "permission denied")
        if rel == "auth/token/lookup-self" and method == "GET":
            return self._lookup_self(tok, headers.get("x-vault-token", ""))
        if rel.startswith("sys/internal/ui/mounts/") and method == "GET":
            return self._mount_info(tok, rel[len("sys/internal/ui/mounts/") :])
        if rel == "sys/capabilities-self" and method in ("POST", "PUT"):
            paths = payload.get("paths")
            if isinstance(paths, str):
                paths = [paths]
            if not isinstance(paths, list) or not paths:
                return _errors(400, "missing paths")
            return self._capabilities(tok, [str(p) for p in paths])
        mount, _, rest = rel.partition("/")
        version = self.mounts.get(mount)
        if version == 2:
            return self._kv2(tok, method, mount, rest, query, payload)
        if version == 1:
            return self._kv1(tok, method, mount, rest, payload)
        return _errors(404, f'no handler for route "{rel}". route entry not found.')

    def _envelope(self, data: Any = None, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": data,
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }
        out.update(extra)
        return out

    def _health(self, query: dict[str, list[str]]) -> _Reply:
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

    def _issue(self, login: _Login, meta: dict[str, str]) -> _Reply:
        token = "hvs." + secrets.token_urlsafe(24)
        tok = VaultToken(
            login.capabilities,
            ttl=login.ttl,
            policies=list(login.policies),
            renewable=True,
            display_name=f"{login.kind}-{login.ident}",
            path=f"auth/{login.mount}/login",
            meta=meta,
        )
        with self._lock:
            self._tokens[token] = tok
        auth = {
            "client_token": token,
            "accessor": tok.accessor,
            "policies": tok.policies,
            "token_policies": tok.policies,
            "metadata": meta,
            "lease_duration": login.ttl,
            "renewable": True,
            "entity_id": "",
            "token_type": "service",
            "orphan": True,
        }
        return 200, self._envelope(None, auth=auth)

    def _login(self, mount: str, payload: dict[str, Any]) -> _Reply:
        logins = [lg for lg in self._logins if lg.mount == mount]
        if not logins:
            return _errors(404, f'no handler for route "auth/{mount}/login". route entry not found.')
        kind = logins[0].kind
        if kind == "approle":
            role_id = payload.get("role_id")
            if not role_id:
                return _errors(400, "missing role_id")
            for lg in logins:
                if lg.ident == role_id:
                    if lg.credential is not None and payload.get("secret_id") != lg.credential:
                        return _errors(400, "invalid role or secret ID")
                    return self._issue(lg, {"role_name": f"role-{role_id[:8]}"})
            return _errors(400, "invalid role or secret ID")
        role, jwt = payload.get("role"), payload.get("jwt")
        if not role:
            return _errors(400, "missing role")
        if not jwt:
            return _errors(400, "missing jwt")
        for lg in logins:
            if lg.ident == role:
                if jwt != lg.credential:
                    return _errors(403, "permission denied")
                return self._issue(lg, {"role": role, "service_account_name": "rotator"})
        return _errors(400, f'invalid role name "{role}"')

    def _lookup_self(self, tok: VaultToken, token_id: str) -> _Reply:
        now = time.time()
        data = {
            "accessor": tok.accessor,
            "creation_time": int(tok.created),
            "creation_ttl": tok.ttl,
            "display_name": tok.display_name,
            "entity_id": "",
            "expire_time": _rfc3339(tok.created + tok.ttl) if tok.ttl else None,
            "explicit_max_ttl": 0,
            "id": token_id,
            "issue_time": _rfc3339(tok.created),
            "meta": tok.meta,
            "num_uses": 0,
            "orphan": True,
            "path": tok.path,
            "policies": tok.policies,
            "renewable": tok.renewable,
            "ttl": tok.remaining(now),
            "type": "service",
        }
        return 200, self._envelope(data)

    def _mount_info(self, tok: VaultToken, path: str) -> _Reply:
        """What ``vault kv`` asks to learn a mount's KV version (any capability under it will do)."""
        mount = path.split("/", 1)[0]
        version = self.mounts.get(mount)
        if version is None:
            return _errors(403, "permission denied")
        if tok.capabilities != ROOT:
            assert isinstance(tok.capabilities, dict)
            if not any(p.startswith(mount + "/") or p == mount for p in tok.capabilities):
                return _errors(403, "permission denied")
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
        return 200, self._envelope(data)

    def _capabilities(self, tok: VaultToken, paths: list[str]) -> _Reply:
        result: dict[str, Any] = {p: self._caps(tok, p.strip("/")) for p in paths}
        if len(paths) == 1:
            result["capabilities"] = result[paths[0]]
        body = self._envelope(dict(result))
        body.update(result)
        return 200, body

    def _kv2(
        self, tok: VaultToken, method: str, mount: str, rest: str, query: dict[str, list[str]], payload: dict[str, Any]
    ) -> _Reply:
        kind, _, path = rest.partition("/")
        if kind not in ("data", "metadata") or not path:
            return _errors(404)
        acl = f"{mount}/{kind}/{path}"
        key = (mount, path)
        if kind == "metadata":
            if method != "GET":
                return _errors(405, "unsupported operation")
            if not self._allowed(tok, acl, "read"):
                return _errors(403, "permission denied")
            with self._lock:
                entry = self._kv.get(key)
                if entry is None or not entry.versions:
                    return _errors(404)
                data = {
                    "cas_required": self.cas_required,
                    "created_time": _rfc3339(entry.created),
                    "current_version": entry.current,
                    "custom_metadata": None,
                    "delete_version_after": "0s",
                    "max_versions": 0,
                    "oldest_version": 0,
                    "updated_time": _rfc3339(entry.updated),
                    "versions": {
                        str(n): {k: v for k, v in ver.metadata(n).items() if k not in ("version", "custom_metadata")}
                        for n, ver in sorted(entry.versions.items())
                    },
                }
            return 200, self._envelope(data)
        if method == "GET":
            if not self._allowed(tok, acl, "read"):
                return _errors(403, "permission denied")
            try:
                wanted = int(query.get("version", ["0"])[0])
            except ValueError:
                return _errors(400, "invalid version")
            with self._lock:
                entry = self._kv.get(key)
                if entry is None or not entry.versions:
                    return _errors(404)
                number = wanted or entry.current
                ver = entry.versions.get(number)
                if ver is None:
                    return _errors(404)
                meta = ver.metadata(number)
                if ver.deleted or ver.destroyed:
                    # Vault answers 404 with the version's metadata and no data.
                    return 404, self._envelope({"data": None, "metadata": meta})
                return 200, self._envelope({"data": dict(ver.data), "metadata": meta})
        if method in ("POST", "PUT"):
            new_data = payload.get("data")
            if not isinstance(new_data, dict):
                return _errors(400, "no data provided")
            options = payload.get("options") or {}
            cas = options.get("cas") if isinstance(options, dict) else None
            with self._lock:
                entry = self._kv.get(key)
                exists = entry is not None and bool(entry.versions)
                if not self._allowed(tok, acl, "update" if exists else "create"):
                    return _errors(403, "permission denied")
                # Vault's OpenAPI has no error bodies: these are the KV v2 plugin's own words and status
                # (vault-plugin-secrets-kv path_data.go: logical.ErrorResponse + ErrInvalidRequest, HTTP 400),
                # as the KV v2 API docs describe check-and-set ("cas" option, "cas_required").
                if cas is None and self.cas_required:
                    return _errors(400, "check-and-set parameter required for this call")
                if cas is not None:
                    try:
                        cas_value = int(cas)
                    except (TypeError, ValueError):
                        return _errors(400, "invalid cas parameter")
                    if cas_value != (entry.current if entry else 0):
                        return _errors(400, "check-and-set parameter did not match the current version")
                number = self._store(mount, path, dict(new_data))
                self._writes += 1
                meta = self._kv[key].versions[number].metadata(number)
            return 200, self._envelope(meta)
        if method == "DELETE":
            if not self._allowed(tok, acl, "delete"):
                return _errors(403, "permission denied")
            with self._lock:
                entry = self._kv.get(key)
                if entry is not None and entry.current in entry.versions:
                    entry.versions[entry.current].deleted = time.time()
            return 204, None
        return _errors(405, "unsupported operation")

    def _kv1(self, tok: VaultToken, method: str, mount: str, path: str, payload: dict[str, Any]) -> _Reply:
        if not path:
            return _errors(404)
        acl = f"{mount}/{path}"
        key = (mount, path)
        with self._lock:
            entry = self._kv.get(key)
            exists = entry is not None and entry.plain is not None
            if method == "GET":
                if not self._allowed(tok, acl, "read"):
                    return _errors(403, "permission denied")
                if not exists:
                    return _errors(404)
                assert entry is not None and entry.plain is not None
                return 200, self._envelope(dict(entry.plain), lease_duration=2764800)
            if method in ("POST", "PUT"):
                if not self._allowed(tok, acl, "update" if exists else "create"):
                    return _errors(403, "permission denied")
                self._store(mount, path, dict(payload))
                self._writes += 1
                return 204, None
            if method == "DELETE":
                if not self._allowed(tok, acl, "delete"):
                    return _errors(403, "permission denied")
                self._kv.pop(key, None)
                return 204, None
        return _errors(405, "unsupported operation")

    def _record(self, rec: RequestRecord) -> None:
        self.records.append(rec)


class _HTTPServer(LoopbackServer):
    vault: VaultServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle and
    # the client's delayed ACK add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server_version = "rotator-vault-double"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                self.close_connection = True
                raise

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests carry tokens and secrets

    def _dispatch(self) -> None:
        vault = self.server.vault
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, reply = vault.handle(self.command, self.path, headers, body)
        vault._record(
            RequestRecord(
                self.command,
                urlsplit(self.path).path,
                headers.get("x-vault-namespace"),
                "x-vault-token" in headers,
                status,
            )
        )
        if vault.exchanges is not None and status != DROP:
            path, _, query = self.path.partition("?")
            ctype = headers.get("content-type", "")
            vault.exchanges.append(Exchange(self.command, path, query, ctype, parsed(body, "json"), status, reply))
        if status == DROP:
            self.close_connection = True
            return
        raw = json.dumps(reply).encode() if reply is not None else b""
        self.send_response(status)
        if raw:
            self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if raw and self.command != "HEAD":
            self.wfile.write(raw)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_LIST = _dispatch


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
