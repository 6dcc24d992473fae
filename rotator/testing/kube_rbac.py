"""RBAC of the Kubernetes double: rules like a Role's, the identities bearer tokens map to,
and ``SelfSubjectAccessReview`` answered from those rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """Like one rule of a Role: verbs on resources of an API group, in a namespace
    (``*`` for any), optionally only the named objects."""

    verbs: tuple[str, ...]
    resources: tuple[str, ...]
    group: str = ""
    namespace: str = "*"
    names: tuple[str, ...] = ()

    def allows(self, verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
        return (
            (verb in self.verbs or "*" in self.verbs)
            and (resource in self.resources or "*" in self.resources)
            and self.group in (group, "*")
            and self.namespace in (namespace, "*")
            and (not self.names or name in self.names)
        )


ALL = (Rule(("*",), ("*",), group="*"),)


@dataclass
class Identity:
    user: str
    rules: tuple[Rule, ...]


def access_review(ident: Identity, review: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    attrs = (review.get("spec") or {}).get("resourceAttributes") or {}
    allowed = any(
        r.allows(
            attrs.get("verb", ""),
            attrs.get("group", ""),
            attrs.get("resource", ""),
            attrs.get("namespace", ""),
            attrs.get("name", ""),
        )
        for r in ident.rules
    )
    out = dict(review)
    out["status"] = {"allowed": allowed}
    if not allowed:
        out["status"]["reason"] = "no RBAC rule allows it"
    return 201, out
