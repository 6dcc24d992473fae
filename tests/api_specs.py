"""The official OpenAPI documents of Kubernetes and Vault, trimmed to the operations
rotator and the doubles use, and a validator of requests and responses against them.

Where the documents are: ``$ROTATOR_API_SPECS``, else ``shared/specs`` beside the
repository (the steering repository's shared folder, where data fetched from other
repositories is kept; this repository commits none of it).  Which file comes from
which repository, path and commit: `SOURCES` (also written beside the trimmed files
as ``SOURCES.json`` by ``python -m tests.api_specs trim``).

Validation uses openapi-schema-validator (OpenAPI 3.0 schemas on jsonschema), with
format checks on (a Secret's data must be base64, timestamps date-times).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS30Validator, oas30_format_checker

ROOT = Path(__file__).resolve().parent.parent

# The operations used: (path template, method) per document.
K8S_CORE = [
    ("/api/v1/", "get"),  # discovery: the resources of v1
    ("/api/v1/namespaces/{name}", "get"),  # kubectl apply looks the namespace up (the double has none: 404)
    ("/api/v1/namespaces/{namespace}/secrets", "get"),
    ("/api/v1/namespaces/{namespace}/secrets", "post"),
    ("/api/v1/namespaces/{namespace}/secrets/{name}", "get"),
    ("/api/v1/namespaces/{namespace}/secrets/{name}", "patch"),
    ("/api/v1/namespaces/{namespace}/secrets/{name}", "put"),
]
K8S_APPS = [("/apis/apps/v1/", "get")] + [
    (path, method)
    for plural in ("deployments", "statefulsets", "daemonsets")
    for path, method in (
        (f"/apis/apps/v1/namespaces/{{namespace}}/{plural}", "get"),
        (f"/apis/apps/v1/namespaces/{{namespace}}/{plural}", "post"),
        (f"/apis/apps/v1/namespaces/{{namespace}}/{plural}/{{name}}", "get"),
        (f"/apis/apps/v1/namespaces/{{namespace}}/{plural}/{{name}}", "patch"),
    )
]
K8S_AUTHZ = [
    ("/apis/authorization.k8s.io/v1/", "get"),
    ("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "post"),
]
VAULT = [
    ("/sys/health", "get"),
    ("/auth/token/lookup-self", "get"),
    ("/sys/capabilities-self", "post"),
    ("/sys/internal/ui/mounts/{path}", "get"),
    ("/auth/{approle_mount_path}/login", "post"),
    ("/auth/{kubernetes_mount_path}/login", "post"),
    ("/{kv_v2_mount_path}/data/{path}", "get"),
    ("/{kv_v2_mount_path}/data/{path}", "post"),
    ("/{kv_v2_mount_path}/metadata/{path}", "get"),
    ("/{kv_v1_mount_path}/{path}", "get"),
    ("/{kv_v1_mount_path}/{path}", "post"),
]

_K8S_VENDORED = "kubernetes-sigs/kubectl-validate"
_K8S_VENDOR_COMMIT = "231e3efa7409321bb60dc20ef766be3fc59a9759"
SOURCES: dict[str, dict[str, Any]] = {
    "k8s-core-v1.json": {
        "origin": "kubernetes/kubernetes, branch release-1.32, api/openapi-spec/v3/api__v1_openapi.json",
        "repository": _K8S_VENDORED,
        "path": "pkg/openapiclient/builtins/1.32/api/v1.json",
        "commit": _K8S_VENDOR_COMMIT,
        "note": "kubectl-validate keeps kubernetes' own v3 documents per release as downloaded "
        "(cmd/download-builtin-schemas); the kubernetes repository itself is too large to fetch here",
        "operations": K8S_CORE,
    },
    "k8s-apps-v1.json": {
        "origin": "kubernetes/kubernetes, branch release-1.32, api/openapi-spec/v3/apis__apps__v1_openapi.json",
        "repository": _K8S_VENDORED,
        "path": "pkg/openapiclient/builtins/1.32/apis/apps/v1.json",
        "commit": _K8S_VENDOR_COMMIT,
        "operations": K8S_APPS,
    },
    "k8s-authorization-v1.json": {
        "origin": "kubernetes/kubernetes, branch release-1.32, "
        "api/openapi-spec/v3/apis__authorization.k8s.io__v1_openapi.json",
        "repository": _K8S_VENDORED,
        "path": "pkg/openapiclient/builtins/1.32/apis/authorization.k8s.io/v1.json",
        "commit": _K8S_VENDOR_COMMIT,
        "operations": K8S_AUTHZ,
    },
    "vault.json": {
        "origin": "hashicorp/vault-client-go openapi.json (generated from Vault 1.15.0)",
        "repository": "hashicorp/vault-client-go",
        "path": "openapi.json",
        "commit": "1bad0b35cf37780c0613f55f8dbe5b38a26ff332",
        "operations": VAULT,
    },
}


def spec_dir() -> Path:
    """Where the trimmed documents are (they may be absent: see the module's docstring)."""
    env = os.environ.get("ROTATOR_API_SPECS")
    return Path(env) if env else ROOT.parent / "shared" / "specs"


# -- trimming ------------------------------------------------------------------------


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            yield ref.rsplit("/", 1)[1]
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def trim(doc: dict[str, Any], operations: list[tuple[str, str]], extra: Iterable[str] = ()) -> dict[str, Any]:
    """`doc` with only `operations` (and their paths' parameters) and the schemas they, and
    the `extra` schemas, reach."""
    paths: dict[str, Any] = {}
    for path, method in operations:
        item = doc["paths"][path]
        kept = paths.setdefault(path, {k: v for k, v in item.items() if k not in _METHODS})
        kept[method] = item[method]
    schemas = doc.get("components", {}).get("schemas", {})
    todo, seen = [*_refs(paths), *extra], set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_refs(schemas[name]))
    out = {k: v for k, v in doc.items() if k not in ("paths", "components")}
    out["paths"] = paths
    out["components"] = {"schemas": {n: schemas[n] for n in sorted(seen)}}
    return out


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


# -- validating ----------------------------------------------------------------------


@dataclass
class Exchange:
    """One request and its answer, as a double saw them (bodies parsed JSON, or None)."""

    method: str
    path: str  # without the query
    request: Any
    status: int
    response: Any
    content_type: str = ""


@dataclass
class Checked:
    operations: set[str] = field(default_factory=set)  # "GET /api/v1/...{name}" seen and checked
    problems: list[str] = field(default_factory=list)


class Spec:
    """One trimmed document: match a concrete path to an operation, validate bodies."""

    def __init__(self, doc: dict[str, Any], *, prefix: str = "", greedy: frozenset[str] = frozenset()) -> None:
        self.doc = doc
        self.prefix = prefix  # Vault's paths are under /v1
        self._routes: list[tuple[re.Pattern[str], str]] = []
        for template in doc["paths"]:
            pattern = re.sub(
                r"\\\{([^}]+)\\\}",
                lambda m: f"(?P<{m[1]}>{'.+' if m[1] in greedy else '[^/]+'})",
                re.escape(template),
            )
            self._routes.append((re.compile(f"^{re.escape(prefix)}{pattern}$"), template))
        # The most specific template first (fewest parameters, then the longest literal text).
        self._routes.sort(key=lambda r: (r[1].count("{"), -len(re.sub(r"\{[^}]+\}", "", r[1]))))

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """The operation `path` calls.  Where templates of the same shape match (Vault's
        ``/auth/{approle_mount_path}/login`` and ``/auth/{kubernetes_mount_path}/login``),
        the one whose mount parameters' defaults name the path's mounts wins."""
        for candidate in (path, path + "/"):  # discovery: "/api/v1" is the document's "/api/v1/"
            found = []
            for pattern, template in self._routes:
                m = pattern.match(candidate)
                if m and method.lower() in self.doc["paths"][template]:
                    defaults = {
                        p["name"]: (p.get("schema") or {}).get("default")
                        for p in self.doc["paths"][template].get("parameters", [])
                    }
                    found.append((-sum(defaults.get(k) == v for k, v in m.groupdict().items()), len(found), template))
            if found:
                template = min(found)[2]
                return template, self.doc["paths"][template][method.lower()]
        return None

    def schema(self, name: str) -> dict[str, Any]:
        return self.doc["components"]["schemas"][name]

    def errors(self, schema: dict[str, Any], value: Any) -> list[str]:
        root = {**schema, "components": self.doc["components"]}
        validator = OAS30Validator(root, format_checker=oas30_format_checker)
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}"
            for e in validator.iter_errors(value)
        ]


def load(name: str) -> Spec:
    doc = json.loads((spec_dir() / name).read_text())
    if name == "vault.json":
        return Spec(doc, prefix="/v1", greedy=frozenset({"path"}))
    return Spec(doc)


def _content_schema(node: dict[str, Any] | None) -> dict[str, Any] | None:
    content = (node or {}).get("content") or {}
    media = content.get("application/json") or next(iter(content.values()), None)
    return (media or {}).get("schema")


# A Status is the body of every Kubernetes error (API conventions, "Response Status Kind":
# https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#response-status-kind);
# the operations in the document list only their success answers.
K8S_STATUS = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"


def check_kubernetes(specs: list[Spec], exchanges: Iterable[Exchange], out: Checked) -> None:
    """`specs`: the core document first (it has the Status schema)."""
    core = specs[0]
    for ex in exchanges:
        found = next(((s, op) for s in specs if (op := s.operation(ex.method, ex.path)) is not None), None)
        if found is None:
            out.problems.append(f"{ex.method} {ex.path}: no such operation in the trimmed specs")
            continue
        spec, (template, op) = found
        name = f"{ex.method} {template}"
        out.operations.add(name)
        body_schema = _content_schema(op.get("requestBody"))
        if ex.request is not None and body_schema is not None:
            # A patch body is a partial object (merge or strategic merge): its schema is "Patch", an
            # opaque object; what it changes is checked in the response, the object after the patch.
            out.problems += [f"{name} request {e}" for e in spec.errors(body_schema, ex.request)]
        if ex.status >= 400:
            out.problems += [f"{name} {ex.status} {e}" for e in core.errors(core.schema(K8S_STATUS), ex.response)]
            if not isinstance(ex.response, dict) or ex.response.get("code") != ex.status:
                out.problems.append(f"{name} {ex.status}: the Status's code is not the HTTP status")
            continue
        answer = (op.get("responses") or {}).get(str(ex.status))
        if answer is None:
            out.problems.append(f"{name}: HTTP {ex.status} is not among the documented answers {list(op['responses'])}")
            continue
        schema = _content_schema(answer)
        if schema is not None:
            out.problems += [f"{name} {ex.status} {e}" for e in spec.errors(schema, ex.response)]


# Vault's responses wrap the operation's schema in an envelope, and its errors are {"errors": [...]}:
# the shapes of vault-client-go's response.go (Response, ResponseAuth) and errors.go (ResponseError),
# and Vault's docs, "HTTP API" / "Error response".
VAULT_ENVELOPE = {
    "type": "object",
    "required": ["request_id", "lease_id", "renewable", "lease_duration", "data"],
    "properties": {
        "request_id": {"type": "string"},
        "lease_id": {"type": "string"},
        "renewable": {"type": "boolean"},
        "lease_duration": {"type": "integer"},
        "data": {"type": "object", "nullable": True},
        "wrap_info": {"type": "object", "nullable": True},
        "warnings": {"type": "array", "nullable": True, "items": {"type": "string"}},
        "auth": {
            "type": "object",
            "nullable": True,
            "required": ["client_token", "accessor", "policies", "lease_duration", "renewable"],
            "properties": {
                "client_token": {"type": "string"},
                "accessor": {"type": "string"},
                "policies": {"type": "array", "items": {"type": "string"}},
                "token_policies": {"type": "array", "items": {"type": "string"}},
                "metadata": {"type": "object", "nullable": True, "additionalProperties": {"type": "string"}},
                "lease_duration": {"type": "integer"},
                "renewable": {"type": "boolean"},
                "orphan": {"type": "boolean"},
                "entity_id": {"type": "string"},
            },
        },
    },
}
VAULT_ERROR = {
    "type": "object",
    "required": ["errors"],
    "properties": {"errors": {"type": "array", "items": {"type": "string"}}},
}


def _maps_nullable(schema: Any) -> Any:
    """Vault's document is generated from Go types: a ``format: map`` field is a Go map, which
    Vault's JSON encoding writes as null when unset (``"custom_metadata": null`` after a KV v2
    write without custom metadata, as Vault itself answers).  The document does not say
    nullable; Go's encoding/json does."""
    if isinstance(schema, dict):
        out = {k: _maps_nullable(v) for k, v in schema.items()}
        if out.get("format") == "map":
            out["nullable"] = True
        return out
    if isinstance(schema, list):
        return [_maps_nullable(v) for v in schema]
    return schema


def check_vault(spec: Spec, exchanges: Iterable[Exchange], out: Checked) -> None:
    for ex in exchanges:
        found = spec.operation(ex.method, ex.path)
        if found is None:
            out.problems.append(f"{ex.method} {ex.path}: no such operation in the trimmed spec")
            continue
        template, op = found
        name = f"{ex.method} {template}"
        out.operations.add(name)
        body_schema = _content_schema(op.get("requestBody"))
        if ex.request is not None and body_schema is not None:
            out.problems += [f"{name} request {e}" for e in spec.errors(body_schema, ex.request)]
        documented = op.get("responses") or {}
        if template == "/sys/health":  # every status documented; the body is the status itself
            if str(ex.status) not in documented:
                out.problems.append(f"{name}: HTTP {ex.status} is not among {list(documented)}")
            continue
        if ex.status >= 400:
            out.problems += [f"{name} {ex.status} {e}" for e in spec.errors(VAULT_ERROR, ex.response)]
            continue
        if ex.status == 204:
            if "204" not in documented and "200" not in documented:
                out.problems.append(f"{name}: 204 not documented")
            continue
        out.problems += [f"{name} {ex.status} envelope {e}" for e in spec.errors(VAULT_ENVELOPE, ex.response)]
        schema = _content_schema(documented.get(str(ex.status)))
        if schema is not None and isinstance(ex.response, dict):
            schema = _maps_nullable(spec.schema(schema["$ref"].rsplit("/", 1)[1]) if "$ref" in schema else schema)
            out.problems += [f"{name} {ex.status} data {e}" for e in spec.errors(schema, ex.response.get("data"))]


# -- the trimming command --------------------------------------------------------------


def main() -> None:
    """``python -m tests.api_specs trim FULL_DIR OUT_DIR``: FULL_DIR holds the untrimmed
    documents under the names of `SOURCES` (taken from the repositories it names)."""
    parser = argparse.ArgumentParser(prog="python -m tests.api_specs")
    parser.add_argument("command", choices=["trim"])
    parser.add_argument("full", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, source in SOURCES.items():
        doc = json.loads((args.full / name).read_text())
        trimmed = trim(doc, source["operations"], [K8S_STATUS] if K8S_STATUS in doc["components"]["schemas"] else [])
        (args.out / name).write_text(json.dumps(trimmed, indent=1, sort_keys=True) + "\n")
        print(f"{name}: {len(trimmed['paths'])} paths, {len(trimmed['components']['schemas'])} schemas")
    sources = {
        n: {k: v for k, v in s.items() if k != "operations"}
        | {"operations": [f"{m.upper()} {p}" for p, m in s["operations"]]}
        for n, s in SOURCES.items()
    }
    (args.out / "SOURCES.json").write_text(json.dumps(sources, indent=1) + "\n")


if __name__ == "__main__":
    main()
