"""The HTTP API and the page, as a Starlette app.

Security, in the order a request meets it (each a small ASGI layer):

1. `SecurityHeaders`: every response gets a strict Content-Security-Policy
   (``default-src 'self'``, no inline script or style, no framing),
   ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and
   ``Cache-Control: no-store`` on the API.
2. `BearerAuth`: every path but ``/healthz`` and the page's own static files
   (which hold nothing secret) needs ``Authorization: Bearer <token>``,
   compared in constant time.  There is no cookie and no other ambient
   credential, so a cross-site page cannot make the browser send an
   authenticated request: CSRF has nothing to ride on.  As a second net, a
   state-changing request must be ``Content-Type: application/json`` (a form
   cannot send that without a CORS preflight, which is never granted) and is
   refused when the browser says it is cross-site (``Origin`` not this host,
   or ``Sec-Fetch-Site: cross-site``).  Behind a reverse proxy, pass the
   ``Host`` header through unchanged, or the page's own POSTs look cross-origin.
3. `BodyLimit`: a request body over the limit (64 KiB) is answered 413 before
   the app sees it.

The key travels only in the JSON body of ``POST /api/rotations/{id}/key``; no
route takes it in a URL, so access logs (method and path only) cannot hold it.
No response holds it either: reports carry fingerprints, and every JSON
response and event passes through `core.scrub`.

A rotation this replica does not hold (armed on another replica, or finished
and pruned from memory) is answered from the journal: ``GET`` gives its row,
its events and who holds it; its event stream follows the journal's events
until the rotation is finished or its replica is gone.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rotator.logs import get_logger
from rotator.service.core import ApiError, Service, row_dict, scrub
from rotator.service.metrics import CONTENT_TYPE

log = get_logger("rotator.service.http")

STATIC = Path(__file__).parent / "static"
MAX_BODY = 64 * 1024
PUBLIC_PATHS = {"/healthz", "/", "/favicon.ico"}
PUBLIC_PREFIXES = ("/static/",)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), clipboard-read=()"),
]
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


# -- ASGI layers ------------------------------------------------------------
class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith(("/api/", "/metrics"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control" or not api]
                headers += SECURITY_HEADERS
                if api:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _plain(send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": data})


class BearerAuth:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if method in ("GET", "HEAD") and (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        auth = headers.get(b"authorization", b"")
        scheme, _, given = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            await _plain(
                send,
                401,
                {"error": "a bearer token is required (Authorization: Bearer <token>)"},
                [(b"www-authenticate", b'Bearer realm="rotator"')],
            )
            return
        if method in UNSAFE_METHODS:
            why = _cross_site(headers)
            if why:
                await _plain(send, 403, {"error": why})
                return
            ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if ctype != b"application/json":
                await _plain(send, 415, {"error": "send a JSON body (Content-Type: application/json)"})
                return
        await self.app(scope, receive, send)


def _cross_site(headers: dict[bytes, bytes]) -> str:
    site = headers.get(b"sec-fetch-site", b"").lower()
    if site == b"cross-site":
        return "cross-site request refused"
    origin = headers.get(b"origin")
    if origin and origin != b"null":
        host = headers.get(b"host", b"")
        if origin.split(b"://", 1)[-1] != host:
            return "cross-origin request refused"
    return ""


class BodyLimit:
    """Reads the body first (small by design) and answers 413 past `limit`."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        too_big = {"error": f"request body too large (limit {self.limit} bytes)"}
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        if declared > self.limit:
            await _plain(send, 413, too_big, [(b"connection", b"close")])
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _plain(send, 413, too_big, [(b"connection", b"close")])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        del chunks
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# -- routes -------------------------------------------------------------------
def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(scrub(data), status_code=status)


Handler = Callable[[Request], Awaitable[Response]]


def _api(fn: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except ApiError as exc:
            return _json({"error": str(exc), **exc.extra}, exc.status)

    return wrapped


async def _json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise ApiError(400, "a JSON object body is required")
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    finally:
        del raw
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def _operator(request: Request, data: dict[str, Any]) -> str:
    who = data.get("operator")
    client = request.client.host if request.client else "?"
    if isinstance(who, str) and who.strip():
        return f"{who.strip()[:80]} (web, {client})"
    return f"web ({client})"


def build_app(
    service: Service,
    token: str,
    *,
    scheduler: Any = None,
    shutdown_grace: float = 5.0,
    max_body: int = MAX_BODY,
) -> ASGIApp:
    """The ASGI app: routes wrapped in security headers, bearer auth and a body limit.

    `scheduler` (an AsyncIOScheduler, optional) is started paused in the
    lifespan, reconciled with the plans, resumed; shut down at the end, after
    which rotations in flight get `shutdown_grace` seconds more to finish."""

    async def healthz(request: Request) -> Response:
        if service.draining:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def metrics(request: Request) -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @_api
    async def list_plans(request: Request) -> Response:
        import asyncio

        states = await asyncio.to_thread(lambda: [service.plan_state(p) for p in service.plans.values()])
        jobs = []
        if scheduler is not None and scheduler.running:
            from rotator.service.scheduler import describe_jobs

            jobs = describe_jobs(scheduler)
        return _json({"plans": states, "jobs": jobs})

    @_api
    async def get_plan(request: Request) -> Response:
        import asyncio

        plan = service.plan(request.path_params["name"])
        return _json(await asyncio.to_thread(service.plan_state, plan))

    @_api
    async def arm(request: Request) -> Response:
        data = await _json_body(request, required=False)
        reason = data.get("reason") if isinstance(data.get("reason"), str) else ""
        held = await service.arm(
            request.path_params["name"], operator=_operator(request, data), reason=(reason or "web")[:500]
        )
        return _json(held.summary(), 201)

    @_api
    async def sync(request: Request) -> Response:
        data = await _json_body(request, required=False)
        report = await service.sync(
            request.path_params["name"], check_only=bool(data.get("check", False)), trigger="api"
        )
        return _json(report.as_dict())

    @_api
    async def submit_key(request: Request) -> Response:
        data = await _json_body(request)
        key = data.pop("key", None)
        del data
        if not isinstance(key, str):
            raise ApiError(400, 'send {"key": "<the new key>"}')
        status, body = await service.submit_key(request.path_params["id"], key)
        del key
        return _json(body, status)

    @_api
    async def get_rotation(request: Request) -> Response:
        rid = request.path_params["id"]
        held = service.held.get(rid)
        if held is not None:
            return _json({**held.summary(), "events": held.events})
        row = await asyncio.to_thread(service.journal.get, rid)
        if row is None:
            raise ApiError(404, f"no rotation {rid}")
        events, where = await asyncio.to_thread(lambda: (service.journal.events(row.id), service.where(row)))
        return _json({**row_dict(row, with_report=True), "events": events, "held_here": False, "lock": where or None})

    @_api
    async def close_rotation(request: Request) -> Response:
        held = service.get(request.path_params["id"])
        await service.close(held.id, "closed by the operator")
        return _json(held.summary())

    @_api
    async def events(request: Request) -> Response:
        rid = request.path_params["id"]
        try:
            after = int(request.headers.get("last-event-id") or request.query_params.get("after") or 0)
        except ValueError:
            after = 0
        held = service.held.get(rid)
        if held is None:
            row = await asyncio.to_thread(service.journal.get, rid)
            if row is None:
                raise ApiError(404, f"no rotation {rid}")
            return StreamingResponse(
                _journal_stream(service, row.id, row.plan, after),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )

        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 2000\n\n"
            async for item in held.follow(after):
                if item is None:
                    yield b": keep-alive\n\n"
                    continue
                data = json.dumps(item, separators=(",", ":"))
                yield f"id: {item['seq']}\nevent: {item['type']}\ndata: {data}\n\n".encode()
            yield b"event: end\ndata: {}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @_api
    async def history(request: Request) -> Response:
        import asyncio

        plan = request.query_params.get("plan") or None
        try:
            limit = max(1, min(int(request.query_params.get("limit", "50")), 500))
        except ValueError:
            limit = 50
        rows = await asyncio.to_thread(service.journal.history, plan, limit)
        return _json({"rotations": [row_dict(r) for r in rows]})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from rotator.service import scheduler as sched

        sched.set_service(service)
        if scheduler is not None:
            scheduler.start(paused=True)
            outcome = sched.reconcile(scheduler, list(service.plans.values()))
            scheduler.resume()
            log.info("scheduler started", jobs=outcome)
        for name in service.plans:  # the key-age gauge from the journal, no notifications
            try:
                age = await _key_age(service, name)
                service.metrics.set_key_age(name, age.age_seconds, age.warn)
            except Exception as exc:  # noqa: BLE001 - a metric must not stop the service
                log.warning("key age unknown", plan=name, error=type(exc).__name__)
        started = time.monotonic()
        try:
            yield
        finally:
            service.begin_drain()
            if scheduler is not None and scheduler.running:
                scheduler.shutdown(wait=False)
            left = await service.drain(shutdown_grace)
            sched.set_service(None)
            log.info("stopped", seconds_up=round(time.monotonic() - started), resumable=left or None)

    routes = [
        Route("/healthz", healthz),
        Route("/", index),
        Route("/metrics", metrics),
        Route("/api/plans", list_plans),
        Route("/api/plans/{name:path}/arm", arm, methods=["POST"]),
        Route("/api/plans/{name:path}/sync", sync, methods=["POST"]),
        Route("/api/plans/{name:path}", get_plan),
        Route("/api/rotations/{id}/key", submit_key, methods=["POST"]),
        Route("/api/rotations/{id}/events", events),
        Route("/api/rotations/{id}/close", close_rotation, methods=["POST"]),
        Route("/api/rotations/{id}", get_rotation),
        Route("/api/history", history),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return SecurityHeaders(BearerAuth(BodyLimit(app, max_body), token))


JOURNAL_POLL = 0.5  # seconds between journal reads when following another replica's rotation


async def _journal_stream(
    service: Service, rid: str, plan: str, after: int, heartbeat: float = 15.0
) -> AsyncIterator[bytes]:
    """A rotation held by another replica, followed through the journal: each event
    row as `journal` (id = the row's id, for Last-Event-ID), then `report` or
    `closed`, then `end`."""
    from rotator.report import FINISHED

    yield b"retry: 2000\n\n"
    last, quiet, gone = after, 0.0, 0
    while True:
        # The state first: a finished rotation's events are all written before its state.
        row = await asyncio.to_thread(service.journal.get, rid)
        rows = await asyncio.to_thread(service.journal.events, rid, last)
        for e in rows:
            last = e["id"]
            item = scrub({**e, "seq": e["id"], "type": "journal", "t": e["ts"]})
            yield f"id: {e['id']}\nevent: journal\ndata: {json.dumps(item, separators=(',', ':'))}\n\n".encode()
        if row is None:
            break
        if row.state in FINISHED:
            if row.report:
                data = scrub({"state": row.state, "report": row.report})
                yield f"event: report\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
            else:
                yield f"event: closed\ndata: {json.dumps({'reason': row.state})}\n\n".encode()
            break
        # Unfinished and nobody holds it (twice in a row: the lock is taken just after
        # the row is written): the replica that ran it is gone.
        where = await asyncio.to_thread(service.where, row)
        gone = 0 if where.get("alive") else gone + 1
        if gone >= 2:
            reason = "the replica that armed it is gone" + (
                "" if row.state == "armed" else f"; `rotator resume {rid}` finishes it"
            )
            yield f"event: closed\ndata: {json.dumps({'reason': reason, 'state': row.state})}\n\n".encode()
            break
        await asyncio.sleep(JOURNAL_POLL)
        quiet = 0.0 if rows else quiet + JOURNAL_POLL
        if quiet >= heartbeat:
            quiet = 0.0
            yield b": keep-alive\n\n"
    yield b"event: end\ndata: {}\n\n"


async def _key_age(service: Service, plan_name: str) -> Any:
    import asyncio

    from rotator.service.agejob import key_age

    return await asyncio.to_thread(key_age, service.journal, service.plans[plan_name])
