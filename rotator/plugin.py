"""What a backend or consumer plugin implements.

A plugin is a class registered under the entry-point group
``rotator.backends`` or ``rotator.consumers``.  It declares a pydantic
`Settings` model (checked by ``rotator check`` with no network) and
implements async methods; blocking SDKs run through `PluginContext.run_blocking`
so that a hundred targets write at once without stalling the event loop.

The built-in plugins in ``rotator_plugins`` use exactly this interface.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rotator.errors import Conflict as Conflict  # re-exported: defined in rotator.errors
from rotator.errors import PluginError
from rotator.plugin_context import PluginContext as PluginContext  # re-exported
from rotator.secret import Secret
from rotator.slots import SLOTS_FORMAT as SLOTS_FORMAT  # re-exported, as the slot types below
from rotator.slots import Slot as Slot
from rotator.slots import Slots as Slots
from rotator.slots import parse_slots_metadata as parse_slots_metadata
from rotator.slots import slot_of as slot_of
from rotator.slots import slots_metadata as slots_metadata


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
