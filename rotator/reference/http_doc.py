"""The HTTP API reference, from the service's route table and each endpoint's docstring."""

from __future__ import annotations

from starlette.routing import Route

from rotator.service.app import ROUTES

OPEN = {"/healthz", "/"}  # every other route needs `Authorization: Bearer <token>`


def http_api_markdown() -> str:
    rows = ["| method | path | token | what it does |", "|---|---|---|---|"]
    for route in ROUTES:
        if not isinstance(route, Route):
            continue
        methods = sorted((route.methods or set()) - {"HEAD"})
        doc = (route.endpoint.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ").replace("|", "\\|")
        path = route.path.replace("{name:path}", "{name}")
        rows.append(f"| {', '.join(methods)} | `{path}` | {'no' if route.path in OPEN else 'yes'} | {doc} |")
    return "\n".join(rows) + "\n"
