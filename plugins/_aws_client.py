"""The connection to Secrets Manager: session, credentials, role and client (boto3).

All of it is made at arm time (`build_client`, from the backend's `open`):
creating a boto3 client takes a noticeable fraction of a second, which must not
be spent after the key arrives.  Credentials come from the usual AWS chain,
resolved whole here; ``role_arn`` is assumed through STS and refreshed by
botocore when it nears expiry.  Retries are rotator's, so botocore makes one
attempt.  What to read and write, and what AWS's errors mean, are `aws`'s.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from rotator.plugin import PluginContext, PluginError

if TYPE_CHECKING:
    import boto3.session
    from botocore.config import Config

__all__ = ["build_client", "touch"]

Fail = Callable[..., PluginError]


class Connection(Protocol):
    """The settings a client is built from (`aws.AwsSettings`)."""

    @property
    def profile(self) -> str | None: ...
    @property
    def region(self) -> str | None: ...
    @property
    def role_arn(self) -> str | None: ...
    @property
    def endpoint_url(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...


# One boto3 session per (profile, region) per rotation's PluginContext: a session loads
# its own copy of the service models and endpoint data, ~8 MB a backend, so 33 AWS
# backends took ~270 MB; clients of one session share them (~1 MB a client).
_SESSIONS: weakref.WeakKeyDictionary[PluginContext, dict[tuple[str | None, str | None], boto3.session.Session]] = (
    weakref.WeakKeyDictionary()
)
_SESSIONS_LOCK = threading.Lock()


def _session(ctx: PluginContext, profile: str | None, region: str | None) -> boto3.session.Session:
    """The shared session for these settings (call with _SESSIONS_LOCK held)."""
    import boto3.session

    per_ctx = _SESSIONS.setdefault(ctx, {})
    session = per_ctx.get((profile, region))
    if session is None:
        session = per_ctx[(profile, region)] = boto3.session.Session(profile_name=profile, region_name=region)
    return session


def _config(timeout: float) -> Config:
    from botocore.config import Config

    return Config(
        connect_timeout=min(5.0, timeout),
        read_timeout=timeout,
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=16,
        user_agent_extra="rotator",
    )


def _assume_role(base: boto3.session.Session, region: str, role_arn: str, name: str, timeout: float) -> Any:
    import boto3.session
    import botocore.session
    from botocore.credentials import RefreshableCredentials

    sts = base.client("sts", region_name=region, config=_config(timeout))
    session_name = re.sub(r"[^\w+=,.@-]", "-", f"rotator-{name}")[:64]

    def fetch() -> dict[str, Any]:
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name)["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    refreshable = RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
    )
    core = botocore.session.get_session()
    core._credentials = refreshable  # the documented way to hand botocore refreshable credentials
    return boto3.session.Session(botocore_session=core, region_name=region)


def build_client(ctx: PluginContext, s: Connection, name: str, fail: Fail) -> tuple[Any, str]:
    """(a Secrets Manager client, its region), credentials resolved (run it in the pool)."""
    with _SESSIONS_LOCK:  # botocore sessions are not safe to build clients from in several threads
        return _build_locked(ctx, s, name, fail)


def _build_locked(ctx: PluginContext, s: Connection, name: str, fail: Fail) -> tuple[Any, str]:
    import botocore.exceptions

    session = _session(ctx, s.profile, s.region)
    region = s.region or session.region_name
    if not region:
        raise fail("no region: set region in the plan, or AWS_REGION / the profile's region")
    if s.role_arn:
        try:
            session = _assume_role(session, region, s.role_arn, name, s.timeout)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            raise fail(f"cannot assume role {s.role_arn} ({code})") from None
        except botocore.exceptions.BotoCoreError as exc:
            retry = isinstance(exc, botocore.exceptions.ConnectionError)
            raise fail(f"cannot assume role {s.role_arn} ({type(exc).__name__})", retryable=retry) from None
    if session.get_credentials() is None:  # resolve the whole chain now, not after the key arrives
        raise botocore.exceptions.NoCredentialsError()
    client = session.client(
        "secretsmanager", region_name=region, endpoint_url=s.endpoint_url, config=_config(s.timeout)
    )
    # Load the operation models we use, so the first write does not pay for it.
    for op in ("DescribeSecret", "GetSecretValue", "PutSecretValue", "CreateSecret"):
        client.meta.service_model.operation_model(op)
    return client, region


def touch(client: Any) -> None:
    """An unsigned GET of the endpoint over the client's own connection pool, to keep
    its connection open while armed.  Not an API call (so not billed, nothing
    changes): refused for want of a signature.  botocore has no public way to send
    one, so this reaches its endpoint's HTTP session and does nothing if it moved."""
    from botocore.awsrequest import AWSRequest

    endpoint = getattr(client, "_endpoint", None)
    session = getattr(endpoint, "http_session", None)
    host = getattr(endpoint, "host", None)
    if session is None or not host:
        return
    session.send(AWSRequest(method="GET", url=host).prepare())
