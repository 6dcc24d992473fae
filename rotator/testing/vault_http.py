"""The HTTP side of the Vault-protocol double: one threaded handler that hands every
request to the server's `handle` (`Vault`), records it and writes the JSON answer."""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import urlsplit

from rotator.testing._http import Exchange, LoopbackServer, parsed
from rotator.testing.vault_wire import Reply

DROP = 0
"""`fail_next` status meaning: close the connection without answering."""


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it (no bodies, no token values)."""

    method: str
    path: str
    namespace: str | None
    has_token: bool
    status: int


class Vault(Protocol):
    """What the handler needs of the server (`rotator.testing.vaultserver.VaultServer`)."""

    exchanges: list[Exchange] | None

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply: ...

    def record(self, rec: RequestRecord) -> None: ...


class HTTPServer(LoopbackServer):
    vault: Vault


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle and
    # the client's delayed ACK add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server_version = "rotator-vault-double"
    server: HTTPServer

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                self.close_connection = True
                raise

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests carry tokens and secrets

    def _dispatch(self) -> None:
        vault = self.server.vault
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, reply = vault.handle(self.command, self.path, headers, body)
        vault.record(
            RequestRecord(
                self.command,
                urlsplit(self.path).path,
                headers.get("x-vault-namespace"),
                "x-vault-token" in headers,
                status,
            )
        )
        if vault.exchanges is not None and status != DROP:
            path, _, query = self.path.partition("?")
            ctype = headers.get("content-type", "")
            vault.exchanges.append(Exchange(self.command, path, query, ctype, parsed(body, "json"), status, reply))
        if status == DROP:
            self.close_connection = True
            return
        raw = json.dumps(reply).encode() if reply is not None else b""
        self.send_response(status)
        if raw:
            self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if raw and self.command != "HEAD":
            self.wfile.write(raw)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_LIST = _dispatch
