"""The HTTP side of the Kubernetes double: one threaded handler that hands every request to
the server's `handle` (`Kube`), records it, writes the JSON answer, and serves watches."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from rotator.testing._http import Exchange, LoopbackServer, parsed
from rotator.testing._kube_wire import query_of, status_error


@dataclass
class RequestRecord:
    method: str
    path: str
    status: int
    user: str | None


class Kube(Protocol):
    """What the handler needs of the server (`rotator.testing.kube.KubeServer`)."""

    records: deque[RequestRecord]
    exchanges: list[Exchange] | None

    @property
    def serving(self) -> bool: ...

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]: ...

    def user_of(self, headers: dict[str, str]) -> str | None: ...


class Server(LoopbackServer):
    kube: Kube


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-double/1"
    server: Server
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def _serve(self) -> None:
        kube = self.server.kube
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            code, payload = kube.handle(self.command, self.path, headers, body)
        except Exception as exc:  # noqa: BLE001 - a double's bug is an HTTP 500, not a hung client
            code, payload = status_error(500, "InternalError", f"internal error: {type(exc).__name__}")
        kube.records.append(RequestRecord(self.command, self.path.split("?", 1)[0], code, kube.user_of(headers)))
        watch = code == 200 and self.command == "GET" and query_of(self.path).get("watch") in ("1", "true")
        if kube.exchanges is not None and not watch:
            path, _, query = self.path.partition("?")
            ctype = headers.get("content-type", "")
            kube.exchanges.append(Exchange(self.command, path, query, ctype, parsed(body, ctype), code, payload))
        if watch:
            self._watch(kube, headers, query_of(self.path))
            return
        raw = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _watch(self, kube: Kube, headers: dict[str, str], query: dict[str, str]) -> None:
        """A watch: one JSON event a line, chunked, for each change after the
        `resourceVersion` asked for, until `timeoutSeconds` (at most 30 here)."""
        since = int(query.get("resourceVersion") or 0)
        deadline = time.monotonic() + min(float(query.get("timeoutSeconds") or 30), 30)
        known: dict[str, int] = {}
        first = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            while time.monotonic() < deadline and kube.serving:
                code, listed = kube.handle("GET", self.path, headers, b"")
                if code != 200:
                    break
                items = {o["metadata"]["name"]: o for o in listed["items"]}
                events = []
                for name, obj in items.items():
                    rv = int(obj["metadata"]["resourceVersion"])
                    if rv > since and known.get(name) != rv:
                        events.append({"type": "MODIFIED" if name in known or first else "ADDED", "object": obj})
                    known[name] = rv
                for name in [n for n in known if n not in items]:
                    del known[name]
                    events.append({"type": "DELETED", "object": {"metadata": {"name": name}}})
                first = False
                for ev in events:
                    line = json.dumps(ev).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines are kept in records; nothing reaches a terminal
