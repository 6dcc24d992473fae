"""The HTTP endpoints, as plain functions: state from `request.app.state`
(`service`, `scheduler`), answers through `json` (scrubbed).

HTTP lives here and nowhere else in the service: the service answers in domain terms
(`Held`, `KeyAnswer`, `Report`, `replicas.Closed`) and refuses with the errors of
`service.errors`; the tables below give each its status, once:
- `KIND`: a refusal's kind (no such plan, an invalid flow, refused in the present state, …);
- `STATUS`: a run's exit code (a refused or stopped run; a flow answered with its report);
- `OUTCOME`: what became of a key (`KeyOutcome`), for both the single flow and a flow's keys.

The key travels only in the JSON body of ``POST /api/rotations/{id}/key``; no
route takes it in a URL, so access logs (method and path only) cannot hold it.
A rotation this replica does not hold (armed on another replica, or finished
and pruned from memory) is answered from the journal.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from rotator.exitcodes import Exit
from rotator.report import KeyOutcome
from rotator.secret import scrub_data
from rotator.service import errors, sse
from rotator.service.identity import identity_of, operator_of
from rotator.service.json_body import FIELD_TYPES, JSON_TYPE_NAME, MAX_JSON_DEPTH, json_depth, json_type
from rotator.service.metrics import CONTENT_TYPE
from rotator.service.views import key_answer, row_dict

if TYPE_CHECKING:
    from starlette.requests import Request

    from rotator.report import Report
    from rotator.service.core import Service

STATIC = Path(__file__).parent / "static"
Handler = Callable[["Request"], Awaitable[Response]]

# A refusal's kind → HTTP status.
KIND: dict[type[errors.ServiceError], int] = {
    errors.NoSuch: 404,
    errors.Invalid: 400,
    errors.Refused: 409,
    errors.ShuttingDown: 503,
    errors.Unreachable: 502,
}
# A run's exit code → HTTP status: refused in the present state (the line names the fix) is a
# conflict; any other code (a bug, the journal unreachable, a failed write) is a failure.
_REFUSALS: tuple[int, ...] = (Exit.PLAN_INVALID, Exit.PARTIAL, Exit.PREFLIGHT_FAILED, Exit.BUSY, Exit.CONFLICT)
_REFUSALS += (Exit.NOTHING_TO_RESUME, Exit.SLOT_RECORD, Exit.LEAKED_KEY, Exit.LOCK_LOST)
STATUS: dict[int, int] = {Exit.DONE: 200} | dict.fromkeys(_REFUSALS, 409)
FAILED = 500  # an exit code not in STATUS
# What became of a key → HTTP status: not taken (the rotation waits for another key) is 422.
_NOT_TAKEN = (KeyOutcome.REJECTED, KeyOutcome.REFUSED)
_ANSWERED = (KeyOutcome.WRITTEN, KeyOutcome.DRY_RUN, KeyOutcome.TAKEN, KeyOutcome.FINISHED)
OUTCOME: dict[KeyOutcome, int] = {
    **dict.fromkeys(_NOT_TAKEN, 422),
    KeyOutcome.CLOSED: 409,
    **dict.fromkeys(_ANSWERED, 200),
}


def status_of(code: int) -> int:
    """The HTTP status of a run's exit code (`STATUS`)."""
    return STATUS.get(code, FAILED)


def refusal_status(exc: errors.ServiceError) -> int:
    """A refusal's HTTP status: by its kind, or (a run that stopped) by its exit code."""
    if isinstance(exc, errors.Stopped):
        return status_of(exc.exit_code)
    return next((status for kind, status in KIND.items() if isinstance(exc, kind)), FAILED)


def report_status(report: Report) -> int:
    """A run answered with its report (a promote, a roll back): by its exit code."""
    return status_of(report.exit_code)


class ApiError(Exception):
    """A request this edge cannot serve (a body it cannot read, too many streams)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(scrub_data(data), status_code=status)


def api(fn: Handler) -> Handler:
    """An API endpoint: a refusal becomes its one-line JSON answer (`{"error": ...}`, its
    exit code when it carries one, and its details)."""

    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except errors.ServiceError as exc:
            code = {"exit_code": int(exc.exit_code)} if exc.exit_code is not None else {}
            return json({"error": str(exc), **code, **exc.details}, refusal_status(exc))
        except ApiError as exc:
            return json({"error": str(exc), **exc.extra}, exc.status)

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__  # the HTTP API reference is generated from these
    return wrapped


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise ApiError(400, "a JSON object body is required")
        return {}
    try:
        if json_depth(raw) > MAX_JSON_DEPTH:
            raise ApiError(400, f"the body nests deeper than {MAX_JSON_DEPTH} levels; send a flat JSON object")
        data = jsonlib.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not valid JSON") from None
    finally:
        del raw
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    for name, wanted in FIELD_TYPES.items():
        value = data.get(name)
        if value is not None and type(value) is not wanted:
            raise ApiError(422, f"{name} must be {JSON_TYPE_NAME[wanted]}, not {json_type(value)}", field=name)
    return data


def _operator(request: Request, data: dict[str, Any] | None = None) -> str:
    """Who acts, as configured (`rotator.service.identity`): a trusted proxy's header, else
    the name the page sent, else the client's address; journaled with every run."""
    return operator_of(request, (data or {}).get("operator"))


def _reason(data: dict[str, Any], default: str = "web") -> str:
    reason = data.get("reason")
    return " ".join(reason.split())[:500] if isinstance(reason, str) and reason.strip() else default


async def healthz(request: Request) -> Response:
    """Open (no token): 200 while the service takes work, 503 while it drains."""
    if _service(request).draining:
        return JSONResponse({"status": "shutting down"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def index(request: Request) -> Response:
    """The page (plain HTML and one JS file)."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


async def metrics(request: Request) -> Response:
    """Prometheus metrics: window histogram, step durations, last rotation and sync, drift, key age."""
    return Response(_service(request).metrics.render(), media_type=CONTENT_TYPE)


@api
async def list_plans(request: Request) -> Response:
    """The plans the service loaded, each with its state (armed, lock holder, last rotation)."""
    service = _service(request)
    states = await asyncio.to_thread(lambda: [service.plan_state(p) for p in service.plans.values()])
    jobs = []
    scheduler = request.app.state.scheduler
    if scheduler is not None and scheduler.running:
        from rotator.service.scheduler import describe_jobs

        jobs = describe_jobs(scheduler)
    return json({"plans": states, "jobs": jobs})


@api
async def get_plan(request: Request) -> Response:
    """One plan: its targets, schedules and state."""
    service = _service(request)
    plan = service.plan(request.path_params["name"])
    return json(await asyncio.to_thread(service.plan_state, plan))


def _str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(422, f"{name} must be a string", field=name)
    return value or None


@api
async def arm(request: Request) -> Response:
    """Arm; an alternating plan's flow (body `flow`, `choice`) starts at once (follow its events)."""
    data = await _json_body(request, required=False)
    held = await _service(request).arm(
        request.path_params["name"],
        operator=_operator(request, data),
        reason=_reason(data),
        flow=_str(data, "flow"),
        choice=_str(data, "choice"),
    )
    return json(held.summary(), 201)


async def _run_flow(request: Request, flow: str) -> Response:
    """An alternating flow that needs no key (promote, roll back): arm it, answer with its report."""
    data = await _json_body(request, required=False)
    held = await _service(request).arm(
        request.path_params["name"], operator=_operator(request, data), reason=_reason(data, flow), flow=flow
    )
    report = await held.session.wait()
    if report is None:
        return json(
            {"error": held.session.closed_reason or "the flow was closed", "rotation": held.summary()},
            OUTCOME[KeyOutcome.CLOSED],
        )
    return json({"rotation": held.summary(), "report": report.as_dict()}, report_status(report))


@api
async def plan_rollback(request: Request) -> Response:
    """Alternating: roll back the last promote (before its re-key only); answers with the report."""
    return await _run_flow(request, "rollback")


@api
async def plan_promote(request: Request) -> Response:
    """Alternating: promote the standby alone; answers with the report."""
    return await _run_flow(request, "promote")


@api
async def plan_slots(request: Request) -> Response:
    """Alternating: both slots (app, fingerprint, age, works now), the next rotation and what is left."""
    return json(await _service(request).slots(request.path_params["name"]))


@api
async def rotation_rollback(request: Request) -> Response:
    """Roll back instead of the re-key the rotation waits for; the report follows on its events."""
    held = await _service(request).roll_back(request.path_params["id"])
    return json(held.summary(), 202)


@api
async def whoami(request: Request) -> Response:
    """Who the service takes the caller for (the page shows it beside the reason field)."""
    return json(identity_of(request))


@api
async def sync(request: Request) -> Response:
    """Copy the primary to drifted backends (body `{"check": true}`: only look, write nothing)."""
    data = await _json_body(request, required=False)
    check = data.get("check") is True
    report = await _service(request).sync(
        request.path_params["name"],
        check_only=check,
        trigger="api",
        reason=_reason(data, "drift check" if check else "sync"),
        operator=_operator(request, data),
    )
    return json(report.as_dict())


@api
async def resume(request: Request) -> Response:
    """Finish a partial or interrupted rotation from the primary's key (as `rotator resume ID`)."""
    data = await _json_body(request, required=False)
    report = await _service(request).resume(
        request.path_params["id"], operator=_operator(request, data), reason=_reason(data, "resume")
    )
    return json(report.as_dict())


@api
async def submit_key(request: Request) -> Response:
    """The key, in the JSON body `{"key": ...}` (never in a URL); answers once the flow is done with it."""
    data = await _json_body(request)
    key = data.pop("key", None)
    unprobed = data.get("accept_unprobed") is True
    del data
    if not isinstance(key, str):
        raise ApiError(400, 'send {"key": "<the new key>"}')
    answer = await _service(request).submit_key(request.path_params["id"], key, accept_unprobed=unprobed)
    del key
    report = answer.report
    # A rotation that lost its plan's lock stopped: another rotation holds the plan now.
    lost = report is not None and report.exit_code == Exit.LOCK_LOST
    status = STATUS[Exit.LOCK_LOST] if lost else OUTCOME.get(answer.outcome, STATUS[Exit.DONE])
    body = key_answer(answer.held.summary(), answer.outcome, answer.message, report)
    return json(body, status)


@api
async def get_rotation(request: Request) -> Response:
    """A rotation: its state, and its report once finished (from the journal if not held here)."""
    service = _service(request)
    rid = request.path_params["id"]
    held = service.held.get(rid)
    if held is not None:
        return json({**held.summary(), "events": held.events})
    row = await asyncio.to_thread(service.journal.get, rid)
    if row is None:
        raise ApiError(404, f"no rotation {rid}")
    events, where = await asyncio.to_thread(lambda: (service.journal.events(row.id), service.where(row)))
    return json({**row_dict(row, with_report=True), "events": events, "held_here": False, "lock": where or None})


@api
async def close_rotation(request: Request) -> Response:
    """Close an armed rotation that will get no key: 200 closed, 202 asked of the replica holding it, 409 once writing."""
    data = await _json_body(request, required=False)
    closed = await _service(request).close_any(request.path_params["id"], _operator(request, data))
    return json(closed.as_dict(), 202 if closed.requested else 200)


@api
async def events(request: Request) -> Response:
    """Server-sent events of a rotation (armed, step, ask, key, report, closed), then the report."""
    service = _service(request)
    rid = request.path_params["id"]
    try:
        after = int(request.headers.get("last-event-id") or request.query_params.get("after") or 0)
    except ValueError:
        after = 0
    held = service.held.get(rid)
    row = None
    if held is None:
        row = await asyncio.to_thread(service.journal.get, rid)
        if row is None:
            raise ApiError(404, f"no rotation {rid}")
    slots = _stream_slots(request)
    caller = sse.StreamSlots.caller(request.headers.get("authorization", ""))
    if (why := slots.refusal(caller)) is not None:
        raise ApiError(429, why, limit_per_token=slots.per_token, limit_total=slots.total)
    if held is not None:
        stream = sse.held_stream(held, after)
    else:
        assert row is not None
        stream = sse.journal_stream(service, row.id, row.plan, after)
    return StreamingResponse(slots.bounded(stream, caller), media_type="text/event-stream", headers=sse.HEADERS)


def _stream_slots(request: Request) -> sse.StreamSlots:
    slots = getattr(request.app.state, "event_streams", None)
    if slots is None:
        slots = request.app.state.event_streams = sse.StreamSlots()
    return slots


@api
async def history(request: Request) -> Response:
    """The journal's rotations, newest first (query `plan` to filter)."""
    plan = request.query_params.get("plan") or None
    try:
        limit = max(1, min(int(request.query_params.get("limit", "50")), 500))
    except ValueError:
        limit = 50
    rows = await asyncio.to_thread(_service(request).journal.history, plan, limit)
    return json({"rotations": [row_dict(r) for r in rows]})
