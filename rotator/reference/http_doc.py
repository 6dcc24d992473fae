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


def http_status_markdown() -> str:
    """The service's answers' statuses, from the routes' three tables (`KIND`, `STATUS`, `OUTCOME`)."""
    from rotator.exitcodes import Exit
    from rotator.service.errors import Stopped
    from rotator.service.routes import FAILED, KIND, OUTCOME, STATUS

    def first_line(doc: str | None) -> str:
        return (doc or "").strip().split("\n")[0].replace("|", "\\|")

    out = ["| refusal | status | when |", "|---|---|---|"]
    out += [f"| `{kind.__name__}` | {status} | {first_line(kind.__doc__)} |" for kind, status in KIND.items()]
    out.append(f"| `{Stopped.__name__}` | by its exit code, below | {first_line(Stopped.__doc__)} |")
    out += ["", "| exit code | status |", "|---|---|"]
    out += [f"| {code} `{Exit(code).name.lower().replace('_', '-')}` | {status} |" for code, status in STATUS.items()]
    out += [f"| any other | {FAILED} |", "", "| key outcome | status |", "|---|---|"]
    out += [f"| `{outcome.value}` | {status} |" for outcome, status in OUTCOME.items()]
    return "\n".join(out) + "\n"
