"""Shared by the ``kubernetes`` backend and the ``kubernetes-rollout`` consumer:
where the cluster is, one client per target, RBAC checks, and error wording.

The client is lightkube (0.17 to 0.22), chosen over the official ``kubernetes``
package, which is blocking (every call would take a thread from the pool, and
its models are untyped), and over ``kubernetes_asyncio`` (aiohttp's API beside
httpx's for plugin code): lightkube is async, typed (dataclass models, py.typed)
and built on httpx, the API every rotator plugin speaks; its requests go through
rotator's one transport (`rotator.transport`, aiohttp underneath).
lightkube 1.0 moved to ``httpx2`` (another HTTP stack again), hence ``<1``.

Credentials never appear in a plan: the client is configured as kubectl is,
in-cluster (the pod's service-account token, re-read when the kubelet rotates
it) or from a kubeconfig file and context.
"""

from __future__ import annotations

import base64
import ssl
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rotator.plugin import Check, PluginError
from rotator.secret import REDACTED, live_values
from rotator.transport import AiohttpTransport

from ._sdk import vendor_text

try:
    import lightkube
    from lightkube.config.client_adapter import verify_cluster
    from lightkube.config.kubeconfig import KubeConfig, SingleConfig
    from lightkube.core.exceptions import ApiError, ConfigError
    from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet
    from lightkube.resources.authorization_v1 import SelfSubjectAccessReview
    from lightkube.resources.core_v1 import Secret as KubeSecret
    from lightkube.types import PatchType
except ImportError:  # pragma: no cover - exercised by a test in a process without lightkube
    raise ImportError("the kubernetes plugins need the 'kubernetes' extra: pip install 'rotator[kubernetes]'") from None

__all__ = [
    "ApiError",
    "DaemonSet",
    "Deployment",
    "KubeConnection",
    "KubeSecret",
    "KubeTarget",
    "ObjectMeta",
    "PatchType",
    "StatefulSet",
    "access_problems",
    "api_call",
    "kube_said",
]

T = TypeVar("T")

# RFC 1123 names (namespaces, most objects) and Secret data keys.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DATA_KEY = r"^[-._a-zA-Z0-9]+$"
# An idle connection is kept this long (httpx's default is 5 s): the operator may
# take minutes to paste the key, and the write should not pay a new TLS handshake.
KEEPALIVE = 600.0


class KubeConnection(BaseModel):
    """How to reach the cluster.  Both unset: in-cluster when run in a pod
    (KUBERNETES_SERVICE_HOST), else $KUBECONFIG or ~/.kube/config, like kubectl."""

    model_config = ConfigDict(extra="forbid")
    kubeconfig: Path | None = Field(default=None, description="a kubeconfig file (default: in-cluster, or kubectl's)")
    context: str | None = Field(default=None, min_length=1, description="a context of the kubeconfig")


class KubeTarget(KubeConnection):
    namespace: str = Field(max_length=63, pattern=DNS_LABEL, description="the object's namespace")

    @field_validator("kubeconfig")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return None if v is None else v.expanduser()


# lightkube sets a model class up on its first from_dict (DataclassDictMixIn._setup), not
# atomically: it marks the class set up first, then fills in the field maps.  A second thread
# whose from_dict starts in between finds them None and fails with AttributeError ("'NoneType'
# object has no attribute 'get'") or TypeError.  At arm, the backend and the consumer load their
# kubeconfigs in two worker threads at once, and the first load of a process sets up Cluster,
# User and Context: the intermittent AttributeError of issue 30.  So one load at a time.
_CONFIG_LOCK = threading.Lock()


def _config(conn: KubeConnection) -> SingleConfig:
    """The kubeconfig entry to use (reads files: call it in a thread)."""
    with _CONFIG_LOCK:
        if conn.kubeconfig is not None:
            found = KubeConfig.from_file(conn.kubeconfig).get(conn.context)
        else:
            cfg = KubeConfig.from_env()
            found = cfg.get(conn.context) if conn.context else cfg.get()
    if found is None:  # pragma: no cover - lightkube raises instead
        raise ConfigError("no context")
    return found


class _Transport(AiohttpTransport):
    """rotator's one transport (aiohttp under httpx, as every plugin's requests).
    lightkube copies its connection parameters with dataclasses.asdict, which
    deep-copies; a transport (its pool, its SSL context) is shared, not copied."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _Transport:
        return self


def _transport(config: SingleConfig) -> AiohttpTransport:
    """The TLS settings lightkube would use (cluster CA, client certificate), with a long
    keep-alive (see KEEPALIVE)."""
    if config.user is None:
        raise ConfigError(f"context {config.context_name} has no user")
    verify = verify_cluster(config.cluster, config.user, config.abs_file)
    return _Transport(ssl_context=verify, per_origin=8, keepalive=KEEPALIVE)


async def open_client(conn: KubeConnection, timeout: float, run_blocking: Callable[..., Awaitable[Any]]) -> Any:
    """A lightkube AsyncClient for `conn`; a bad configuration is one line naming the fix."""
    where = f"kubeconfig {conn.kubeconfig}" if conn.kubeconfig else "the in-cluster config or kubeconfig"
    try:
        config = await run_blocking(_config, conn)
        transport = await run_blocking(_transport, config)
    except ConfigError as exc:
        text = " ".join(str(exc).split())[:200]
        raise PluginError(f"cannot load {where}: {text}", retryable=False) from None
    except (OSError, ValueError, KeyError) as exc:
        raise PluginError(f"cannot load {where}: {type(exc).__name__}", retryable=False) from None
    except (AttributeError, TypeError):  # lightkube on a file that is not a mapping (an empty one, a list)
        raise PluginError(
            f"cannot load {where}: not a kubeconfig (expected clusters, contexts and users)", retryable=False
        ) from None
    return lightkube.AsyncClient(
        config,
        timeout=httpx.Timeout(timeout),
        field_manager="rotator",
        transport=transport,
    )


def scrub_b64(text: str) -> str:
    """`text` without any live secret's base64 form (Secret data is base64 on the
    wire, so an API server echoing a request would show the key so).  Here, on the
    error path only, rather than in `rotator.secret.scrub`, which runs on every
    progress line: three more forms per live value there cost 38 -> 146 us a line
    with 200 live values."""
    for value in live_values():
        if len(value) < 4:
            continue
        raw = value.encode()
        for form in (base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")):
            if form in text:
                text = text.replace(form, REDACTED)
    return text


def kube_said(exc: ApiError) -> str:
    """The API server's own message, one line, scrubbed of any live secret (as is,
    URL-encoded or base64), short."""
    return vendor_text(scrub_b64(str(getattr(exc.status, "message", None) or "")), 300)


def _status(exc: ApiError) -> tuple[int, str]:
    code = getattr(exc.status, "code", None) or exc.response.status_code
    return int(code), str(getattr(exc.status, "reason", None) or "")


def translate(exc: BaseException, label: str, doing: str, server: str) -> PluginError:
    """One secret-free line for a failed API call (never the client's exception text)."""
    if isinstance(exc, ApiError):
        code, reason = _status(exc)
        said = kube_said(exc)
        if code == 401:
            return PluginError(
                f"{label}: the API server refused the credentials on {doing} (HTTP 401)", retryable=False
            )
        if code == 403:
            return PluginError(f"{label}: forbidden: {doing} ({said or 'check the Role'})", retryable=False)
        if code == 404:
            return PluginError(f"{label}: not found: {doing}", retryable=False)
        if code == 409:
            return PluginError(f"{label}: conflict on {doing}: {said}", retryable=False)
        if code == 422:
            return PluginError(f"{label}: refused {doing}: {said}", retryable=False)
        if code == 429 or code >= 500:
            return PluginError(f"{label}: {doing} failed: HTTP {code} {reason}".rstrip(), retryable=True)
        return PluginError(f"{label}: {doing} refused: HTTP {code} {reason}".rstrip(), retryable=False)
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return PluginError(f"{label}: {doing} answered HTTP {code} (not a Kubernetes API?)", retryable=code >= 500)
    if isinstance(exc, httpx.TimeoutException):
        return PluginError(f"{label}: timed out talking to {server} ({doing})", retryable=True)
    if isinstance(exc, httpx.ConnectError):
        if isinstance(exc.__context__, ssl.SSLError) or "SSL" in type(exc.__context__).__name__:
            return PluginError(f"{label}: TLS handshake with {server} failed (check the kubeconfig's CA)")
        return PluginError(f"{label}: cannot reach the API server at {server} ({doing})", retryable=True)
    if isinstance(exc, httpx.HTTPError):
        return PluginError(f"{label}: HTTP error talking to {server} ({doing}): {type(exc).__name__}", retryable=True)
    if isinstance(exc, ConfigError):
        return PluginError(f"{label}: client configuration: {type(exc).__name__}", retryable=False)
    return PluginError(f"{label}: {doing} failed: {type(exc).__name__}", retryable=True)


def is_status(exc: BaseException, code: int) -> bool:
    return isinstance(exc, ApiError) and _status(exc)[0] == code


async def api_call(label: str, doing: str, server: str, call: Awaitable[T]) -> T:
    """Await one lightkube call; its errors become one-line PluginErrors."""
    try:
        return await call
    except (httpx.HTTPError, ConfigError) as exc:
        raise translate(exc, label, doing, server) from None


def server_of(client: Any) -> str:
    """The API server's address for messages (no user info, no query)."""
    try:
        url = httpx.URL(client.config.cluster.server)
        return str(url.copy_with(username=None, password=None, query=None, fragment=None)).rstrip("/")
    except (AttributeError, httpx.InvalidURL, ValueError):
        return "the API server"


async def access_problems(
    client: Any,
    label: str,
    server: str,
    *,
    namespace: str,
    group: str,
    resource: str,
    name: str,
    verbs: list[str],
) -> list[str]:
    """The verbs this identity may NOT use on the object (SelfSubjectAccessReview,
    as ``kubectl auth can-i`` asks), then the authorizer's first reason in
    parentheses; [] when all are allowed.  Nothing is written."""
    denied: list[str] = []
    reasons: list[str] = []
    for verb in verbs:
        review = SelfSubjectAccessReview(
            spec=SelfSubjectAccessReviewSpec(
                resourceAttributes=ResourceAttributes(
                    namespace=namespace, group=group, resource=resource, name=name, verb=verb
                )
            )
        )
        answer = await api_call(label, "a SelfSubjectAccessReview", server, client.create(review))
        status = answer.status
        if status is None or not status.allowed:
            denied.append(verb)
            if status is not None and status.reason and not reasons:
                reasons.append(vendor_text(scrub_b64(status.reason), 120))
    return denied + [f"({r})" for r in reasons]


def rbac_check(label: str, what: str, denied: list[str], role_hint: str) -> Check:
    verbs = " or ".join(d for d in denied if not d.startswith("("))
    why = "".join(f" {d}" for d in denied if d.startswith("("))
    return Check(
        ok=False,
        detail=f"{label}: this identity may not {verbs} {what}{why}; grant it in the Role: {role_hint}",
    )
