"""The pure-ASGI security layers, in the order a request meets them.

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
   ``Origin: null``, or ``Sec-Fetch-Site: cross-site``).  Behind a reverse proxy, pass the
   ``Host`` header through unchanged, or the page's own POSTs look cross-origin.
3. `BodyLimit`: a request body over the limit (64 KiB) is answered 413 before
   the app sees it.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    if origin == b"null":  # a sandboxed frame, a data: or file: page, a redirect: never the page itself
        return "cross-origin request refused (Origin: null)"
    if origin:
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
