"""HashiCorp Vault KV backend (hvac).

The key lives in one field of a KV secret; every other field of that secret is
kept as it was.  KV v2 (default) writes with check-and-set: the version read at
arm time is the ``cas`` of the write, so a secret changed by someone else in
between stops the write with a `Conflict` instead of silently replacing their
change.  The previous version stays readable (KV v2 keeps it).

A plan entry::

    [[backends]]
    name = "vault"
    type = "vault"
    primary = true
    url = "https://vault.example.com:8200"
    mount = "secret"
    path = "apps/billing/adjutor"
    field = "api_key"
    token = { env = "VAULT_TOKEN" }

Auth is ``token`` (from env or file), ``approle`` (``role_id`` / ``secret_id``
from env or file) or ``kubernetes`` (the service-account JWT file).  Every
client, session and login is made in `open` (arm time); after the key arrives
only the write itself goes over the wire.

Error messages are built here from status codes and never include hvac's
exception text unfiltered, so nothing from a request body can reach a log.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import hvac
import hvac.exceptions
import requests
from pydantic import Field, field_validator, model_validator
from requests.adapters import HTTPAdapter

from rotator.plugin import Backend, BackendSettings, Check, Conflict, PluginError, SecretRef, Stored, Written
from rotator.secret import Secret, live_values

T = TypeVar("T")

CAS_MISMATCH = "check-and-set parameter did not match the current version"
MIN_TOKEN_TTL = 300  # seconds; a token about to expire would fail in the middle of a rotation
DEFAULT_K8S_JWT = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")

_RAISE: Any = object()
_SEGMENTS = re.compile(r"^[^/\s]+(/[^/\s]+)*$")


class _CasMismatch(PluginError):
    """Vault refused a write because its cas was not the current version."""


class VaultSettings(BackendSettings):
    url: str = Field(description="Vault address, e.g. https://vault.example.com:8200")
    mount: str = Field(default="secret", description="KV mount path")
    path: str = Field(description="secret path inside the mount")
    field: str = Field(
        default="api_key", min_length=1, max_length=500, description="field of the secret holding the key"
    )
    kv_version: Literal[1, 2] = 2
    auth: Literal["token", "approle", "kubernetes"] = "token"
    token: SecretRef | None = None
    role_id: SecretRef | None = None
    secret_id: SecretRef | None = None
    approle_mount: str = "approle"
    kubernetes_role: str | None = None
    kubernetes_jwt_path: Path = DEFAULT_K8S_JWT
    kubernetes_mount: str = "kubernetes"
    namespace: str | None = None
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    verify: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must start with http:// or https:// and name a host")
        return v.rstrip("/")

    @field_validator("mount", "path", "approle_mount", "kubernetes_mount")
    @classmethod
    def _segments(cls, v: str) -> str:
        v = v.strip("/")
        if not _SEGMENTS.match(v) or any(seg in (".", "..") for seg in v.split("/")):
            raise ValueError("must be a path like a/b/c (no empty, '.' or '..' segments, no spaces)")
        return v

    @model_validator(mode="after")
    def _auth_fields(self) -> VaultSettings:
        if self.auth == "token" and self.token is None:
            raise ValueError('auth = "token" needs token (e.g. token = { env = "VAULT_TOKEN" })')
        if self.auth == "approle":
            if self.role_id is None:
                raise ValueError('auth = "approle" needs role_id (e.g. role_id = { env = "VAULT_ROLE_ID" })')
            if self.secret_id is None:
                raise ValueError(
                    'auth = "approle" needs secret_id (e.g. secret_id = { file = "/run/secrets/secret_id" })'
                )
        if self.auth == "kubernetes" and not self.kubernetes_role:
            raise ValueError('auth = "kubernetes" needs kubernetes_role')
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        return self


class VaultBackend(Backend):
    """A KV v2 (or v1) secret in Vault; the key in one field, other fields kept."""

    Settings: ClassVar[type[BackendSettings]] = VaultSettings
    can_be_primary: ClassVar[bool] = True
    settings: VaultSettings

    def __init__(self, settings: Any, ctx: Any) -> None:
        super().__init__(settings, ctx)
        self._client: hvac.Client | None = None
        self._session: requests.Session | None = None
        # What the last read saw: (version, every field).  A write whose cas is
        # that version can build the new data from it without reading again.
        self._base: tuple[int, dict[str, Any]] | None = None

    # -- helpers -----------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.settings.mount}/{self.settings.path}"

    @property
    def _acl_path(self) -> str:
        s = self.settings
        return f"{s.mount}/data/{s.path}" if s.kv_version == 2 else f"{s.mount}/{s.path}"

    def _fail(self, what: str, *, retryable: bool = False) -> PluginError:
        return PluginError(f"vault {self.name}: {what}", retryable=retryable)

    def describe(self) -> str:
        s = self.settings
        ns = f" namespace {s.namespace}" if s.namespace else ""
        return f"{s.url}{ns} {self._where} field {s.field} (kv v{s.kv_version}, {s.auth} auth)"

    @staticmethod
    def _vault_said(exc: hvac.exceptions.VaultError) -> str:
        """Vault's own error strings, one line, redacted of any live secret, short."""
        text = "; ".join(str(e) for e in (exc.errors or []) if e)
        text = " ".join(text.replace("*", " ").split())
        for value in live_values():
            if value and value in text:
                text = text.replace(value, "[redacted]")
        return text[:200]

    def _translate(self, exc: BaseException, doing: str) -> PluginError:
        url = self.settings.url
        if isinstance(exc, hvac.exceptions.VaultError):
            said = self._vault_said(exc)
            if isinstance(exc, hvac.exceptions.Forbidden):
                return self._fail(f"permission denied on {doing} (check the token's policy)")
            if isinstance(exc, hvac.exceptions.Unauthorized):
                return self._fail(f"unauthorized on {doing} (is the token valid?)")
            if isinstance(exc, hvac.exceptions.VaultDown):
                if "sealed" in said.lower():
                    return self._fail("sealed")
                return self._fail(f"unavailable (HTTP 503) on {doing}", retryable=True)
            if isinstance(exc, hvac.exceptions.InvalidPath):
                return self._fail(f"not found: {doing}" + (f" ({said})" if said else ""))
            if isinstance(exc, hvac.exceptions.RateLimitExceeded):
                return self._fail(f"rate limited on {doing}", retryable=True)
            if isinstance(exc, (hvac.exceptions.InternalServerError, hvac.exceptions.BadGateway)):
                return self._fail(f"server error on {doing}" + (f" ({said})" if said else ""), retryable=True)
            if isinstance(exc, hvac.exceptions.VaultNotInitialized):
                return self._fail("not initialized")
            if isinstance(exc, hvac.exceptions.InvalidRequest):
                if CAS_MISMATCH in said:
                    return _CasMismatch(f"vault {self.name}: {doing}: {CAS_MISMATCH}", retryable=False)
                return self._fail(f"request refused on {doing}" + (f": {said}" if said else ""))
            return self._fail(f"unexpected answer on {doing}" + (f": {said}" if said else ""), retryable=True)
        if isinstance(exc, requests.exceptions.SSLError):
            return self._fail(f"TLS handshake with {url} failed (check ca_cert, client_cert, verify)")
        if isinstance(exc, requests.exceptions.Timeout):
            return self._fail(f"timed out talking to {url} ({doing})", retryable=True)
        if isinstance(exc, requests.exceptions.ConnectionError):
            return self._fail(f"cannot reach {url} ({doing})", retryable=True)
        if isinstance(exc, requests.exceptions.RequestException):
            return self._fail(f"HTTP error talking to {url} ({doing}): {type(exc).__name__}", retryable=True)
        return self._fail(f"{doing} failed: {type(exc).__name__}", retryable=True)

    async def _call(
        self,
        where: str,
        fn: Callable[..., T],
        *args: Any,
        relogin: bool = True,
        missing: Any = _RAISE,
        **kwargs: Any,
    ) -> T:
        """Run one hvac call in the pool; hvac/requests errors become one-line PluginErrors.

        `missing`: what to return on a 404 instead of raising.
        """
        try:
            return await self.ctx.run_blocking(functools.partial(fn, *args, **kwargs))
        except hvac.exceptions.InvalidPath as exc:
            if missing is not _RAISE:
                return missing  # type: ignore[no-any-return]
            raise self._translate(exc, where) from None
        except hvac.exceptions.Forbidden as exc:
            # A login token may have expired while the operator was getting the key:
            # log in again once, then retry.
            if not (relogin and self.settings.auth != "token"):
                raise self._translate(exc, where) from None
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            raise self._translate(exc, where) from None
        await self._login()
        return await self._call(where, fn, *args, relogin=False, missing=missing, **kwargs)

    @property
    def client(self) -> hvac.Client:
        if self._client is None:
            raise self._fail("not open")
        return self._client

    # -- lifecycle ---------------------------------------------------------

    def _build(self, token: str | None) -> hvac.Client:
        s = self.settings
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=16, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        verify: bool | str = str(s.ca_cert.expanduser()) if s.ca_cert is not None and s.verify else s.verify
        cert: tuple[str, str] | str | None = None
        if s.client_cert is not None:
            cert = (
                (str(s.client_cert.expanduser()), str(s.client_key.expanduser()))
                if s.client_key is not None
                else str(s.client_cert.expanduser())
            )
        # hvac prefers the session's verify/cert over its own arguments, so set both.
        session.verify = verify
        session.cert = cert
        self._session = session
        return hvac.Client(
            url=s.url,
            token=token,
            namespace=s.namespace,
            verify=verify,
            cert=cert,
            timeout=s.timeout,
            session=session,
        )

    def _resolve(self, label: str, ref: SecretRef | None) -> str:
        if ref is None:
            raise self._fail(f"{label} is not set")
        try:
            return ref.resolve().reveal()
        except PluginError as exc:
            raise self._fail(f"{label}: {exc}") from None

    async def open(self) -> None:
        s = self.settings
        for label, p in (("ca_cert", s.ca_cert), ("client_cert", s.client_cert), ("client_key", s.client_key)):
            if p is not None and not p.expanduser().is_file():
                raise self._fail(f"{label} {p} is not a readable file")
        token = self._resolve("token", s.token) if s.auth == "token" else None
        self._client = await self.ctx.run_blocking(self._build, token)
        if s.auth != "token":
            await self._login()

    async def _login(self) -> None:
        s = self.settings
        if s.auth == "approle":
            role_id = self._resolve("role_id", s.role_id)
            secret_id = self._resolve("secret_id", s.secret_id)
            fn = functools.partial(
                self.client.auth.approle.login, role_id=role_id, secret_id=secret_id, mount_point=s.approle_mount
            )
            where = f"auth/{s.approle_mount}/login"
        elif s.auth == "kubernetes":
            try:
                jwt = s.kubernetes_jwt_path.expanduser().read_text().strip()
            except OSError as exc:
                raise self._fail(f"cannot read kubernetes_jwt_path {s.kubernetes_jwt_path}: {exc.strerror}") from None
            if not jwt:
                raise self._fail(f"kubernetes_jwt_path {s.kubernetes_jwt_path} is empty")
            fn = functools.partial(
                self.client.auth.kubernetes.login, role=s.kubernetes_role, jwt=jwt, mount_point=s.kubernetes_mount
            )
            where = f"auth/{s.kubernetes_mount}/login"
        else:
            return
        try:
            await self.ctx.run_blocking(fn)
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            what = "role_id or secret_id" if s.auth == "approle" else f"role {s.kubernetes_role} or service-account JWT"
            raise self._fail(f"{s.auth} login at {where} refused (check the {what})") from None
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            raise self._translate(exc, f"{s.auth} login at {where}") from None
        except (KeyError, TypeError):
            raise self._fail(f"{s.auth} login at {where} gave no client token") from None

    async def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        self._client = None

    # -- preflight ---------------------------------------------------------

    async def preflight(self) -> Check:
        try:
            return await self._preflight()
        except PluginError as exc:
            return Check(ok=False, detail=str(exc))

    async def _preflight(self) -> Check:
        s = self.settings
        warnings: list[str] = []
        health = await self._call("sys/health", self.client.sys.read_health_status, method="GET")
        if not isinstance(health, dict):  # a non-200 answer comes back as the Response
            status = getattr(health, "status_code", 0)
            try:
                body = health.json()
            except ValueError:
                body = {}
            if status == 503 or body.get("sealed"):
                return Check(ok=False, detail=f"vault {self.name}: sealed")
            if status == 501 or body.get("initialized") is False:
                return Check(ok=False, detail=f"vault {self.name}: not initialized")
            if status in (429, 472, 473):
                warnings.append(f"vault {self.name}: {s.url} is a standby node (HTTP {status}); requests are forwarded")
            else:
                return Check(ok=False, detail=f"vault {self.name}: sys/health answered HTTP {status}")
        elif health.get("sealed"):
            return Check(ok=False, detail=f"vault {self.name}: sealed")

        try:
            me = await self._call("auth/token/lookup-self", self.client.auth.token.lookup_self)
        except PluginError as exc:
            if not exc.retryable:
                return Check(
                    ok=False,
                    detail=f"vault {self.name}: the token is not valid (permission denied on auth/token/lookup-self)",
                )
            raise
        data = (me.get("data") or {}) if isinstance(me, dict) else {}
        ttl = int(data.get("ttl") or 0)
        if ttl and ttl < MIN_TOKEN_TTL:
            msg = f"vault {self.name}: the token expires in {ttl} s"
            if s.auth == "token":
                return Check(ok=False, detail=msg + "; renew it (vault token renew) or use a fresh one")
            warnings.append(msg + "; rotator logs in again if it expires")

        mount_problem = await self._check_mount()
        if mount_problem:
            return Check(ok=False, detail=f"vault {self.name}: {mount_problem}")
        caps = await self._capabilities(warnings)
        if caps is not None and "read" not in caps:
            return self._lacks(["read"], caps)
        exists, version, fields = await self._current()
        if caps is not None:
            need = "update" if exists else "create"
            if need not in caps:
                return self._lacks([need], caps)
        if s.kv_version == 2:
            state = f"v{version}" if exists else "no secret yet (will be created as v1)"
        else:
            state = "present" if exists else "no secret yet (will be created)"
        if exists and fields is not None and self._field(fields) is None:
            state += f"; field {s.field} not set yet"
        return Check(ok=True, detail=f"{s.url} {self._where}: {state}", warnings=warnings)

    async def _check_mount(self) -> str | None:
        """Is the mount KV, of the version the plan says?  Asked as ``vault kv`` does;
        a token that may not ask is not an error (the read below still checks access)."""
        s = self.settings
        try:
            answer = await self._call(
                "sys/internal/ui/mounts",
                self.client.adapter.get,
                f"/v1/sys/internal/ui/mounts/{s.mount}",
                relogin=False,
                missing=None,
            )
        except PluginError as exc:
            if exc.retryable:
                raise
            return None
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict):
            return None
        kind = data.get("type")
        if kind and kind not in ("kv", "generic"):
            return f"{s.mount}/ is a {kind} mount, not KV"
        version = str((data.get("options") or {}).get("version") or "1")
        if version != str(s.kv_version):
            return f"{s.mount}/ is a KV v{version} mount, but the plan says kv_version = {s.kv_version}"
        return None

    async def _capabilities(self, warnings: list[str]) -> list[str] | None:
        """The token's capabilities on the data path; None when Vault would not say."""
        try:
            answer = await self._call(
                "sys/capabilities-self", self.client.sys.get_capabilities, paths=[self._acl_path], relogin=False
            )
        except PluginError as exc:
            if exc.retryable:
                raise
            warnings.append(f"vault {self.name}: could not check capabilities (sys/capabilities-self refused)")
            return None
        if not isinstance(answer, dict):
            return None
        found = answer.get(self._acl_path)
        if found is None:
            found = (answer.get("data") or {}).get(self._acl_path, answer.get("capabilities"))
        if not isinstance(found, list):
            return None
        caps = [str(c) for c in found]
        if "root" in caps:
            return ["root", "read", "create", "update"]
        if "deny" in caps:
            return []
        return caps

    def _lacks(self, missing: list[str], caps: list[str]) -> Check:
        return Check(
            ok=False,
            detail=(
                f"vault {self.name}: the token lacks the {' and '.join(missing)} capability on {self._acl_path} "
                f"(has: {', '.join(caps) or 'deny'}; check the token's policy)"
            ),
        )

    # -- read / write ------------------------------------------------------

    def _field(self, data: dict[str, Any]) -> Secret | None:
        value = data.get(self.settings.field)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(f"field {self.settings.field} of {self._where} is not a string")
        return Secret(value)

    async def _current(self) -> tuple[bool, int, dict[str, Any] | None]:
        """(exists, version, fields) now; version 0 for no secret (and always for KV v1).

        A KV v2 secret whose latest version is deleted exists with fields None.
        """
        if self.settings.kv_version == 1:
            data = await self._read_v1()
            return data is not None, 0, data
        version, data = await self._read_v2()
        return version > 0, version, data

    async def _read_v2(self) -> tuple[int, dict[str, Any] | None]:
        """(current version, fields); (0, None) when there is no secret, (N, None) when version N is deleted."""
        resp = await self._call(
            self._where,
            self.client.secrets.kv.v2.read_secret_version,
            path=self.settings.path,
            mount_point=self.settings.mount,
            raise_on_deleted_version=False,
            missing=None,
        )
        if resp is None:
            self._base = (0, {})
            return 0, None
        try:
            body = resp["data"]
            version = int(body["metadata"]["version"])
            data = body.get("data")
        except (KeyError, TypeError, ValueError):
            raise self._fail(
                f"unexpected answer reading {self._where} (is {self.settings.mount} a KV v2 mount?)"
            ) from None
        fields = dict(data) if isinstance(data, dict) else None
        self._base = (version, fields or {})
        return version, fields

    async def _read_v1(self) -> dict[str, Any] | None:
        resp = await self._call(
            self._where,
            self.client.secrets.kv.v1.read_secret,
            path=self.settings.path,
            mount_point=self.settings.mount,
            missing=None,
        )
        data = resp.get("data") if isinstance(resp, dict) else None
        return dict(data) if isinstance(data, dict) else None

    async def read(self) -> Stored:
        _, version, fields = await self._current()
        return Stored(self._field(fields or {}), version=str(version) if self.settings.kv_version == 2 else None)

    async def write(self, secret: Secret, *, token: str, expected_version: str | None) -> Written:
        if self.settings.kv_version == 1:
            return await self._write_v1(secret)
        return await self._write_v2(secret, expected_version)

    def _conflict(self, current: int, expected: int) -> Conflict:
        return Conflict(
            f"vault {self.name}: {self._where} changed since arm (version {current}, expected {expected}); "
            "rerun, or --force"
        )

    async def _write_v2(self, secret: Secret, expected_version: str | None) -> Written:
        s = self.settings
        expected: int | None = None
        if expected_version is not None:
            try:
                expected = int(expected_version)
            except ValueError:
                raise self._fail(f"expected version {expected_version!r} is not a KV v2 version number") from None
        # Arm (or the last write) read this secret: write with that version as cas
        # and skip a read, so a write is one round trip after the key arrives.  For
        # the primary it must be the expected version; for the others, a secret
        # changed since is refused by the cas and the mismatch path below reads.
        fast = self._base is not None and (expected is None or self._base[0] == expected)
        if fast and self._base is not None:
            version, fields = self._base
        else:
            version, data = await self._read_v2()
            fields = data or {}
        current = self._field(fields)
        if current is not None and current.fingerprint == secret.fingerprint:
            # A retried write, or a rerun: never make a second version.
            return Written(version=str(version), detail=f"v{version} (already current, nothing written)")
        if expected is not None and version != expected:
            raise self._conflict(version, expected)
        new_fields = dict(fields)
        new_fields[s.field] = secret.reveal()
        try:
            resp = await self._call(
                self._where,
                self.client.secrets.kv.v2.create_or_update_secret,
                path=s.path,
                secret=new_fields,
                cas=version,
                mount_point=s.mount,
            )
        except _CasMismatch:
            # Someone wrote in between, or an earlier attempt of this very write
            # landed and its answer was lost.  Look before deciding.
            now_version, now_data = await self._read_v2()
            now = self._field(now_data or {})
            if now is not None and now.fingerprint == secret.fingerprint:
                self._base = (now_version, now_data or {})
                return Written(version=str(now_version), detail=f"v{now_version} (already current, nothing written)")
            if expected is not None:
                raise self._conflict(now_version, expected) from None
            raise self._fail(
                f"{self._where} changed during the write (now version {now_version})", retryable=True
            ) from None
        try:
            new_version = int(resp["data"]["version"])
        except (KeyError, TypeError, ValueError):
            raise self._fail(f"unexpected answer writing {self._where}", retryable=True) from None
        self._base = (new_version, new_fields)
        detail = f"v{new_version} (previous v{version} kept)" if version else f"v{new_version} (new secret)"
        return Written(version=str(new_version), detail=detail)

    async def _write_v1(self, secret: Secret) -> Written:
        s = self.settings
        fields = await self._read_v1() or {}
        current = self._field(fields)
        if current is not None and current.fingerprint == secret.fingerprint:
            return Written(version=None, detail="already current, nothing written (kv v1, no versions)")
        new_fields = dict(fields)
        new_fields[s.field] = secret.reveal()
        await self._call(
            self._where,
            self.client.secrets.kv.v1.create_or_update_secret,
            path=s.path,
            secret=new_fields,
            method="POST",
            mount_point=s.mount,
        )
        return Written(version=None, detail="written (kv v1 keeps no previous version)")
