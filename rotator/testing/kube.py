"""A small Kubernetes-API-shaped HTTP server on loopback, and a test controller.

Nothing here is used in a real rotation.  No API server can be installed on
the test machines (envtest downloads binaries), and kmock 0.8, tried first,
cannot serve what the plugins rely on: it keeps no ``resourceVersion`` (a patch
with a stale one succeeds, so check-and-set cannot be tested), answers PUT on
an object with 404, keeps no ``generation``/``observedGeneration``, has no
SelfSubjectAccessReview, and its pytest plugin needs pytest-asyncio.  So this
server speaks the part of the API the plugins use, as the API server does:

* Secrets and apps/v1 Deployments, StatefulSets, DaemonSets: GET, POST, PUT,
  PATCH (JSON merge patch; strategic merge patch is treated as a merge, which is
  what it does on maps such as annotations and data).
* ``metadata.resourceVersion`` (one counter for the store), bumped on every
  change and checked as a precondition when a write carries one (HTTP 409);
  ``metadata.generation`` bumped when ``spec`` changes; ``status`` ignored on
  writes to the main resource (a status subresource).
* ``immutable`` Secrets: a change of data is HTTP 422, as the API server says.
* Bearer tokens mapped to a user and RBAC-like rules; HTTP 401 / 403 with the
  API server's wording; ``SelfSubjectAccessReview`` answered from the rules.
* Errors as ``Status`` objects with ``Content-Type: application/json``.

`RolloutController` plays the workload controllers: after a patch of the pod
template it advances status one step per tick (observedGeneration, then one
pod updated per tick, old pods gone, updated pods available), and can stall a
rollout at N pods and mark it ``ProgressDeadlineExceeded`` after a deadline,
then recover.  Request bodies are never recorded or logged (they hold keys).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Self

from rotator.testing._http import Exchange, LoopbackServer, Served
from rotator.testing._kube_discovery import discovery
from rotator.testing._kube_wire import (
    PROTOBUF,
    apply_defaults,
    decode_access_review,
    field_selector_matches,
    merge_patch,
    query_of,
    status_error,
    strategic_merge,
)
from rotator.testing._tls import LoopbackCA, make_loopback_ca
from rotator.testing.kube_controller import APPS, Rollout, RolloutController
from rotator.testing.kube_http import Handler, RequestRecord, Server
from rotator.testing.kube_rbac import ALL, Identity, Rule, access_review

__all__ = ["ALL", "KubeServer", "RequestRecord", "Rollout", "RolloutController", "Rule"]

KINDS = {
    "secrets": ("v1", "Secret"),
    "deployments": ("apps/v1", "Deployment"),
    "statefulsets": ("apps/v1", "StatefulSet"),
    "daemonsets": ("apps/v1", "DaemonSet"),
}
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$"
)
_LIST_KIND = {plural: f"{kind}List" for plural, (_, kind) in KINDS.items()}
_SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
_EMPTY_STATUS: dict[str, dict[str, Any]] = {
    "deployments": {},
    "statefulsets": {"replicas": 0},
    "daemonsets": {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0},
}


class KubeServer(Served):
    """A threaded Kubernetes-API-shaped server on 127.0.0.1 (a test double)."""

    thread_name = "kube-double"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tick: float = 0.02,
        lockstep: bool = False,
        tls: bool = True,
        autostep: bool = True,
    ) -> None:
        """`tick`: seconds between controller steps; `lockstep`: a rollout steps only once its
        workload was read since; `autostep` False: the test steps (`controller.step_all`)."""
        self._host, self._port = host, port
        # HTTPS with a CA of its own (in the kubeconfig), as a cluster: kubectl sends a token only over TLS.
        self.ca: LoopbackCA | None = make_loopback_ca("kube double") if tls else None
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._identities: dict[str, Identity] = {}
        self._rv = 100
        self.records: deque[RequestRecord] = deque(maxlen=10_000)
        self.controller = RolloutController(self, tick=tick, lockstep=lockstep)
        self.autostep = autostep
        self.read_since_step: set[tuple[str, str, str]] = set()
        # Quote the request body in 422 messages, as some admission webhooks do: a
        # client must not pass such text on unscrubbed.
        self.echo_errors = False
        # Every request and answer, bodies included, when a test sets a list here (never logged).
        self.exchanges: list[Exchange] | None = None

    # -- lifecycle (with, url: _http.Served) ---------------------------------

    def _make_server(self) -> LoopbackServer:
        httpd = Server(self._host, self._port, Handler, tls=self.ca.server_context if self.ca else None)
        httpd.kube = self
        return httpd

    def start(self) -> Self:
        super().start()
        if self.autostep:
            self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
        super().stop()

    @property
    def serving(self) -> bool:
        """Started and not stopped (a watch ends when the server stops)."""
        return self._server is not None

    # -- configuration -----------------------------------------------------

    def add_identity(self, token: str, user: str = "system:serviceaccount:rotator:rotator", rules: Any = ALL) -> None:
        with self._lock:
            self._identities[token] = Identity(user, tuple(rules))

    def user_of(self, headers: dict[str, str]) -> str | None:
        """The user a request's bearer token maps to, or None."""
        ident = self._identity(headers)
        return ident.user if ident else None

    def _identity(self, headers: dict[str, str]) -> Identity | None:
        auth = headers.get("authorization", "")
        return self._identities.get(auth[7:]) if auth.lower().startswith("bearer ") else None

    def kubeconfig(self, path: Path, token: str, *, namespace: str = "default", context: str = "test") -> Path:
        """A kubeconfig file for this server and `token` (JSON is YAML)."""
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca.ca_pem).decode()
        conf = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": f"{context}-user", "user": {"token": token}}],
            "contexts": [
                {"name": context, "context": {"cluster": context, "user": f"{context}-user", "namespace": namespace}}
            ],
            "current-context": context,
        }
        path.write_text(json.dumps(conf, indent=2))
        path.chmod(0o600)
        return path

    # -- the store (for tests) ----------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object directly (as if applied by someone else)."""
        with self._lock:
            meta = obj.setdefault("metadata", {})
            key = (plural, meta.get("namespace", "default"), meta["name"])
            old = self._objects.get(key)
            api, kind = KINDS[plural]
            apply_defaults(plural, obj)
            obj.setdefault("apiVersion", api)
            obj.setdefault("kind", kind)
            meta.setdefault("namespace", key[1])
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["resourceVersion"] = self._next_rv()
            if plural in APPS:
                # The status fields the API always writes (not omitempty in k8s.io/api apps/v1, required in
                # the OpenAPI document): a new StatefulSet's status is {"replicas": 0}, never {}.
                obj["status"] = {**_EMPTY_STATUS[plural], **(obj.get("status") or {})}
                if old is None:
                    meta["generation"] = 1
                else:
                    meta["generation"] = old["metadata"].get("generation", 1) + (old.get("spec") != obj.get("spec"))
            self._objects[key] = copy.deepcopy(obj)
            return copy.deepcopy(obj)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self._objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's data, decoded."""
        obj = self.get("secrets", namespace, name)
        if obj is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}

    def update_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """What a controller does through the status subresource."""
        with self._lock:
            obj = self._objects[(plural, namespace, name)]
            obj["status"] = merge_patch(obj.get("status") or {}, status)
            obj["metadata"]["resourceVersion"] = self._next_rv()

    def objects(self, plural: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(o) for (p, _, _), o in self._objects.items() if p == plural]

    # -- the API -----------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        ident = self._identity(headers)
        query = query_of(path)
        path = path.split("?", 1)[0]
        if method == "GET" and path == "/version":  # readable without credentials (system:public-info-viewer)
            return 200, discovery(path, "") or {}
        if ident is None:
            return status_error(401, "Unauthorized", "Unauthorized")
        if method == "GET" and (doc := discovery(path, self.url.split("://", 1)[1])) is not None:
            return 200, doc
        ctype = headers.get("content-type", "").split(";")[0].strip()
        data: Any
        try:
            if ctype == PROTOBUF and method == "POST" and path == _SSAR:
                data = decode_access_review(body)  # kubectl's typed client sends protobuf
            elif body and not ctype.endswith("json"):
                return status_error(415, "UnsupportedMediaType", f"the content type {ctype!r} is not supported here")
            else:
                data = json.loads(body) if body else None
        except (ValueError, IndexError):
            return status_error(400, "BadRequest", "the request body cannot be decoded")
        if method == "POST" and path == _SSAR:
            return access_review(ident, data or {})
        return self._resource(ident, method, path, query, ctype, data)

    def _resource(
        self, ident: Identity, method: str, path: str, query: dict[str, str], ctype: str, data: Any
    ) -> tuple[int, dict[str, Any]]:
        """A request on an object or a collection: its verb, the identity's rules, then the store."""
        m = _PATH.match(path)
        if m is None or m["plural"] not in KINDS:
            return status_error(404, "NotFound", "the server could not find the requested resource")
        group = "" if m["core"] else m["group"]
        plural, ns, name = m["plural"], m["ns"], m["name"]
        verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
        if verb == "get" and name is None:
            verb = "watch" if query.get("watch") in ("1", "true") else "list"
        if verb is None or ((verb == "create") != (name is None) and verb not in ("list", "watch")):
            return status_error(405, "MethodNotAllowed", f"{method} is not supported here")
        if isinstance(data, dict) and verb == "create":
            name = str((data.get("metadata") or {}).get("name") or "")
        if not any(r.allows(verb, group, plural, ns, name or "") for r in ident.rules):
            return status_error(
                403,
                "Forbidden",
                f'{plural} "{name}" is forbidden: User "{ident.user}" cannot {verb} resource "{plural}" '
                f'in API group "{group}" in the namespace "{ns}"',
            )
        with self._lock:
            return self._apply(verb, plural, ns, name, query, ctype, data)

    def _apply(
        self, verb: str, plural: str, ns: str, name: str | None, query: dict[str, str], ctype: str, data: Any
    ) -> tuple[int, dict[str, Any]]:
        """An allowed request against the store (the caller holds the lock)."""
        if verb in ("list", "watch"):
            return self._list(plural, ns, query.get("fieldSelector", ""))
        if verb == "get":
            obj = self._objects.get((plural, ns, name or ""))
            if obj is None:
                return status_error(404, "NotFound", f'{plural} "{name}" not found')
            self.read_since_step.add((plural, ns, name or ""))
            return 200, copy.deepcopy(obj)
        if verb == "create":
            return self._create(plural, ns, data)
        if verb == "delete":
            obj = self._objects.pop((plural, ns, name or ""), None)
            if obj is None:
                return status_error(404, "NotFound", f'{plural} "{name}" not found')
            return 200, obj
        return self._change(plural, ns, name or "", verb, ctype, data)

    def _list(self, plural: str, ns: str, selector: str) -> tuple[int, dict[str, Any]]:
        """A collection (as ``kubectl get`` and a watch's first list read it), the
        list's resourceVersion the store's; a watch is served by the handler."""
        items = [
            copy.deepcopy(o)
            for (p, n, _), o in sorted(self._objects.items())
            if p == plural and n == ns and field_selector_matches(o, selector)
        ]
        api = KINDS[plural][0]
        return 200, {
            "kind": _LIST_KIND[plural],
            "apiVersion": api,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _create(self, plural: str, ns: str, data: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(data, dict) or not (data.get("metadata") or {}).get("name"):
            return status_error(422, "Invalid", f"{KINDS[plural][1]} is invalid: metadata.name: Required value")
        name = data["metadata"]["name"]
        if (plural, ns, name) in self._objects:
            return status_error(409, "AlreadyExists", f'{plural} "{name}" already exists')
        obj = self._normalise(plural, copy.deepcopy(data))
        obj["metadata"]["namespace"] = ns
        obj["metadata"]["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return 201, self.put(plural, obj)

    @staticmethod
    def _normalise(plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """stringData folds into data, as the API server does."""
        if plural == "secrets" and obj.get("stringData"):
            data = dict(obj.get("data") or {})
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
        obj.pop("stringData", None)
        return obj

    def _change(self, plural: str, ns: str, name: str, verb: str, ctype: str, data: Any) -> tuple[int, dict[str, Any]]:
        old = self._objects.get((plural, ns, name))
        if old is None:
            return status_error(404, "NotFound", f'{plural} "{name}" not found')
        if not isinstance(data, dict):
            return status_error(400, "BadRequest", "the body must be a JSON object")
        if verb == "patch":
            if ctype == "application/merge-patch+json":
                new = merge_patch(old, data)
            elif ctype == "application/strategic-merge-patch+json":
                new = strategic_merge(old, data)
            else:
                return status_error(415, "UnsupportedMediaType", f"the patch type {ctype!r} is not supported here")
        else:
            new = copy.deepcopy(data)
        wanted = (data.get("metadata") or {}).get("resourceVersion")
        current = old["metadata"]["resourceVersion"]
        if wanted is not None and str(wanted) != current:
            return status_error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
            )
        new = self._normalise(plural, new)
        new["metadata"] = {**old["metadata"], **(new.get("metadata") or {}), "resourceVersion": current}
        new["metadata"]["name"], new["metadata"]["namespace"] = name, ns
        if plural in APPS:
            new["status"] = old.get("status") or {}  # status changes only through the subresource
        if plural == "secrets" and old.get("immutable"):
            if new.get("data") != old.get("data") or not new.get("immutable"):
                quoted = f" (request: {json.dumps(data)})" if self.echo_errors else ""
                return status_error(
                    422,
                    "Invalid",
                    f'Secret "{name}" is invalid: data: Forbidden: field is immutable when `immutable` is set{quoted}',
                )
        if new == old:
            return 200, copy.deepcopy(old)  # a no-op write makes no new resourceVersion
        stored = self.put(plural, new)
        return 200, stored

    # -- records -----------------------------------------------------------

    def writes(self, plural: str = "secrets") -> int:
        return sum(
            1
            for r in self.records
            if r.method in ("PUT", "PATCH", "POST") and f"/{plural}" in r.path and r.status < 300
        )
