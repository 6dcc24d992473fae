"""AWS Secrets Manager backend (boto3).

The SecretString is either the key itself or, with ``json_key``, one field of a
JSON object whose other fields are kept.  Each write is a ``PutSecretValue``
with a ``ClientRequestToken`` derived from the rotation id and the backend
name, so a retried write never makes a second version; AWSCURRENT moves to the
new version and AWSPREVIOUS keeps the old one, as AWS's own rotation leaves
them.

A plan entry::

    [[backends]]
    name = "aws"
    type = "aws"
    secret_id = "prod/billing/adjutor"
    region = "eu-west-1"
    json_key = "api_key"        # optional

As the primary of an alternating plan (``json_key`` needed) it keeps the standby
key in a second JSON field (``standby_json_key``, default ``<json_key>_standby``)
and the slot metadata in a third (``slots_json_key``, default ``<json_key>_slots``):
every slot change is one new version.

Credentials come from the usual AWS chain (environment, ``profile``, SSO,
instance or task role), never from the plan; ``role_arn`` is assumed through
STS at arm time and refreshed by botocore when it nears expiry.
``endpoint_url`` points Secrets Manager at moto or a VPC endpoint (STS keeps
its own endpoint; set ``AWS_ENDPOINT_URL_STS`` to move it too).

The session, credentials and client are all made in `open` (arm time,
`_aws_client`): creating a boto3 client takes a noticeable fraction of a second,
which must not be spent after the key arrives.  Retries are rotator's, so
botocore makes one attempt.  No message ever includes the SecretString
(`_aws_errors`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import Field, field_validator
from rotator_plugins._aws_client import build_client, touch
from rotator_plugins._aws_errors import deleted, not_found, token_reused, translate
from rotator_plugins._sdk import NotFound, SdkBackend

from rotator.backend_rules import Change, SlotFields, SlotState, StandbySlots, key_change
from rotator.plugin import BackendSettings, Check, PluginError, Stored, Written
from rotator.secret import Secret

if TYPE_CHECKING:
    pass

T = TypeVar("T")

TOKEN_NAMESPACE = uuid.UUID("5d9c3a4e-2f0b-5b8e-9a57-6f3b0f6f1c21")
_TOKEN_OK = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


def request_token(token: str) -> str:
    """A ClientRequestToken (32-64 characters) from rotator's write token.

    Used as given when it already fits; otherwise a UUID5 of it, so the same
    rotation and backend always give the same token.
    """
    if _TOKEN_OK.match(token):
        return token
    return str(uuid.uuid5(TOKEN_NAMESPACE, token))


class AwsSettings(BackendSettings, SlotFields):
    secret_id: str = Field(min_length=1, max_length=2048, description="secret name or ARN")
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")
    profile: str | None = Field(default=None, min_length=1)
    endpoint_url: str | None = None
    role_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    json_key: str | None = Field(default=None, min_length=1, description="the key lives in this field of a JSON object")
    create: bool = Field(default=False, description="create the secret if it does not exist")
    standby_json_key: str | None = Field(
        default=None,
        min_length=1,
        description="alternating plans, primary only: the standby key's JSON field (default <json_key>_standby)",
    )
    slots_json_key: str | None = Field(
        default=None,
        min_length=1,
        description="alternating plans, primary only: the slot metadata's JSON field (default <json_key>_slots)",
    )
    slot_settings: ClassVar[tuple[str, str, str]] = ("json_key", "standby_json_key", "slots_json_key")

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must start with http:// or https:// and name a host")
        return v


class AwsSecretsManagerBackend(StandbySlots, SdkBackend):
    """A secret in AWS Secrets Manager."""

    Settings: ClassVar[type[BackendSettings]] = AwsSettings
    dates_its_value: ClassVar[bool] = True  # the AWSCURRENT version's CreatedDate dates the value
    can_be_primary: ClassVar[bool] = True
    label: ClassVar[str] = "aws"
    settings: AwsSettings

    def __init__(self, settings: Any, ctx: Any) -> None:
        super().__init__(settings, ctx)
        self._region: str = settings.region or ""

    # -- helpers -----------------------------------------------------------

    def describe(self) -> str:
        s = self.settings
        where = f" via {s.endpoint_url}" if s.endpoint_url else ""
        key = f" field {s.json_key}" if s.json_key else ""
        return f"Secrets Manager {s.secret_id}{key} in {self._region or s.region or '(default region)'}{where}"

    @property
    def _where(self) -> str:
        return f"aws {self.name}: {self.settings.secret_id}"

    @property
    def _is_arn(self) -> bool:
        return self.settings.secret_id.startswith("arn:")

    def _not_found(self) -> PluginError:
        return not_found(self._fail, self.settings.secret_id, self._region)

    def _deleted(self, when: Any = None) -> PluginError:
        return deleted(self._fail, self.settings.secret_id, when)

    def _token_reused(self) -> PluginError:
        return token_reused(self._fail, self.settings.secret_id)

    def sdk_errors(self) -> tuple[type[BaseException], ...]:
        import botocore.exceptions

        return (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)

    def _translate(self, exc: BaseException, op: str) -> PluginError:
        s = self.settings
        return translate(
            exc,
            op,
            self._fail,
            secret_id=s.secret_id,
            region=self._region,
            profile=s.profile,
            endpoint=self._endpoint(),
        )

    def _endpoint(self) -> str:
        if self._client is not None:
            return str(self._client.meta.endpoint_url)
        return self.settings.endpoint_url or f"secretsmanager.{self._region}"

    async def _call(self, op: str, fn: Callable[..., T], **kwargs: Any) -> T:
        return await self._run(op, fn, **kwargs)

    # -- lifecycle ---------------------------------------------------------

    def _build(self) -> Any:
        client, self._region = build_client(self.ctx, self.settings, self.name, self._fail)
        return client

    async def open(self) -> None:
        # boto3 and botocore (~85 ms) load here, at arm time, not when `rotator check` reads the plan.
        import boto3.session  # noqa: F401
        import botocore.config
        import botocore.credentials
        import botocore.exceptions

        try:
            self._client = await self.ctx.run_blocking(self._build)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._translate(exc, "open") from None
        self.ctx.keep_warm(lambda: self.ctx.run_blocking(touch, self._client))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self.ctx.run_blocking(client.close)

    # -- preflight ---------------------------------------------------------

    async def _preflight(self) -> Check:
        s = self.settings
        warnings: list[str] = []
        try:
            desc = await self._call("DescribeSecret", self.client.describe_secret, SecretId=s.secret_id)
        except NotFound:
            if s.create and not self._is_arn:
                return Check(ok=True, detail=f"{s.secret_id} does not exist in {self._region}; it will be created")
            raise
        if desc.get("DeletedDate"):
            raise self._deleted(desc["DeletedDate"])
        if desc.get("RotationEnabled"):
            lam = desc.get("RotationLambdaARN") or "a rotation function"
            warnings.append(
                f"aws {self.name}: AWS-managed rotation is on for {s.secret_id} ({lam}); it would replace the "
                "key rotator writes (turn it off: aws secretsmanager cancel-rotate-secret)"
            )
        stored = await self.read()
        arn = desc.get("ARN") or s.secret_id
        if stored.version is None:
            state = "no AWSCURRENT value yet"
        else:
            state = f"AWSCURRENT {stored.version}"
            if s.json_key and stored.secret is None:
                state += f"; field {s.json_key} not set yet"
        return Check(
            ok=True,
            detail=f"{arn} in {self._region}: {state} (write access is checked by the write)",
            warnings=warnings,
        )

    # -- read / write ------------------------------------------------------

    async def _current(self) -> tuple[str | None, dict[str, Any] | str | None]:
        """(AWSCURRENT version id, value): value is the parsed JSON object in json_key mode,
        else the string; (None, None) when the secret has no current value."""
        s = self.settings
        try:
            resp = await self._call(
                "GetSecretValue", self.client.get_secret_value, SecretId=s.secret_id, VersionStage="AWSCURRENT"
            )
        except NotFound:
            return None, None
        version = resp.get("VersionId")
        created = resp.get("CreatedDate")
        self._created: str | None = created.astimezone(UTC).isoformat() if isinstance(created, datetime) else None
        text = resp.get("SecretString")
        if text is None:
            raise self._fail(f"{s.secret_id} holds SecretBinary; rotator writes SecretString")
        if not s.json_key:
            return version, text
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            raise self._fail(f"{s.secret_id} SecretString is not a JSON object, but json_key = {s.json_key!r} is set")
        return version, obj

    def _key_of(self, value: dict[str, Any] | str | None, name: str | None = None) -> Secret | None:
        if value is None:
            return None
        if isinstance(value, str):
            return Secret(value)
        name = name or self.settings.json_key or ""
        field = value.get(name)
        if field is None:
            return None
        if not isinstance(field, str):
            raise self._fail(f"field {name} of {self.settings.secret_id} is not a string")
        return Secret(field)

    async def read(self) -> Stored:
        self._created = None
        version, value = await self._current()
        return Stored(self._key_of(value), version=version, changed_at=self._created)

    async def write(self, secret: Secret, *, token: str, expected_version: str | None) -> Written:
        s = self.settings
        crt = request_token(token)
        if not (s.json_key or expected_version is not None):
            # A plain string read only for a check-and-set (the primary): a target's write stays
            # one call, and its ClientRequestToken makes a retry no second version.
            return await self._put(secret.reveal(), crt, previous=None)
        # json_key: the other fields are kept, so the object is read anyway.
        version, value = await self._current()
        held = self._key_of(value)
        if version == crt and held != secret:
            raise self._token_reused()
        if key_change(held, version, secret, expected_version=expected_version, where=self._where) is None:
            return Written(version=version, detail=f"{version} is AWSCURRENT (already current, nothing written)")
        if not s.json_key:
            return await self._put(secret.reveal(), crt, previous=version)
        obj = dict(value) if isinstance(value, dict) else {}
        obj[s.json_key] = secret.reveal()
        return await self._put(json.dumps(obj), crt, previous=version)

    async def _put(self, text: str, crt: str, *, previous: str | None, done: str = "") -> Written:
        """One PutSecretValue of `text` (CreateSecret when the secret is missing and `create` is set)."""
        s = self.settings
        try:
            resp = await self._call(
                "PutSecretValue",
                self.client.put_secret_value,
                SecretId=s.secret_id,
                ClientRequestToken=crt,
                SecretString=text,
            )
        except NotFound:
            if not s.create or self._is_arn:
                raise
            resp = await self._call(
                "CreateSecret", self.client.create_secret, Name=s.secret_id, ClientRequestToken=crt, SecretString=text
            )
            if not done:
                return Written(version=resp.get("VersionId", crt), detail=f"created {s.secret_id}; {crt} is AWSCURRENT")
        new = resp.get("VersionId", crt)
        if done:
            return Written(version=new, detail=f"{new} is AWSCURRENT: {done} (previous {previous} kept as AWSPREVIOUS)")
        detail = f"{new} is AWSCURRENT"
        if previous and previous != new:
            detail += f" (previous {previous} kept as AWSPREVIOUS)"
        return Written(version=new, detail=detail)

    # -- the standby slot (alternating plans) ------------------------------
    #
    # Two more fields of the same JSON SecretString: the standby key and the slot
    # metadata (JSON, no key).  One PutSecretValue changes all three, so a swap is
    # one new version (AWSPREVIOUS keeps the one before).  Not tags: tags are
    # changed by their own call, outside the version history, and a crash between
    # the two would leave them describing the wrong values.  Check-and-set is as for
    # `write` with json_key: the AWSCURRENT version read just before the put.

    @classmethod
    def standby_problem(cls, settings: Any) -> str | None:
        if not settings.json_key:
            return (
                "a standby slot needs json_key (the SecretString a JSON object: the key, the standby key and "
                'the slot metadata side by side), e.g. json_key = "api_key"'
            )
        return None

    def _state_of(self, version: str | None, value: dict[str, Any] | str | None) -> SlotState:
        s = self.settings
        obj = value if isinstance(value, dict) else {}
        meta = obj.get(s.slots)
        return SlotState(
            self._key_of(obj), self._key_of(obj, s.standby), meta if isinstance(meta, str) else None, version
        )

    async def _slot_state(self) -> SlotState:
        return self._state_of(*await self._current())

    def _slots_at(self) -> tuple[str, str, str]:
        s = self.settings
        return self._where, f"field {s.standby}", f"field {s.slots}"

    async def _change_slots(
        self, change: Callable[[SlotState], Change | None], *, token: str, expected_version: str | None, done: str
    ) -> Written:
        s = self.settings
        problem = self.standby_problem(s)
        if problem:
            raise self._fail(problem)
        version, value = await self._current()
        todo = change(self._state_of(version, value))
        if todo is None:
            return Written(version=version, detail=f"{version} is AWSCURRENT (already done, nothing written)")
        crt = request_token(token)
        if version == crt:
            raise self._token_reused()
        obj = dict(value) if isinstance(value, dict) else {}
        for name, key in ((s.json_key or "", todo.active), (s.standby, todo.standby)):
            if key is not None:
                obj[name] = key.reveal()
        obj[s.slots] = todo.meta_text
        return await self._put(json.dumps(obj), crt, previous=version, done=done)
