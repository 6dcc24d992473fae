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
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rotator.errors import Conflict as Conflict  # re-exported: defined in rotator.errors
from rotator.errors import PluginError
from rotator.secret import Secret
from rotator.transport import AiohttpTransport, Send, http_client

T = TypeVar("T")


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
    name: str = Field(
        min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$", description="the target's name in reports and logs"
    )
    type: str = Field(description="the plugin type (`rotator plugins` lists those installed)")
    timeout: float = Field(default=10.0, gt=0, le=600, description="seconds per attempt")
    retries: int = Field(default=3, ge=0, le=20, description="attempts after the first")


class BackendSettings(TargetSettings):
    primary: bool = Field(default=False, description="the source of truth, written first (exactly one per plan)")


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
    """What a backend holds now: the secret (None when absent) and its version.

    `changed_at` / `changed_by`: what the backend itself records of when (ISO 8601, UTC)
    and by whom its current value was written, where it records it (Vault KV v2's
    version `created_time`, the AWS version's `CreatedDate`, a Kubernetes Secret's
    latest managed-fields entry): a drift report says it, so an operator can tell
    who edited a secondary."""

    secret: Secret | None
    version: str | None = None
    changed_at: str | None = None
    changed_by: str | None = None


@dataclass
class Written:
    version: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Slot:
    """What one slot of an alternating plan holds: which app's key, its fingerprint,
    and when rotator stored it (ISO 8601, UTC).  `app` is None when the stored
    metadata does not describe this key (someone changed the value outside rotator)."""

    app: str | None
    fingerprint: str
    set_at: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"app": self.app, "fp": self.fingerprint, "set_at": self.set_at}


@dataclass
class Slots:
    """The two slots of an alternating plan, as the primary stores them.

    ``active`` is the key every backend and consumer uses (what `Backend.read`
    returns); ``standby`` is the other app's key, kept only on the primary and
    never read by consumers.  `standby_secret` is there for the probe at arm and
    for a promote; `version` is what `write_standby` / `swap_slots` take as
    `expected_version`.  Either slot is None when empty.
    """

    active: Slot | None
    standby: Slot | None
    version: str | None = None
    standby_secret: Secret | None = field(default=None, repr=False)
    token: str | None = None  # the token of the slot write that set them (says which step last changed them)
    # The metadata as read: "ok", "missing" (no metadata stored) or "unreadable" (not rotator's JSON).
    record: str = "ok"
    # An incident's leaked key, recorded before anything moved: {"app", "fp", "incident", "at"}; None when none.
    leaked: dict[str, Any] | None = None


SLOTS_FORMAT = 1


def slots_metadata(
    active: Slot | None, standby: Slot | None, token: str, *, leaked: dict[str, Any] | None = None
) -> str:
    """The slot metadata a backend stores beside the two values: app names, fingerprints,
    times and the token of the write that set them, and an open incident's leaked key
    (app and fingerprint).  Never a key: a fingerprint is all a new machine with an empty
    journal needs to tell which app a value belongs to."""
    data: dict[str, Any] = {
        "format": SLOTS_FORMAT,
        "active": active.as_dict() if active else None,
        "standby": standby.as_dict() if standby else None,
        "token": token,
    }
    if leaked:
        data["leaked"] = leaked
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def parse_slots_metadata(text: str | None) -> dict[str, Any]:
    """Stored metadata as a dict (``{}`` when absent or unreadable: the slots are then unknown)."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) and data.get("format") == SLOTS_FORMAT else {}


def slot_of(secret: Secret | None, meta: Any) -> Slot | None:
    """The Slot for a stored value, with the metadata's app and time only if its
    fingerprint is this value's (metadata left behind by an edit describes nothing)."""
    if secret is None:
        return None
    if isinstance(meta, dict) and meta.get("fp") == secret.fingerprint:
        app, set_at = meta.get("app"), meta.get("set_at")
        return Slot(
            app if isinstance(app, str) else None, secret.fingerprint, set_at if isinstance(set_at, str) else None
        )
    return Slot(None, secret.fingerprint)


@dataclass
class RotationEvent:
    """What a consumer is told.  Holds the fingerprint; the key only for a consumer whose
    class sets `Consumer.takes_key` (the `proxy` consumer hands it over itself)."""

    secret_name: str
    fingerprint: str
    rotation_id: str
    timestamp: int
    reason: str = "rotation"
    secret: Secret | None = field(default=None, repr=False, compare=False)


@dataclass
class Confirmation:
    confirmed: bool
    reported_fingerprint: str | None = None
    detail: str = ""


class PluginContext:
    """Shared resources handed to every plugin: a thread pool sized for the fan-out
    and one HTTP client (a connection pool per origin), both made at arm time; and the
    plugins' keep-warm touches that hold connections open while the operator gets the key.

    ``http`` is an `httpx.AsyncClient`; ``send(method, url, timeout=, headers=, content=)``
    goes through the same connections and returns a `rotator.transport.Reply` (status,
    headers, body read whole), raising the same httpx errors: use it for a request
    made once per target on the window's path, where a thousand targets make the CPU
    per request the window."""

    def __init__(
        self, *, max_threads: int = 32, http: httpx.AsyncClient | None = None, plan: str | None = None
    ) -> None:
        self.plan = plan  # the plan's name: the `proxy` consumer finds a proxy run in this process by it
        self.executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="rotator")
        self._own_http = http is None
        # httpx's API over aiohttp's pools (rotator.transport: a third of the CPU per
        # request), a pool per origin and connections kept for an hour while armed.
        self._transport = AiohttpTransport()
        self.http = http or http_client(timeout=10.0, transport=self._transport)
        # The same pools without httpx's models, for requests on the window's path at
        # scale (a consumer's signal and confirm): 0.2 ms of CPU where `http` costs 0.55.
        self.send: Send = self._transport.send
        self._touches: list[Callable[[], Awaitable[object]]] = []

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def keep_warm(self, touch: Callable[[], Awaitable[object]]) -> None:
        """Register a request that keeps a connection open while armed (called from `open`).

        The armed session's keeper runs every registered touch (`warm`) each
        `keep_warm_every` seconds (15 s) until the key arrives, under the idle timeouts
        that close connections on the way (many load balancers 60 s, nginx 75 s, some
        proxies 30 s).  A touch must be free and harmless to repeat: no key, no billed
        API call, no write (a webhook's HEAD, Vault's sys/health, an unsigned GET)."""
        self._touches.append(touch)

    async def warm(self) -> None:
        """Run every registered touch at once; their errors are ignored (preflight reports reachability)."""
        await asyncio.gather(*(self._touch(t) for t in self._touches))

    @staticmethod
    async def _touch(touch: Callable[[], Awaitable[object]]) -> None:
        try:
            await touch()
        except Exception:  # noqa: BLE001, S110 - best effort
            pass

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()
        await self._transport.aclose()
        self.executor.shutdown(wait=False, cancel_futures=True)


class _Plugin(ABC):
    async def open(self) -> None:
        """Make clients and connections.  Called at arm time, before the key exists."""

    async def close(self) -> None:
        """Release what `open` made."""

    @abstractmethod
    async def preflight(self) -> Check:
        """Reachable, authenticated, allowed to do its job?  No writes."""

    def describe(self) -> str:
        """Where this target is, for humans (no secrets; no network: `rotator.targets` calls it
        on plugins that were never opened)."""
        return ""


class Backend(_Plugin):
    """Where a secret is stored."""

    Settings: ClassVar[type[BackendSettings]] = BackendSettings
    can_be_primary: ClassVar[bool] = True
    dates_its_value: ClassVar[bool] = False
    """`Stored.changed_at` dates the value itself (a Vault KV v2 version, an AWS version), so a
    key's age may be counted from it when the journal has none; a file's mtime does not."""
    can_hold_standby: ClassVar[bool] = False
    """Implements the standby slot of alternating plans (`read_slots`, `write_standby`,
    `swap_slots`, `preflight_standby`); only the primary ever holds one."""

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

    # -- the standby slot (alternating plans; only where can_hold_standby) --------
    #
    # Both slots and their metadata live in the primary, side by side, so a promote
    # that fails midway can always be finished or undone from there.  Each change is
    # one check-and-set write of the values and the metadata together (the built-ins:
    # one KV v2 version, one Secrets Manager version, one atomic file rename).  A
    # store that cannot do that should not set can_hold_standby: a swap in two writes
    # leaves one key in neither slot if it stops between them.  Retried with the same
    # token a call changes nothing the second time, so each step passes its own token
    # (a promote and the roll back after it are two swaps); a stale `expected_version`
    # (from `read_slots`) raises `Conflict`, as `write` does.  The metadata holds app
    # names, fingerprints, times and the token, never a key (`slots_metadata`).

    @classmethod
    def standby_problem(cls, settings: Any) -> str | None:
        """Why these settings cannot hold a standby slot (for `rotator check`, no network); None if they can."""
        return None if cls.can_hold_standby else f"a {settings.type} backend cannot hold a standby slot"

    async def preflight_standby(self) -> Check:
        """Can the standby location be written (and its metadata read)?  No writes: arm
        fails on ok=False, before anything changes."""
        return Check(ok=False, detail=self.standby_problem(self.settings) or "no standby slot")

    async def read_slots(self) -> Slots:
        """Both slots and their metadata, as stored now."""
        raise PluginError(self.standby_problem(self.settings) or "no standby slot", retryable=False)

    async def write_slot_record(
        self,
        *,
        active_app: str,
        standby_app: str | None,
        fingerprints: tuple[str | None, str | None],
        leaked: dict[str, Any] | None,
        token: str,
        expected_version: str | None,
    ) -> Written:
        """Rewrite the slot metadata only (the two values untouched): which app holds each
        slot and an incident's leaked key.  `fingerprints` are the (active, standby) values
        the caller checked; other values stored now are a `Conflict`, nothing written."""
        raise PluginError(self.standby_problem(self.settings) or "no standby slot", retryable=False)

    async def write_standby(
        self, secret: Secret, *, app: str, token: str, expected_version: str | None, active_app: str | None = None
    ) -> Written:
        """Store `secret` as the standby, `app`'s key; the active value is untouched.
        `active_app` names the active slot's app when rotator did not record it yet
        (first use)."""
        raise PluginError(self.standby_problem(self.settings) or "no standby slot", retryable=False)

    async def swap_slots(self, *, token: str, expected_version: str | None) -> Written:
        """Active and standby change places, values and metadata, in one write (promote,
        and roll back by swapping again).  After it, `read` returns the previous standby."""
        raise PluginError(self.standby_problem(self.settings) or "no standby slot", retryable=False)


class Consumer(_Plugin):
    """Something that uses the secret and must reload."""

    Settings: ClassVar[type[ConsumerSettings]] = ConsumerSettings
    takes_key: ClassVar[bool] = False
    """The consumer is handed the key itself (`RotationEvent.secret`): only one that
    delivers it over its own authenticated channel, as the `proxy` consumer does."""

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
