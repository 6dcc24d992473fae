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

As the primary of an alternating plan it keeps the standby key in a second field
(``standby_field``, default ``<field>_standby``) and the slot metadata in a third
(``slots_field``, default ``<field>_slots``), so every slot change is one cas write.

The connection (address, TLS, token / AppRole / Kubernetes auth, relogin) is
`_vault_client`'s; every client, session and login is made in `open` (arm time),
so after the key arrives only the write itself goes over the wire.  Error
messages never include hvac's exception text unfiltered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field, field_validator
from rotator_plugins._sdk import Denied, NotFound, SdkBackend
from rotator_plugins._vault_client import (
    CAS_MISMATCH,
    CasMismatch,
    VaultClient,
    VaultConnection,
    sdk_errors,
    segments,
    translate,
)

from rotator.backend_rules import Change, SlotFields, SlotState, StandbySlots, key_change
from rotator.plugin import BackendSettings, Check, PluginError, Stored, Written
from rotator.secret import Secret

T = TypeVar("T")

__all__ = ["CAS_MISMATCH", "VaultBackend", "VaultSettings"]

MIN_TOKEN_TTL = 300  # seconds; a token about to expire would fail in the middle of a rotation

_RAISE: Any = object()


class VaultSettings(VaultConnection, SlotFields):
    mount: str = Field(default="secret", description="KV mount path")
    path: str = Field(description="secret path inside the mount")
    field: str = Field(
        default="api_key", min_length=1, max_length=500, description="field of the secret holding the key"
    )
    kv_version: Literal[1, 2] = 2
    standby_field: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="alternating plans, primary only: the standby key's field (default <field>_standby)",
    )
    slots_field: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="alternating plans, primary only: the slot metadata's field (default <field>_slots)",
    )
    slot_settings: ClassVar[tuple[str, str, str]] = ("field", "standby_field", "slots_field")

    @field_validator("mount", "path")
    @classmethod
    def _paths(cls, v: str) -> str:
        return segments(v)


class VaultBackend(StandbySlots, SdkBackend):
    """A KV v2 (or v1) secret in Vault; the key in one field, other fields kept."""

    Settings: ClassVar[type[BackendSettings]] = VaultSettings
    dates_its_value: ClassVar[bool] = True  # a KV v2 version's created_time dates the value
    can_be_primary: ClassVar[bool] = True
    label: ClassVar[str] = "vault"
    settings: VaultSettings

    def __init__(self, settings: Any, ctx: Any) -> None:
        super().__init__(settings, ctx)
        self._conn = VaultClient(self.settings, ctx, self._fail)
        # What the last read saw: (version, every field).  A write whose cas is
        # that version can build the new data from it without reading again.
        self._base: tuple[int, dict[str, Any]] | None = None

    # -- helpers -----------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.settings.mount}/{self.settings.path}"

    @property
    def _named(self) -> str:
        return f"vault {self.name}: {self._where}"

    @property
    def _acl_path(self) -> str:
        s = self.settings
        return f"{s.mount}/data/{s.path}" if s.kv_version == 2 else f"{s.mount}/{s.path}"

    def describe(self) -> str:
        s = self.settings
        ns = f" namespace {s.namespace}" if s.namespace else ""
        return f"{s.url}{ns} {self._where} field {s.field} (kv v{s.kv_version}, {s.auth} auth)"

    def sdk_errors(self) -> tuple[type[BaseException], ...]:
        return sdk_errors()

    def _translate(self, exc: BaseException, doing: str) -> PluginError:
        return translate(exc, doing, self.settings.url, self._fail)

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

        `missing`: what to return on a 404 instead of raising.  A 403 on a login
        token logs in again once and retries (the token may have expired while the
        operator was getting the key).
        """
        try:
            return await self._run(where, fn, *args, **kwargs)
        except NotFound:
            if missing is not _RAISE:
                return missing  # type: ignore[no-any-return]
            raise
        except Denied:
            if not (relogin and self._conn.can_relogin):
                raise
        await self._conn.login()
        return await self._call(where, fn, *args, relogin=False, missing=missing, **kwargs)

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        self._client = await self._conn.open()
        # sys/health needs no token and changes nothing: it keeps the session's connection open while armed.
        self.ctx.keep_warm(lambda: self.ctx.run_blocking(lambda: self.client.sys.read_health_status(method="GET")))

    async def close(self) -> None:
        self._conn.close()
        self._client = None

    # -- preflight ---------------------------------------------------------

    async def _preflight(self) -> Check:
        s = self.settings
        warnings: list[str] = []
        unhealthy = await self._health(warnings)
        if unhealthy is not None:
            return unhealthy
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

    async def _health(self, warnings: list[str]) -> Check | None:
        """sys/health: a failed Check when Vault cannot serve (sealed, not initialized); None when it can."""
        s = self.settings
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
        return None

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

    def _field(self, data: dict[str, Any], name: str | None = None) -> Secret | None:
        name = name or self.settings.field
        value = data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(f"field {name} of {self._where} is not a string")
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
            self._created_time: str | None = body["metadata"].get("created_time") or None
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
        self._created_time = None
        _, version, fields = await self._current()
        if self.settings.kv_version == 1:
            return Stored(self._field(fields or {}))
        return Stored(self._field(fields or {}), version=str(version), changed_at=self._created_time)

    async def write(self, secret: Secret, *, token: str, expected_version: str | None) -> Written:
        if self.settings.kv_version == 1:
            return await self._write_v1(secret)
        return await self._write_v2(secret, expected_version)

    def _fields_at(self, expected_version: str | None) -> tuple[int, dict[str, Any]] | None:
        """What arm (or the last write) read, when it is the expected version: a write on it
        as cas skips a read, so a write is one round trip after the key arrives.  For the
        primary it must be the expected version; for the others, a secret changed since is
        refused by the cas and `_cas_write` reads."""
        if self._base is not None and (expected_version is None or str(self._base[0]) == expected_version):
            return self._base
        return None

    async def _write_v2(self, secret: Secret, expected_version: str | None) -> Written:
        expected = expected_version
        if expected is not None:
            try:
                expected = str(int(expected))
            except ValueError:
                raise self._fail(f"expected version {expected!r} is not a KV v2 version number") from None
        version, fields = self._fields_at(expected) or await self._read_all()
        where = self._named

        def landed(now: int, data: dict[str, Any]) -> bool:
            return key_change(self._field(data), str(now), secret, expected_version=expected, where=where) is None

        if landed(version, fields):
            # A retried write, or a rerun: never make a second version.
            return Written(version=str(version), detail=f"v{version} (already current, nothing written)")
        new_fields = {**fields, self.settings.field: secret.reveal()}
        new_version, wrote = await self._cas_write(new_fields, version, landed)
        if not wrote:
            return Written(version=str(new_version), detail=f"v{new_version} (already current, nothing written)")
        detail = f"v{new_version} (previous v{version} kept)" if version else f"v{new_version} (new secret)"
        return Written(version=str(new_version), detail=detail)

    async def _read_all(self) -> tuple[int, dict[str, Any]]:
        version, data = await self._read_v2()
        return version, data or {}

    async def _cas_write(
        self, fields: dict[str, Any], cas: int, landed: Callable[[int, dict[str, Any]], bool]
    ) -> tuple[int, bool]:
        """One KV v2 write of `fields` on version `cas`: (the new version, True).  A refused
        cas is someone's write in between, or an earlier attempt of this very write that
        landed and whose answer was lost: look before deciding.  (the version now, False)
        when `landed(version now, fields now)` says it is this write; `landed` raises
        `Conflict` when the version now is not the expected one; else retryable."""
        s = self.settings
        resp: Any = _RAISE
        try:
            resp = await self._call(
                self._where,
                self.client.secrets.kv.v2.create_or_update_secret,
                path=s.path,
                secret=fields,
                cas=cas,
                mount_point=s.mount,
            )
        except CasMismatch:
            pass  # looked at below, outside this handler: a Conflict is not raised "during" it
        if resp is _RAISE:
            now_version, now_fields = await self._read_all()
            if landed(now_version, now_fields):
                return now_version, False
            raise self._fail(f"{self._where} changed during the write (now version {now_version})", retryable=True)
        try:
            new_version = int(resp["data"]["version"])
        except (KeyError, TypeError, ValueError):
            raise self._fail(f"unexpected answer writing {self._where}", retryable=True) from None
        self._base = (new_version, fields)
        return new_version, True

    async def _write_v1(self, secret: Secret) -> Written:
        s = self.settings
        fields = await self._read_v1() or {}
        if key_change(self._field(fields), None, secret, expected_version=None, where=self._where) is None:
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

    # -- the standby slot (alternating plans) ------------------------------
    #
    # Two more fields of the same secret: the standby key and the slot metadata
    # (JSON, no key).  Not custom_metadata: that is written by its own request with
    # no check-and-set, so a swap would be two writes that a crash could leave
    # disagreeing; three fields of one version make every slot change one cas write.

    @classmethod
    def standby_problem(cls, settings: Any) -> str | None:
        if settings.kv_version != 2:
            return "kv_version = 1 keeps no versions and has no check-and-set; a standby slot needs KV v2"
        return None

    def _state_of(self, version: int, fields: dict[str, Any]) -> SlotState:
        s = self.settings
        meta = fields.get(s.slots)
        return SlotState(
            self._field(fields), self._field(fields, s.standby), meta if isinstance(meta, str) else None, str(version)
        )

    async def _slot_state(self) -> SlotState:
        version, data = await self._read_v2()
        return self._state_of(version, data or {})

    def _slots_at(self) -> tuple[str, str, str]:
        return self._named, f"field {self.settings.standby}", f"field {self.settings.slots}"

    async def _change_slots(
        self, change: Callable[[SlotState], Change | None], *, token: str, expected_version: str | None, done: str
    ) -> Written:
        """One cas write of the three fields (every other field kept)."""
        s = self.settings
        problem = self.standby_problem(s)
        if problem:
            raise self._fail(problem)
        version, fields = self._fields_at(expected_version) or await self._read_all()
        todo = change(self._state_of(version, fields))
        if todo is None:
            return Written(version=str(version), detail=f"v{version} (already done, nothing written)")
        new_fields = dict(fields)
        for name, value in ((s.field, todo.active), (s.standby, todo.standby)):
            if value is not None:
                new_fields[name] = value.reveal()
        new_fields[s.slots] = todo.meta_text
        new_version, wrote = await self._cas_write(
            new_fields, version, lambda now, data: change(self._state_of(now, data)) is None
        )
        if not wrote:
            return Written(version=str(new_version), detail=f"v{new_version} (already done, nothing written)")
        return Written(version=str(new_version), detail=f"v{new_version}: {done} (previous v{version} kept)")
