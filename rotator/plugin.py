"""What a backend or consumer plugin implements.

A plugin is a class registered under the entry-point group
``rotator.backends`` or ``rotator.consumers``.  It declares a pydantic
`Settings` model (checked by ``rotator check`` with no network) and
implements async methods; blocking SDKs run through `PluginContext.run_blocking`
so that a hundred targets write at once without stalling the event loop.

The built-in plugins in ``rotator_plugins`` use exactly this interface.
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rotator.secret import Secret

T = TypeVar("T")


class PluginError(Exception):
    """A one-line, secret-free reason a target failed.

    `retryable` says whether trying again could help (a timeout, a 5xx) or not
    (access denied, a check-and-set conflict).
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Conflict(PluginError):
    """The stored secret changed between arm and write (check-and-set)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class SecretRef(BaseModel):
    """A setting that is itself a secret: named by env var or file, never inlined.

    In a plan: ``token = { env = "VAULT_TOKEN" }`` or ``token = { file = "/run/secrets/t" }``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    env: str | None = None
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(
                'must be { env = "NAME" } or { file = "PATH" }; secrets are never written inline in a plan'
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def describe(self) -> str:
        return f"env {self.env}" if self.env else f"file {self.file}"

    def resolve(self) -> Secret:
        """Read the value now (at arm time); a clear error names what is missing."""
        if self.env:
            value = os.environ.get(self.env)
            if value is None or not value.strip():
                raise PluginError(f"environment variable {self.env} is not set", retryable=False)
            return Secret(value.strip())
        assert self.file is not None
        try:
            value = self.file.expanduser().read_text()
        except OSError as exc:
            raise PluginError(f"cannot read {self.file}: {exc.strerror}", retryable=False) from None
        if not value.strip():
            raise PluginError(f"{self.file} is empty", retryable=False)
        return Secret(value.strip())


class TargetSettings(BaseModel):
    """Keys every backend and consumer entry in a plan has."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    type: str
    timeout: float = Field(default=10.0, gt=0, le=600, description="seconds per attempt")
    retries: int = Field(default=3, ge=0, le=20, description="attempts after the first")


class BackendSettings(TargetSettings):
    primary: bool = False


class ConsumerSettings(TargetSettings):
    confirm_timeout: float = Field(default=30.0, gt=0, le=3600, description="seconds to wait for confirmation")
    reads_from: list[str] = Field(
        default_factory=list,
        description="backends this consumer loads the key from; it is signalled as soon as those are written "
        "(empty: after every backend)",
    )


@dataclass
class Check:
    """A preflight answer.  ok=None means "usable, could not be verified"."""

    ok: bool | None
    detail: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class Stored:
    """What a backend holds now: the secret (None when absent) and its version."""

    secret: Secret | None
    version: str | None = None


@dataclass
class Written:
    version: str | None = None
    detail: str = ""


@dataclass
class RotationEvent:
    """What a consumer is told.  Holds the fingerprint, never the key."""

    secret_name: str
    fingerprint: str
    rotation_id: str
    timestamp: int
    reason: str = "rotation"


@dataclass
class Confirmation:
    confirmed: bool
    reported_fingerprint: str | None = None
    detail: str = ""


class _PerOriginTransport(httpx.AsyncBaseTransport):
    """One connection pool per origin behind one client.

    httpcore's pool rescans every connection it holds (quadratically) each time a
    request starts or ends, so one shared pool with a connection to each of 200
    consumers spent seconds of event-loop time per fan-out.  A pool per origin
    holds one or two connections and that cost disappears.
    """

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._pools: dict[tuple[bytes, bytes, int | None], httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.raw_scheme, url.raw_host, url.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = httpx.AsyncHTTPTransport(limits=self._limits)
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


class PluginContext:
    """Shared resources handed to every plugin: a thread pool sized for the fan-out
    and one HTTP client (a connection pool per origin), both made at arm time."""

    def __init__(self, *, max_threads: int = 32, http: httpx.AsyncClient | None = None) -> None:
        self.executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="rotator")
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(10.0),
            transport=_PerOriginTransport(httpx.Limits(max_connections=64, max_keepalive_connections=64)),
        )

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()
        self.executor.shutdown(wait=False, cancel_futures=True)


class _Plugin(ABC):
    kind: ClassVar[Literal["backend", "consumer"]]

    async def open(self) -> None:
        """Make clients and connections.  Called at arm time, before the key exists."""

    async def close(self) -> None:
        """Release what `open` made."""

    @abstractmethod
    async def preflight(self) -> Check:
        """Reachable, authenticated, allowed to do its job?  No writes."""

    def describe(self) -> str:
        """Where this target is, for humans (no secrets)."""
        return ""


class Backend(_Plugin):
    """Where a secret is stored."""

    kind: ClassVar[Literal["backend", "consumer"]] = "backend"
    Settings: ClassVar[type[BackendSettings]] = BackendSettings
    can_be_primary: ClassVar[bool] = True

    def __init__(self, settings: Any, ctx: PluginContext) -> None:
        self.settings = settings
        self.name: str = settings.name
        self.ctx = ctx

    @abstractmethod
    async def read(self) -> Stored:
        """The current value (secret=None when there is none yet)."""

    @abstractmethod
    async def write(self, secret: Secret, *, token: str, expected_version: str | None) -> Written:
        """Store `secret`.  `token` is stable for one rotation and target, so a retried
        write must not make a second version.  `expected_version` is what arm read
        (for check-and-set); None when unknown or when the operator forced it."""


class Consumer(_Plugin):
    """Something that uses the secret and must reload."""

    kind: ClassVar[Literal["backend", "consumer"]] = "consumer"
    Settings: ClassVar[type[ConsumerSettings]] = ConsumerSettings

    def __init__(self, settings: Any, ctx: PluginContext) -> None:
        self.settings = settings
        self.name: str = settings.name
        self.ctx = ctx

    @property
    def can_confirm(self) -> bool:
        return False

    @abstractmethod
    async def signal(self, event: RotationEvent) -> str:
        """Tell the consumer to reload; returns a short detail for the report."""

    async def confirm(self, fingerprint: str, deadline: float) -> Confirmation:
        """Wait (until loop time `deadline`) for the consumer to report `fingerprint`."""
        return Confirmation(confirmed=False, detail="cannot confirm")
