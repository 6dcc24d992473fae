"""The discovery documents of the Kubernetes double: what a client such as kubectl
reads before its first real request (``/version``, ``/api``, ``/apis`` and each
group-version's resource list), in the legacy, unaggregated form.

kubectl 1.32 asks for aggregated discovery (``apidiscovery.k8s.io/v2``) first and
falls back to this form when the answer's Content-Type says plain JSON, as it
does against an API server older than 1.26.  Only the resources the double
serves are listed, with the verbs it answers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KUBE_VERSION", "discovery"]

# The API version the double follows (Kubernetes 1.32, the kubectl on the test machines).
KUBE_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-rotator-double",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_OBJECT_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _resource(
    name: str, kind: str, verbs: list[str], *, namespaced: bool = True, short: list[str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "singularName": kind.lower(),
        "namespaced": namespaced,
        "kind": kind,
        "verbs": verbs,
    }
    if short:
        out["shortNames"] = short
    return out


def _status_of(name: str, kind: str) -> dict[str, Any]:
    return {
        "name": f"{name}/status",
        "singularName": "",
        "namespaced": True,
        "kind": kind,
        "verbs": ["get", "patch", "update"],
    }


_RESOURCES: dict[str, list[dict[str, Any]]] = {
    "v1": [_resource("secrets", "Secret", _OBJECT_VERBS)],
    "apps/v1": [
        _resource("daemonsets", "DaemonSet", _OBJECT_VERBS, short=["ds"]),
        _status_of("daemonsets", "DaemonSet"),
        _resource("deployments", "Deployment", _OBJECT_VERBS, short=["deploy"]),
        _status_of("deployments", "Deployment"),
        _resource("statefulsets", "StatefulSet", _OBJECT_VERBS, short=["sts"]),
        _status_of("statefulsets", "StatefulSet"),
    ],
    "authorization.k8s.io/v1": [
        _resource("selfsubjectaccessreviews", "SelfSubjectAccessReview", ["create"], namespaced=False),
    ],
}
_GROUPS = ("apps", "authorization.k8s.io")


def discovery(path: str, server_address: str) -> dict[str, Any] | None:
    """The document at `path`, or None when `path` is not a discovery path."""
    if path == "/version":
        return dict(KUBE_VERSION)
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }
    if path == "/apis":
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"},
                }
                for g in _GROUPS
            ],
        }
    if path == "/api/v1":
        gv = "v1"
    elif path.startswith("/apis/") and path.count("/") == 3:
        gv = path[len("/apis/") :]
    else:
        return None
    if gv not in _RESOURCES:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": _RESOURCES[gv]}
