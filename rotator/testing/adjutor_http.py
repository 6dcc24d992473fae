"""The HTTP side of the Adjutor stand-in: the API paths handed to the stand-in (`StandIn`),
and the loopback-only admin endpoints guarded by its admin token."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any, Protocol

from rotator.testing._http import JsonHandler, LoopbackServer

ADMIN_HEADER = "X-Admin-Token"


class StandIn(Protocol):
    """What the handler needs of the stand-in (`rotator.testing.adjutor.AdjutorStandIn`)."""

    admin_token: str
    unavailable: bool
    latency: float

    @property
    def apps(self) -> list[str | None]: ...

    def service_of(self, path: str) -> str | None: ...

    def serve(self, service: str, authorization: str | None) -> tuple[int, Any]: ...

    def executed_post(self, request_id: str, body: Any) -> None: ...

    def executed_posts(self) -> dict[str, Any]: ...

    def stats(self) -> dict[str, Any]: ...

    def reset(self, app: str | None = None) -> str: ...

    def add_app(self, name: str, *, paths: Iterable[str] | None = None, key: str | None = None) -> str: ...


class StandInHandler(JsonHandler):
    server_version = "AdjutorStandIn/1"
    server: StandInServer

    def do_GET(self) -> None:
        self.read_body()
        path = self.path.split("?", 1)[0]
        standin = self.server.standin
        service = standin.service_of(path)
        if service is not None:
            status, body = standin.serve(service, self.headers.get("Authorization"))
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
            if isinstance(body, str):  # a `refusal` page, not JSON
                self._send_text(status, body)
            else:
                self.send_json(status, body, headers)
        elif path == "/_admin/stats":
            if self._admin_allowed():
                self.send_json(200, standin.stats())
        elif path == "/_admin/posts":
            if self._admin_allowed():
                self.send_json(200, standin.executed_posts())
        else:
            self.send_json(404, {"status": 404, "message": "Not found"})

    def _send_text(self, status: int, text: str) -> None:
        raw = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        data = self.read_json()
        path = self.path.split("?", 1)[0]
        standin = self.server.standin
        service = standin.service_of(path)
        if service is not None:  # a call that acts: executed only when authorized, counted by X-Request-Id
            status, body = standin.serve(service, self.headers.get("Authorization"))
            if status == 200:
                standin.executed_post(self.headers.get("X-Request-Id", ""), data)
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
            self.send_json(status, body, headers)
            return
        if not path.startswith("/_admin/"):
            self.send_json(404, {"status": 404, "message": "Not found"})
            return
        if not self._admin_allowed():
            return
        if path == "/_admin/reset":
            app = data.get("app") if isinstance(data, dict) else None
            if app is not None and app not in standin.apps:
                self.send_json(404, {"error": f"no app named {app!r}"})
                return
            self.send_json(200, {"key": standin.reset(app)} if app is None else {"app": app, "key": standin.reset(app)})
        elif path == "/_admin/apps":
            name, paths = (data.get("name"), data.get("paths")) if isinstance(data, dict) else (None, None)
            if not isinstance(name, str) or not name or name in standin.apps or not _str_list_or_none(paths):
                self.send_json(400, {"error": 'body must be {"name": <new app name>, "paths": [<path>, ...] | null}'})
                return
            self.send_json(200, {"app": name, "key": standin.add_app(name, paths=paths)})
        elif path == "/_admin/unavailable":
            if not isinstance(data, dict) or not isinstance(data.get("unavailable"), bool):
                self.send_json(400, {"error": 'body must be {"unavailable": true|false}'})
                return
            standin.unavailable = data["unavailable"]
            self.send_json(200, {"unavailable": standin.unavailable})
        elif path == "/_admin/latency":
            value = data.get("latency") if isinstance(data, dict) else None
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 60:
                self.send_json(400, {"error": 'body must be {"latency": <0..60 seconds>}'})
                return
            standin.latency = float(value)
            self.send_json(200, {"latency": standin.latency})
        else:
            self.send_json(404, {"error": "no such admin endpoint"})

    def _admin_allowed(self) -> bool:
        if not self.client_is_loopback():
            self.send_json(403, {"error": "admin endpoints answer loopback clients only"})
            return False
        given = self.headers.get(ADMIN_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.server.standin.admin_token.encode()):
            self.send_json(401, {"error": f"missing or wrong {ADMIN_HEADER}"})
            return False
        return True


class StandInServer(LoopbackServer):
    handler: type[StandInHandler] = StandInHandler  # a benchmark's subclass timestamps arrivals

    def __init__(self, host: str, port: int, standin: StandIn) -> None:
        self.standin = standin
        super().__init__(host, port, self.handler)


def _str_list_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(v, str) and v.startswith("/") for v in value))
