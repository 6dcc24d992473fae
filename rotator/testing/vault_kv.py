"""The KV secrets engines of the Vault-protocol double: what each mount stores (KV v2:
every version kept, check-and-set; KV v1: one value) and the answers to KV requests.

`allowed(acl_path, capability)` is the requesting token's check, from the server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rotator.testing.vault_wire import Reply, envelope, errors, rfc3339

Allowed = Callable[[str, str], bool]


@dataclass
class _Version:
    data: dict[str, Any]
    created: float
    deleted: float | None = None
    destroyed: bool = False

    def metadata(self, number: int) -> dict[str, Any]:
        return {
            "created_time": rfc3339(self.created),
            "custom_metadata": None,
            "deletion_time": rfc3339(self.deleted) if self.deleted else "",
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


class KVStore:
    """Every mount's secrets (`mounts` maps a mount path to its KV version, 1 or 2; `lock` is the server's)."""

    def __init__(self, mounts: dict[str, int], lock: threading.Lock, *, cas_required: bool = False) -> None:
        self.mounts = mounts
        self.cas_required = cas_required
        self._lock = lock
        self._kv: dict[tuple[str, str], _Entry] = {}
        self.writes = 0  # successful writes of secret data through the API

    # -- direct access (the caller holds no lock) ---------------------------

    def put(self, path: str, data: dict[str, Any], mount: str = "secret") -> int:
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

    # -- KV v2 --------------------------------------------------------------

    def kv2(
        self, allowed: Allowed, method: str, mount: str, rest: str, query: dict[str, list[str]], payload: dict[str, Any]
    ) -> Reply:
        kind, _, path = rest.partition("/")
        if kind not in ("data", "metadata") or not path:
            return errors(404)
        acl = f"{mount}/{kind}/{path}"
        key = (mount, path)
        if kind == "metadata":
            if method != "GET":
                return errors(405, "unsupported operation")
            if not allowed(acl, "read"):
                return errors(403, "permission denied")
            return self._metadata(key)
        if method == "GET":
            if not allowed(acl, "read"):
                return errors(403, "permission denied")
            return self._read(key, query)
        if method in ("POST", "PUT"):
            return self._write(allowed, acl, key, payload)
        if method == "DELETE":
            if not allowed(acl, "delete"):
                return errors(403, "permission denied")
            return self._delete(key)
        return errors(405, "unsupported operation")

    def _metadata(self, key: tuple[str, str]) -> Reply:
        with self._lock:
            entry = self._kv.get(key)
            if entry is None or not entry.versions:
                return errors(404)
            data = {
                "cas_required": self.cas_required,
                "created_time": rfc3339(entry.created),
                "current_version": entry.current,
                "custom_metadata": None,
                "delete_version_after": "0s",
                "max_versions": 0,
                "oldest_version": 0,
                "updated_time": rfc3339(entry.updated),
                "versions": {
                    str(n): {k: v for k, v in ver.metadata(n).items() if k not in ("version", "custom_metadata")}
                    for n, ver in sorted(entry.versions.items())
                },
            }
        return 200, envelope(data)

    def _read(self, key: tuple[str, str], query: dict[str, list[str]]) -> Reply:
        try:
            wanted = int(query.get("version", ["0"])[0])
        except ValueError:
            return errors(400, "invalid version")
        with self._lock:
            entry = self._kv.get(key)
            if entry is None or not entry.versions:
                return errors(404)
            number = wanted or entry.current
            ver = entry.versions.get(number)
            if ver is None:
                return errors(404)
            meta = ver.metadata(number)
            if ver.deleted or ver.destroyed:
                # Vault answers 404 with the version's metadata and no data.
                return 404, envelope({"data": None, "metadata": meta})
            return 200, envelope({"data": dict(ver.data), "metadata": meta})

    def _write(self, allowed: Allowed, acl: str, key: tuple[str, str], payload: dict[str, Any]) -> Reply:
        new_data = payload.get("data")
        if not isinstance(new_data, dict):
            return errors(400, "no data provided")
        options = payload.get("options") or {}
        cas = options.get("cas") if isinstance(options, dict) else None
        with self._lock:
            entry = self._kv.get(key)
            exists = entry is not None and bool(entry.versions)
            if not allowed(acl, "update" if exists else "create"):
                return errors(403, "permission denied")
            # Vault's OpenAPI has no error bodies: these are the KV v2 plugin's own words and status
            # (vault-plugin-secrets-kv path_data.go: logical.ErrorResponse + ErrInvalidRequest, HTTP 400),
            # as the KV v2 API docs describe check-and-set ("cas" option, "cas_required").
            if cas is None and self.cas_required:
                return errors(400, "check-and-set parameter required for this call")
            if cas is not None:
                try:
                    cas_value = int(cas)
                except (TypeError, ValueError):
                    return errors(400, "invalid cas parameter")
                if cas_value != (entry.current if entry else 0):
                    return errors(400, "check-and-set parameter did not match the current version")
            number = self._store(*key, dict(new_data))
            self.writes += 1
            meta = self._kv[key].versions[number].metadata(number)
        return 200, envelope(meta)

    def _delete(self, key: tuple[str, str]) -> Reply:
        with self._lock:
            entry = self._kv.get(key)
            if entry is not None and entry.current in entry.versions:
                entry.versions[entry.current].deleted = time.time()
        return 204, None

    # -- KV v1 --------------------------------------------------------------

    def kv1(self, allowed: Allowed, method: str, mount: str, path: str, payload: dict[str, Any]) -> Reply:
        if not path:
            return errors(404)
        acl = f"{mount}/{path}"
        key = (mount, path)
        with self._lock:
            entry = self._kv.get(key)
            exists = entry is not None and entry.plain is not None
            if method == "GET":
                if not allowed(acl, "read"):
                    return errors(403, "permission denied")
                if not exists:
                    return errors(404)
                assert entry is not None and entry.plain is not None
                return 200, envelope(dict(entry.plain), lease_duration=2764800)
            if method in ("POST", "PUT"):
                if not allowed(acl, "update" if exists else "create"):
                    return errors(403, "permission denied")
                self._store(mount, path, dict(payload))
                self.writes += 1
                return 204, None
            if method == "DELETE":
                if not allowed(acl, "delete"):
                    return errors(403, "permission denied")
                self._kv.pop(key, None)
                return 204, None
        return errors(405, "unsupported operation")
