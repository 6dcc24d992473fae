"""Wire details of the Kubernetes double that real clients (kubectl) rely on:
query parameters, field selectors on lists, and the part of strategic merge
patch that ``kubectl apply`` and ``kubectl patch`` send for the objects the
double keeps.

Strategic merge patch (https://git.k8s.io/community/contributors/devel/sig-api-machinery/strategic-merge-patch.md)
is followed for maps (a JSON merge) and for the lists of the pod template that
merge by ``name`` (containers, initContainers, env, volumes, volumeMounts);
``$setElementOrder``, ``$retainKeys`` and ``$deleteFromPrimitiveList``
directives are accepted and dropped; ``$patch: delete`` on a list element
removes it; any other list is replaced, as in a JSON merge patch.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import parse_qs

__all__ = [
    "PROTOBUF",
    "apply_defaults",
    "decode_access_review",
    "field_selector_matches",
    "merge_patch",
    "query_of",
    "status_error",
    "strategic_merge",
]

# Lists of the pod template merged by their `name` key (the API's patchMergeKey).
_MERGE_BY_NAME = frozenset({"containers", "initContainers", "env", "volumes", "volumeMounts", "ephemeralContainers"})


def query_of(path: str) -> dict[str, str]:
    """The query parameters of `path` (the last of a repeated one)."""
    if "?" not in path:
        return {}
    return {k: v[-1] for k, v in parse_qs(path.split("?", 1)[1], keep_blank_values=True).items()}


def field_selector_matches(obj: dict[str, Any], selector: str) -> bool:
    """`selector` (``metadata.name=x,metadata.namespace=y``, ``==`` and ``!=`` too) on `obj`."""
    for term in filter(None, selector.split(",")):
        negate = "!=" in term
        field, _, want = term.partition("!=" if negate else "==" if "==" in term else "=")
        value: Any = obj
        for part in field.strip().split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if (str(value) == want.strip()) == negate:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _directive(key: str) -> bool:
    return key.startswith(("$setElementOrder/", "$deleteFromPrimitiveList/")) or key in ("$retainKeys", "$patch")


def _merge_list(target: Any, patch: list[Any]) -> list[Any]:
    if not isinstance(target, list) or not all(isinstance(p, dict) and "name" in p for p in patch):
        return [strategic_merge(None, p) for p in patch if not (isinstance(p, dict) and p.get("$patch") == "delete")]
    out = [copy.deepcopy(t) for t in target]
    for item in patch:
        at = next((i for i, t in enumerate(out) if isinstance(t, dict) and t.get("name") == item["name"]), None)
        if item.get("$patch") == "delete":
            if at is not None:
                del out[at]
        elif at is None:
            out.append(strategic_merge(None, item))
        else:
            out[at] = strategic_merge(out[at], item)
    return out


def strategic_merge(target: Any, patch: Any) -> Any:
    """A strategic merge patch of `target` (see the module's docstring for how much)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if _directive(key):
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list) and key in _MERGE_BY_NAME:
            out[key] = _merge_list(out.get(key), value)
        else:
            out[key] = strategic_merge(out.get(key), value)
    return out


# -- protobuf: kubectl's typed clients send SelfSubjectAccessReview so ----------------------------
# The envelope (https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding):
# the magic b"k8s\0", then a runtime.Unknown {1: typeMeta {1: apiVersion, 2: kind}, 2: raw,
# 3: contentEncoding, 4: contentType}; raw is the object's own message (k8s.io/api generated.proto).
PROTOBUF = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"
# SelfSubjectAccessReview {2: spec {1: resourceAttributes {1 namespace, 2 verb, 3 group, 4 version,
# 5 resource, 6 subresource, 7 name}}}
_ATTRIBUTES = {1: "namespace", 2: "verb", 3: "group", 4: "version", 5: "resource", 6: "subresource", 7: "name"}


def _fields(buf: bytes) -> dict[int, list[bytes | int]]:
    """One protobuf message's fields: number -> values (bytes for length-delimited, int for varint)."""
    out: dict[int, list[bytes | int]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    while i < len(buf):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.setdefault(number, []).append(varint())
        elif wire == 2:
            n = varint()
            out.setdefault(number, []).append(buf[i : i + n])
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"protobuf wire type {wire} is not supported here")
    return out


def _one(fields: dict[int, list[bytes | int]], number: int) -> bytes:
    value = (fields.get(number) or [b""])[-1]
    return value if isinstance(value, bytes) else b""


def decode_access_review(body: bytes) -> dict[str, Any]:
    """A protobuf SelfSubjectAccessReview as its JSON form (resource attributes only).
    ValueError when it is not one."""
    if not body.startswith(_MAGIC):
        raise ValueError("no protobuf envelope")
    unknown = _fields(body[len(_MAGIC) :])
    type_meta = _fields(_one(unknown, 1))
    api, kind = _one(type_meta, 1).decode(), _one(type_meta, 2).decode()
    if kind != "SelfSubjectAccessReview":
        raise ValueError(f"a protobuf {kind or 'object'} is not supported here")
    spec = _fields(_one(_fields(_one(unknown, 2)), 2))
    attrs = _fields(_one(spec, 1))
    resource = {name: _one(attrs, n).decode() for n, name in _ATTRIBUTES.items() if attrs.get(n)}
    return {"apiVersion": api, "kind": kind, "metadata": {}, "spec": {"resourceAttributes": resource}}


def apply_defaults(plural: str, obj: dict[str, Any]) -> None:
    """The API server's defaults for the fields rollout checks read (k8s.io/api apps/v1 and
    core/v1 defaulting, pkg/apis/apps/v1/defaults.go): a client never sees them unset.
    kubectl's rollout status, for one, refuses a StatefulSet or DaemonSet whose
    updateStrategy.type is not RollingUpdate, so an undefaulted double would not match it."""
    if plural == "secrets":
        obj.setdefault("type", "Opaque")
        return
    spec = obj.setdefault("spec", {})
    spec.setdefault("revisionHistoryLimit", 10)
    if plural == "deployments":
        spec.setdefault("replicas", 1)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
    elif plural == "statefulsets":
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        strategy = spec.setdefault("updateStrategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    elif plural == "daemonsets":
        strategy = spec.setdefault("updateStrategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", 1)
            rolling.setdefault("maxSurge", 0)


# Errors: the OpenAPI documents list only success answers.  The body is a Status (API conventions,
# "Response Status Kind"), and the messages are the API server's own: k8s.io/apimachinery
# pkg/api/errors (NewNotFound '<plural> "<name>" not found', NewConflict 'Operation cannot be
# fulfilled on <plural> "<name>": the object has been modified; please apply your changes to the
# latest version and try again', NewAlreadyExists), the RBAC forbidden message of apiserver's
# endpoints/handlers/responsewriters ('... is forbidden: User "u" cannot <verb> resource ...'), and
# core validation's ValidateSecretUpdate for an immutable Secret ("field is immutable when
# `immutable` is set").  A 401 is the bare "Unauthorized" Status the authenticator writes.
def status_error(code: int, reason: str, message: str, **details: Any) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return code, body
