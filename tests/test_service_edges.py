"""The service's edges: HTTP is spoken in `routes` only, each mapping to a status is one
table there, and the service tells a plan's `[[notify]]` entries only what is news."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from rotator.exitcodes import Exit
from rotator.report import KeyOutcome, Report, RunKind, RunState, TargetResult, TargetStatus
from rotator.service import errors, routes
from rotator.service.context import ServiceContext
from rotator.service.metrics import Metrics

SERVICE = Path(routes.__file__).parent
EDGE = {"routes.py", "app.py", "middleware.py", "sse.py", "command.py"}  # HTTP (Starlette, uvicorn) is theirs


def _status_tuples(tree: ast.AST) -> list[int]:
    """Lines returning `(int, ...)`: an HTTP status with a body."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Return)
        and isinstance(node.value, ast.Tuple)
        and node.value.elts
        and isinstance(node.value.elts[0], ast.Constant)
        and isinstance(node.value.elts[0].value, int)
    ]


def test_the_service_speaks_no_http_outside_its_edge() -> None:
    """No `ApiError`, no `(status, body)` and no HTTP status number in the service's domain modules."""
    found = []
    for path in sorted(SERVICE.glob("*.py")):
        if path.name in EDGE:
            continue
        source = path.read_text()
        tree = ast.parse(source)
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        if "ApiError" in names:
            found.append(f"{path.name}: ApiError")
        found += [f"{path.name}:{line}: returns (status, body)" for line in _status_tuples(tree)]
        found += [
            f"{path.name}:{n.lineno}: HTTP status {n.value}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and n.value in (400, 404, 409, 422, 500, 502, 503) and type(n.value) is int
        ]
    assert found == []


def test_every_refusal_and_key_outcome_has_one_status() -> None:
    assert routes.refusal_status(errors.NoSuch("no plan named 'x'")) == 404
    assert routes.refusal_status(errors.Invalid("flow must be one of: …")) == 400
    assert routes.refusal_status(errors.Refused("already armed")) == 409
    assert routes.refusal_status(errors.ShuttingDown("the service is shutting down")) == 503
    assert routes.refusal_status(errors.Unreachable("cannot read the slots")) == 502
    # A run that stopped: by its exit code; a bug or the journal unreachable is a failure.
    for code in (Exit.BUSY, Exit.PREFLIGHT_FAILED, Exit.SLOT_RECORD, Exit.LEAKED_KEY, Exit.LOCK_LOST):
        assert routes.refusal_status(errors.Stopped("x", exit_code=code)) == 409, code
    for code in (Exit.ERROR, Exit.JOURNAL, Exit.PRIMARY_FAILED):
        assert routes.refusal_status(errors.Stopped("x", exit_code=code)) == 500, code
    # Every outcome a key is answered with (`Attempt.outcome`, whichever flow took it).
    answered = {"rejected", "refused", "written", "dry_run", "taken", "finished", "closed"}
    assert {str(o) for o in routes.OUTCOME} == answered
    assert {o for o, s in routes.OUTCOME.items() if s == 422} == {KeyOutcome.REJECTED, KeyOutcome.REFUSED}
    assert routes.OUTCOME[KeyOutcome.CLOSED] == 409


class _Told(ServiceContext):
    def __init__(self) -> None:
        super().__init__([], None, Metrics())  # type: ignore[arg-type]
        self.sent: list[dict[str, Any]] = []

    def notify(self, plan: Any, report: dict[str, Any]) -> None:
        self.sent.append(report)


def _report(kind: str, state: str, code: int, *statuses: str) -> Report:
    targets = [TargetResult(f"t{i}", "backend", "envfile", status=s) for i, s in enumerate(statuses)]
    return Report(id="r", kind=kind, plan="p", state=state, exit_code=code, targets=targets)


@pytest.mark.parametrize(
    ("report", "news"),
    [
        (_report(RunKind.SYNC, RunState.DONE, 0, TargetStatus.UNCHANGED, TargetStatus.UNCHANGED), False),
        (_report(RunKind.SYNC, RunState.DONE, 0, TargetStatus.UNCHANGED, TargetStatus.OK), True),
        (_report(RunKind.SYNC, RunState.FAILED, int(Exit.PREFLIGHT_FAILED)), True),
        (_report(RunKind.CHECK, RunState.DRIFT, int(Exit.DRIFT), TargetStatus.DRIFT), False),
        (_report(RunKind.ROTATE, RunState.DONE, 0, TargetStatus.OK), True),
        (_report(RunKind.ROTATE, RunState.DRY_RUN, 0, TargetStatus.OK), False),
        (_report(RunKind.ROTATE, RunState.REFUSED, int(Exit.KEY_REFUSED)), True),
    ],
)
def test_the_service_tells_only_news(report: Report, news: bool) -> None:
    ctx = _Told()
    ctx.tell(object(), report)  # type: ignore[arg-type]
    assert bool(ctx.sent) is news
