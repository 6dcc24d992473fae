"""Token auth of the Vault-protocol double: tokens with capabilities and TTLs, policies'
path patterns, AppRole and Kubernetes logins, ``auth/token/lookup-self`` and
``sys/capabilities-self``."""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rotator.testing.vault_wire import Reply, envelope, errors, rfc3339

ROOT = "root"
"""Capabilities spec meaning "the root policy": every capability on every path."""

Caps = dict[str, list[str]] | str


@dataclass
class VaultToken:
    """A token the server accepts.

    `capabilities` maps ACL path patterns (as in a Vault policy: exact, a
    trailing ``*``, or ``+`` for one segment) to capabilities (``read``,
    ``create``, ``update``, ``delete``, ``list``, ``deny``), or is `ROOT`.
    `ttl` 0 means the token never expires (like a root token).
    """

    capabilities: Caps = ROOT
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
class Login:
    mount: str
    kind: str  # "approle" | "kubernetes"
    ident: str  # role_id or role name
    credential: str | None  # secret_id or jwt
    capabilities: Caps
    ttl: int
    policies: list[str]


def pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    for i, part in enumerate(re.split(r"(\+|\*$)", pattern)):
        if part == "+" and i % 2:
            out += "[^/]+"
        elif part == "*" and i % 2:
            out += ".*"
        else:
            out += re.escape(part)
    return re.compile(out)


class TokenAuth:
    """The tokens and logins a server accepts (`lock` is the server's)."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.tokens: dict[str, VaultToken] = {}
        self.logins: list[Login] = []

    def add(self, token: str, spec: VaultToken | Caps = ROOT, *, ttl: int = 0) -> VaultToken:
        if isinstance(spec, VaultToken):
            tok = spec
        elif spec == ROOT:
            tok = VaultToken(ROOT, ttl=ttl, policies=["root"], display_name="root")
        else:
            tok = VaultToken(spec, ttl=ttl)
        self.tokens[token] = tok
        return tok

    def token(self, value: str | None) -> VaultToken | None:
        if not value:
            return None
        tok = self.tokens.get(value)
        if tok is None or tok.expired(time.time()):
            return None
        return tok

    @staticmethod
    def caps(tok: VaultToken, acl_path: str) -> list[str]:
        if tok.capabilities == ROOT:
            return ["root"]
        assert isinstance(tok.capabilities, dict)
        best: tuple[int, int] | None = None
        found: list[str] = []
        for pattern, caps in tok.capabilities.items():
            if not pattern_regex(pattern).fullmatch(acl_path):
                continue
            rank = (0 if ("*" in pattern or "+" in pattern) else 1, len(pattern))
            if best is None or rank > best:
                best, found = rank, list(caps)
        if not found or "deny" in found:
            return ["deny"]
        return sorted(set(found))

    def allowed(self, tok: VaultToken, acl_path: str, capability: str) -> bool:
        caps = self.caps(tok, acl_path)
        return "root" in caps or capability in caps

    def _issue(self, login: Login, meta: dict[str, str]) -> Reply:
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
            self.tokens[token] = tok
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
        return 200, envelope(None, auth=auth)

    def login(self, mount: str, payload: dict[str, Any]) -> Reply:
        logins = [lg for lg in self.logins if lg.mount == mount]
        if not logins:
            return errors(404, f'no handler for route "auth/{mount}/login". route entry not found.')
        kind = logins[0].kind
        if kind == "approle":
            role_id = payload.get("role_id")
            if not role_id:
                return errors(400, "missing role_id")
            for lg in logins:
                if lg.ident == role_id:
                    if lg.credential is not None and payload.get("secret_id") != lg.credential:
                        return errors(400, "invalid role or secret ID")
                    return self._issue(lg, {"role_name": f"role-{role_id[:8]}"})
            return errors(400, "invalid role or secret ID")
        role, jwt = payload.get("role"), payload.get("jwt")
        if not role:
            return errors(400, "missing role")
        if not jwt:
            return errors(400, "missing jwt")
        for lg in logins:
            if lg.ident == role:
                if jwt != lg.credential:
                    return errors(403, "permission denied")
                return self._issue(lg, {"role": role, "service_account_name": "rotator"})
        return errors(400, f'invalid role name "{role}"')

    @staticmethod
    def lookup_self(tok: VaultToken, token_id: str) -> Reply:
        now = time.time()
        data = {
            "accessor": tok.accessor,
            "creation_time": int(tok.created),
            "creation_ttl": tok.ttl,
            "display_name": tok.display_name,
            "entity_id": "",
            "expire_time": rfc3339(tok.created + tok.ttl) if tok.ttl else None,
            "explicit_max_ttl": 0,
            "id": token_id,
            "issue_time": rfc3339(tok.created),
            "meta": tok.meta,
            "num_uses": 0,
            "orphan": True,
            "path": tok.path,
            "policies": tok.policies,
            "renewable": tok.renewable,
            "ttl": tok.remaining(now),
            "type": "service",
        }
        return 200, envelope(data)

    def capabilities(self, tok: VaultToken, paths: list[str]) -> Reply:
        result: dict[str, Any] = {p: self.caps(tok, p.strip("/")) for p in paths}
        if len(paths) == 1:
            result["capabilities"] = result[paths[0]]
        body = envelope(dict(result))
        body.update(result)
        return 200, body
