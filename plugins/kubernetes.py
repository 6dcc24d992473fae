"""The ``kubernetes`` backend: the key in one data key of a Kubernetes Secret.

Every other key of the Secret is kept: the write is a JSON merge patch of that
one data key, so the other values are neither resent nor overwritten.  The
patch carries the ``metadata.resourceVersion`` read at arm, which the API
server treats as a precondition: a Secret changed by someone else in between
is refused with HTTP 409 and the write ends in a `Conflict` (exit 9 on the
primary, unless ``--force``) instead of replacing their change.  A retried
write whose first answer was lost finds the key already there and writes
nothing (no second resourceVersion).

An ``immutable`` Secret is refused with one line: it can only be deleted and
recreated, and kubelets that mounted it keep their cached copy until its pods
are recreated, so rotating it in place is not possible.

Client: lightkube, async over httpx (why, in `_kube`).  A plan entry::

    [[backends]]
    name = "k8s"
    type = "kubernetes"
    namespace = "billing"
    secret = "adjutor-api"
    key = "ADJUTOR_API_KEY"

The Secret's name is ``secret`` (``name`` is every target's own name in a
plan).  Secret data is base64 on the wire: an API server message is shown only
through `_kube.kube_said`, which scrubs the base64 forms too, so neither the key
nor its base64 can reach a log or an error line.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import Field

from rotator.backend_rules import key_change
from rotator.plugin import Backend, BackendSettings, Check, PluginError, Stored, Written
from rotator.secret import Secret

from ._kube import (
    DATA_KEY,
    DNS_SUBDOMAIN,
    ApiError,
    KubeSecret,
    KubeTarget,
    ObjectMeta,
    PatchType,
    access_problems,
    is_status,
    open_client,
    rbac_check,
    server_of,
    translate,
)

__all__ = ["KubernetesSecretBackend"]

MANAGED_BY = {"app.kubernetes.io/managed-by": "rotator"}


@dataclass
class _Seen:
    """What the last read found: whether the Secret exists, its resourceVersion,
    its data (base64 values, kept so the check below needs no second read)."""

    exists: bool
    version: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    immutable: bool = False
    changed_at: str | None = None  # the latest managed-fields entry: when, and by which manager
    changed_by: str | None = None


def _last_managed(meta: Any) -> tuple[str | None, str | None]:
    """(when, manager) of the Secret's latest managed-fields entry; (None, None) when it has none."""
    latest: tuple[str, str | None] | None = None
    for entry in getattr(meta, "managedFields", None) or []:
        when = getattr(entry, "time", None)
        if when is None:
            continue
        stamp = when.astimezone(UTC).isoformat() if isinstance(when, datetime) else str(when)
        if latest is None or stamp > latest[0]:
            latest = (stamp, getattr(entry, "manager", None))
    return latest if latest is not None else (None, None)


class KubernetesSecretSettings(BackendSettings, KubeTarget):
    type: str = "kubernetes"
    secret: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description="the Secret's name")
    key: str = Field(max_length=253, pattern=DATA_KEY, description="the data key holding the API key")
    create: bool = Field(default=False, description="create the Secret (type Opaque) if it does not exist")


class KubernetesSecretBackend(Backend):
    """One data key of a Secret; the other keys kept; resourceVersion check-and-set."""

    Settings: ClassVar[type[BackendSettings]] = KubernetesSecretSettings
    can_be_primary: ClassVar[bool] = True
    settings: KubernetesSecretSettings

    def __init__(self, settings: Any, ctx: Any) -> None:
        super().__init__(settings, ctx)
        self._client: Any = None
        self._server = "the API server"
        self._seen: _Seen | None = None

    # -- helpers -----------------------------------------------------------

    @property
    def _label(self) -> str:
        return f"kubernetes {self.name}"

    @property
    def _where(self) -> str:
        return f"Secret {self.settings.namespace}/{self.settings.secret}"

    @property
    def _named(self) -> str:
        return f"{self._label}: {self._where}"

    def _fail(self, what: str, *, retryable: bool = False) -> PluginError:
        return PluginError(f"{self._label}: {what}", retryable=retryable)

    def describe(self) -> str:
        ctx = f" (context {self.settings.context})" if self.settings.context else ""
        return f"{self._where} key {self.settings.key} at {self._server}{ctx}"

    def _immutable(self) -> PluginError:
        return self._fail(
            f"{self._where} is immutable: it cannot be changed, only deleted and recreated (and kubelets keep "
            "their cached copy until its pods are recreated); make it mutable, or recreate it without immutable"
        )

    def _held(self, seen: _Seen) -> Secret | None:
        return self._key_of(seen) if seen.exists else None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise self._fail("not open")
        return self._client

    def _key_of(self, seen: _Seen) -> Secret | None:
        raw = seen.data.get(self.settings.key)
        if raw is None:
            return None
        try:
            return Secret(base64.b64decode(raw, validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise self._fail(f"data key {self.settings.key} of {self._where} is not base64 of UTF-8 text") from None

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        try:
            self._client = await open_client(self.settings, self.settings.timeout, self.ctx.run_blocking)
        except PluginError as exc:
            raise self._fail(str(exc)) from None
        self._server = server_of(self._client)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # -- read --------------------------------------------------------------

    async def _load(self) -> _Seen:
        s = self.settings
        try:
            obj = await self.client.get(KubeSecret, s.secret, namespace=s.namespace)
        except ApiError as exc:
            if is_status(exc, 404):
                self._seen = _Seen(exists=False)
                return self._seen
            raise translate(exc, self._label, f"get {self._where}", self._server) from None
        except Exception as exc:  # noqa: BLE001 - one line, never the client's text
            raise translate(exc, self._label, f"get {self._where}", self._server) from None
        meta = obj.metadata
        changed_at, changed_by = _last_managed(meta)
        self._seen = _Seen(
            exists=True,
            version=meta.resourceVersion if meta is not None else None,
            data=dict(obj.data or {}),
            immutable=bool(obj.immutable),
            changed_at=changed_at,
            changed_by=changed_by,
        )
        return self._seen

    async def read(self) -> Stored:
        seen = await self._load()
        return Stored(
            self._key_of(seen) if seen.exists else None,
            version=seen.version,
            changed_at=seen.changed_at,
            changed_by=seen.changed_by,
        )

    # -- preflight ---------------------------------------------------------

    async def preflight(self) -> Check:
        try:
            return await self._preflight()
        except PluginError as exc:
            return Check(ok=False, detail=str(exc))

    async def _preflight(self) -> Check:
        s = self.settings
        seen = await self._load()
        if not seen.exists and not s.create:
            return Check(False, f"{self._label}: {self._where} does not exist (create it, or set create = true)")
        if seen.immutable:
            return Check(False, str(self._immutable()))
        verbs = ["get", "patch"] if seen.exists else ["get", "create"]
        denied = await access_problems(
            self.client,
            self._label,
            self._server,
            namespace=s.namespace,
            group="",
            resource="secrets",
            name=s.secret if seen.exists else "",
            verbs=verbs,
        )
        if denied:
            return rbac_check(self._label, self._where, denied, f'apiGroups [""], resources ["secrets"], verbs {verbs}')
        if not seen.exists:
            return Check(True, f"{self._where} does not exist; it will be created at {self._server}")
        state = f"resourceVersion {seen.version}"
        if s.key not in seen.data:
            state += f"; key {s.key} not set yet"
        return Check(True, f"{self._where} at {self._server}: {state} (get and patch allowed)")

    # -- write -------------------------------------------------------------

    async def write(self, secret: Secret, *, token: str, expected_version: str | None) -> Written:
        expected = expected_version
        seen = self._seen
        # Arm (or the last write) read the Secret: patch on that resourceVersion and
        # skip a read, so the write is one round trip after the key arrives.
        if seen is None or (expected is not None and (seen.version or "0") != expected):
            seen = await self._load()
        if seen.immutable:
            raise self._immutable()
        if key_change(self._held(seen), seen.version, secret, expected_version=expected, where=self._named) is None:
            return Written(version=seen.version, detail=f"resourceVersion {seen.version} (already current)")
        if not seen.exists:
            return await self._create(secret, expected)
        return await self._patch(secret, seen, expected)

    def _encoded(self, secret: Secret) -> str:
        return base64.b64encode(secret.reveal().encode("utf-8")).decode("ascii")

    async def _after_conflict(self, secret: Secret, expected: str | None, doing: str) -> Written:
        """A 409: someone wrote in between, or an earlier attempt of this write landed
        and its answer was lost.  Look before deciding."""
        now = await self._load()
        if key_change(self._held(now), now.version, secret, expected_version=expected, where=self._named) is None:
            return Written(version=now.version, detail=f"resourceVersion {now.version} (already current)")
        raise self._fail(f"{self._where} changed during the {doing} (now {now.version or 'absent'})", retryable=True)

    async def _patch(self, secret: Secret, seen: _Seen, expected: str | None) -> Written:
        s = self.settings
        body = {"metadata": {"resourceVersion": seen.version}, "data": {s.key: self._encoded(secret)}}
        try:
            obj = await self.client.patch(KubeSecret, s.secret, body, namespace=s.namespace, patch_type=PatchType.MERGE)
        except ApiError as exc:
            if is_status(exc, 409) or is_status(exc, 404):
                return await self._after_conflict(secret, expected, "write")
            if is_status(exc, 422) and "immutable" in str(getattr(exc.status, "message", "")):
                raise self._immutable() from None
            raise translate(exc, self._label, f"patch {self._where}", self._server) from None
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, self._label, f"patch {self._where}", self._server) from None
        new = obj.metadata.resourceVersion if obj.metadata is not None else None
        self._seen = _Seen(True, new, dict(obj.data or {}), bool(obj.immutable))
        others = len(self._seen.data) - 1
        kept = f"; {others} other key{'s' if others != 1 else ''} kept" if others > 0 else ""
        return Written(version=new, detail=f"resourceVersion {new} (was {seen.version}{kept})")

    async def _create(self, secret: Secret, expected: str | None) -> Written:
        s = self.settings
        if not s.create:
            raise self._fail(f"{self._where} does not exist (create it, or set create = true)")
        obj = KubeSecret(
            metadata=ObjectMeta(name=s.secret, namespace=s.namespace, labels=dict(MANAGED_BY)),
            type="Opaque",
            data={s.key: self._encoded(secret)},
        )
        try:
            made = await self.client.create(obj)
        except ApiError as exc:
            if is_status(exc, 409):  # made in between (or by a lost earlier attempt)
                return await self._after_conflict(secret, expected, "create")
            raise translate(exc, self._label, f"create {self._where}", self._server) from None
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, self._label, f"create {self._where}", self._server) from None
        new = made.metadata.resourceVersion if made.metadata is not None else None
        self._seen = _Seen(True, new, dict(made.data or {}), False)
        return Written(version=new, detail=f"created {self._where} (resourceVersion {new})")
