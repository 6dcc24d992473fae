"""The Vault connection: settings for address, TLS and auth, the hvac client, login and relogin.

Everything here is made in `open` (arm time): the session, its connection pool,
the client and the login, so after the key arrives only the write itself goes
over the wire.  Auth is ``token`` (from env or file), ``approle`` (``role_id`` /
``secret_id`` from env or file) or ``kubernetes`` (the service-account JWT file).

Error messages are built here from status codes and exception types; Vault's
own words are shown only through `vendor_text`, so nothing from a request body
can reach a log.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator
from rotator_plugins._sdk import Denied, NotFound, vendor_text

from rotator.plugin import BackendSettings, PluginContext, PluginError, SecretRef

if TYPE_CHECKING:
    import hvac
    import hvac.exceptions
    import requests

CAS_MISMATCH = "check-and-set parameter did not match the current version"
DEFAULT_K8S_JWT = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def import_sdk() -> None:
    """hvac and requests (~115 ms), imported by `VaultClient.open` (arm time), not by
    `rotator check`, which validates `VaultConnection` with no SDK loaded."""
    import hvac.exceptions  # noqa: F401
    import requests.adapters  # noqa: F401


def sdk_errors() -> tuple[type[BaseException], ...]:
    """What hvac and requests raise (loaded by then: only a call made after `open` raises)."""
    import hvac.exceptions
    import requests

    return (hvac.exceptions.VaultError, requests.exceptions.RequestException)


_SEGMENTS = re.compile(r"^[^/\s]+(/[^/\s]+)*$")

Fail = Callable[..., PluginError]


class CasMismatch(PluginError):
    """Vault refused a write because its cas was not the current version."""


def segments(v: str) -> str:
    """A Vault path like a/b/c, without leading or trailing slashes."""
    v = v.strip("/")
    if not _SEGMENTS.match(v) or any(seg in (".", "..") for seg in v.split("/")):
        raise ValueError("must be a path like a/b/c (no empty, '.' or '..' segments, no spaces)")
    return v


class VaultConnection(BackendSettings):
    """Where Vault is and how to log in (the backend adds what to read and write)."""

    url: str = Field(description="Vault address, e.g. https://vault.example.com:8200")
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

    @field_validator("approle_mount", "kubernetes_mount")
    @classmethod
    def _segments(cls, v: str) -> str:
        return segments(v)

    @model_validator(mode="after")
    def _auth_fields(self) -> VaultConnection:
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


def vault_said(exc: hvac.exceptions.VaultError) -> str:
    """Vault's own error strings: one line, scrubbed of every live secret, short."""
    text = "; ".join(str(e) for e in (exc.errors or []) if e)
    return vendor_text(text.replace("*", " "))


def _vault_answer(exc: hvac.exceptions.VaultError, doing: str, fail: Fail) -> PluginError:
    """What Vault answered (an HTTP error status) as one line, and whether to retry."""
    import hvac.exceptions

    said = vault_said(exc)
    if isinstance(exc, hvac.exceptions.Forbidden):
        return fail(f"permission denied on {doing} (check the token's policy)", kind=Denied)
    if isinstance(exc, hvac.exceptions.Unauthorized):
        return fail(f"unauthorized on {doing} (is the token valid?)")
    if isinstance(exc, hvac.exceptions.VaultDown):
        if "sealed" in said.lower():
            return fail("sealed")
        return fail(f"unavailable (HTTP 503) on {doing}", retryable=True)
    if isinstance(exc, hvac.exceptions.InvalidPath):
        return fail(f"not found: {doing}" + (f" ({said})" if said else ""), kind=NotFound)
    if isinstance(exc, hvac.exceptions.RateLimitExceeded):
        return fail(f"rate limited on {doing}", retryable=True)
    if isinstance(exc, (hvac.exceptions.InternalServerError, hvac.exceptions.BadGateway)):
        return fail(f"server error on {doing}" + (f" ({said})" if said else ""), retryable=True)
    if isinstance(exc, hvac.exceptions.VaultNotInitialized):
        return fail("not initialized")
    if isinstance(exc, hvac.exceptions.InvalidRequest):
        if CAS_MISMATCH in said:
            return fail(f"{doing}: {CAS_MISMATCH}", kind=CasMismatch)
        return fail(f"request refused on {doing}" + (f": {said}" if said else ""))
    return fail(f"unexpected answer on {doing}" + (f": {said}" if said else ""), retryable=True)


def translate(exc: BaseException, doing: str, url: str, fail: Fail) -> PluginError:
    """One secret-free line for an hvac or requests exception raised while `doing`."""
    import hvac.exceptions
    import requests

    if isinstance(exc, hvac.exceptions.VaultError):
        return _vault_answer(exc, doing, fail)
    if isinstance(exc, requests.exceptions.SSLError):
        return fail(f"TLS handshake with {url} failed (check ca_cert, client_cert, verify)")
    if isinstance(exc, requests.exceptions.Timeout):
        return fail(f"timed out talking to {url} ({doing})", retryable=True)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return fail(f"cannot reach {url} ({doing})", retryable=True)
    if isinstance(exc, requests.exceptions.RequestException):
        return fail(f"HTTP error talking to {url} ({doing}): {type(exc).__name__}", retryable=True)
    return fail(f"{doing} failed: {type(exc).__name__}", retryable=True)


class VaultClient:
    """An hvac client with its own requests session, logged in."""

    def __init__(self, settings: VaultConnection, ctx: PluginContext, fail: Fail) -> None:
        self.settings = settings
        self.ctx = ctx
        self._fail = fail
        self.hvac: hvac.Client | None = None
        self._session: requests.Session | None = None

    def _build(self, token: str | None) -> hvac.Client:
        import hvac
        import requests
        from requests.adapters import HTTPAdapter

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

    async def open(self) -> hvac.Client:
        s = self.settings
        for label, p in (("ca_cert", s.ca_cert), ("client_cert", s.client_cert), ("client_key", s.client_key)):
            if p is not None and not p.expanduser().is_file():
                raise self._fail(f"{label} {p} is not a readable file")
        token = self._resolve("token", s.token) if s.auth == "token" else None
        import_sdk()  # here, not in the pool's thread: one import, before any key exists
        self.hvac = await self.ctx.run_blocking(self._build, token)
        if s.auth != "token":
            await self.login()
        return self.hvac

    @property
    def can_relogin(self) -> bool:
        """A login token may expire while the operator gets the key; a given token cannot be renewed here."""
        return self.settings.auth != "token"

    async def login(self) -> None:
        s = self.settings
        client = self.hvac
        if client is None:
            raise self._fail("not open")
        if s.auth == "approle":
            role_id = self._resolve("role_id", s.role_id)
            secret_id = self._resolve("secret_id", s.secret_id)
            fn = functools.partial(
                client.auth.approle.login, role_id=role_id, secret_id=secret_id, mount_point=s.approle_mount
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
                client.auth.kubernetes.login, role=s.kubernetes_role, jwt=jwt, mount_point=s.kubernetes_mount
            )
            where = f"auth/{s.kubernetes_mount}/login"
        else:
            return
        import hvac.exceptions

        try:
            await self.ctx.run_blocking(fn)
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            what = "role_id or secret_id" if s.auth == "approle" else f"role {s.kubernetes_role} or service-account JWT"
            raise self._fail(f"{s.auth} login at {where} refused (check the {what})") from None
        except sdk_errors() as exc:
            raise translate(exc, f"{s.auth} login at {where}", s.url, self._fail) from None
        except (KeyError, TypeError):
            raise self._fail(f"{s.auth} login at {where} gave no client token") from None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        self.hvac = None
