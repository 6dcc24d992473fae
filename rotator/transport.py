"""One HTTP implementation under every plugin: httpx's API over aiohttp's connection pools.

Plugins, the probe, the notifiers and the Kubernetes client all speak httpx
(`httpx.AsyncClient` is the plugin interface, `PluginContext.http`); the bytes go
through aiohttp.  Chosen by measurement (issue 15, ``python -m benchmarks.transport``):
1,000 keep-alive POSTs at once, one origin each, CPU per request on a 2-core VM
(``time.process_time``, two runs each, load 0.8):

    ======================================================  ===========
    httpx's own transport (httpcore), a pool per origin     1.35-1.54 ms
    httpx over this transport (`PluginContext.http`)        0.53-0.56 ms
    `AiohttpTransport.send` (`PluginContext.send`)          0.25-0.28 ms
    aiohttp alone                                           0.22-0.29 ms
    ======================================================  ===========

httpcore's pools, h11 and anyio's cancel scopes were most of the CPU of a
1,000-target window (and without ``sniffio`` installed, which anyio no longer
brings, httpcore retries ``import sniffio`` on every lock: encode/httpcore#1103).
aiohttp pools per origin itself (a dict of deques, no scan), so the per-origin
pooling rotator had to add on top of httpcore comes for free.  The rest of httpx's
cost is its request and response models; `send` skips them for the requests a
target makes once per rotation on the window's path (a consumer's signal, its
confirm polls).

Written here rather than taken from ``httpx-aiohttp`` (the same idea, 0.2, measured
at 0.50-0.67 ms a request against this one's 0.42-0.55 in one run under load): that one
maps a dropped connection to ``ConnectTimeout`` (an operator would read "timed
out" for "the server hung up") and converts headers through httpx's slow mapping
interface.  This one maps each aiohttp error to the httpx error httpcore would
have raised, so `describe_error` and every ``except httpx.TimeoutException`` keep
their meaning.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import aiohttp
import httpx

__all__ = ["KEEPALIVE", "PER_ORIGIN", "AiohttpTransport", "Reply", "Send", "default_ssl_context", "http_client"]

# httpx's default keep-alive (5 s) dropped every connection arm opened before a key
# typed after more than 5 s, so each was opened again on the window's critical path.
# A connection the server closed meanwhile is noticed when taken from the pool.
KEEPALIVE = 3600.0
PER_ORIGIN = 64  # connections at once to one origin; the number of origins is not limited

_HOP_BY_HOP = frozenset({b"transfer-encoding", b"connection", b"keep-alive"})


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer read whole, without httpx's models: what a caller on the window's
    path needs of an `httpx.Response` (status, headers, body)."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive, as aiohttp parsed them
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not (as httpx.Response.json)."""
        return json.loads(self.content)


class Send(Protocol):
    """`AiohttpTransport.send`'s shape (what `PluginContext.send` is)."""

    def __call__(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> Awaitable[Reply]: ...


class _Body(httpx.AsyncByteStream):
    """The response body as aiohttp reads it; closing it returns the connection to the pool."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except Exception as exc:  # noqa: BLE001 - mapped, or re-raised as it was
            _raise_mapped(exc, self._request, connected=True)

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends through one `aiohttp.ClientSession`.

    The session is made on the first request, inside the running loop (aiohttp
    binds it to that loop)."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        per_origin: int = PER_ORIGIN,
        keepalive: float = KEEPALIVE,
        trust_env: bool = False,
    ) -> None:
        self._ssl = ssl_context if ssl_context is not None else default_ssl_context()
        self._per_origin = per_origin
        self._keepalive = keepalive
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._default_headers = {
            "User-Agent": f"rotator/{_version()}",
            "Accept": "*/*",
            "Accept-Encoding": "gzip, deflate",
        }

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=self._per_origin,
            keepalive_timeout=self._keepalive,
            ssl=self._ssl,
        )
        # Cookies, redirects, decompression and default headers are httpx's job.
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            trust_env=self._trust_env,  # HTTP(S)_PROXY, NO_PROXY and .netrc, as httpx's trust_env
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        t = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(
            total=None, connect=t.get("pool"), sock_connect=t.get("connect"), sock_read=t.get("read")
        )
        data: Any
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            data = request.stream  # an async iterable of bytes: aiohttp sends it chunked
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in request.headers.raw
            if data is None or k.lower() != b"transfer-encoding"
        ]
        try:
            response = await session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=timeout,
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except Exception as exc:  # noqa: BLE001 - mapped, or re-raised as it was
            _raise_mapped(exc, request, connected=False)
        raw = [(k, v) for k, v in response.raw_headers if k.lower() not in _HOP_BY_HOP]
        return httpx.Response(
            response.status,
            headers=raw,
            stream=_Body(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode("latin-1")},
        )

    async def send(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> Reply:
        """One request on the same pools, read whole, without building httpx's Request and
        Response: 0.2 ms of CPU where ``client.post`` costs 0.55 (1,000 consumers' signal
        and confirm requests are 2,000 of them, all on the window's path).  Failures are
        the httpx errors `handle_async_request` raises."""
        session = self._session or self._open()
        try:
            async with session.request(
                method,
                url,
                headers={**self._default_headers, **headers} if headers else self._default_headers,
                data=content,
                allow_redirects=False,
                auto_decompress=True,
                timeout=aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=timeout, sock_read=timeout),
            ) as response:
                body = await response.read()
                return Reply(response.status, response.headers, body)
        except Exception as exc:  # noqa: BLE001 - mapped, or re-raised as it was
            _raise_mapped(exc, httpx.Request(method, url), connected=False)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _raise_mapped(exc: Exception, request: httpx.Request, *, connected: bool) -> NoReturn:
    mapped = _mapped(exc, request, connected=connected)
    if mapped is exc:
        raise exc
    raise mapped from exc


def _mapped(exc: Exception, request: httpx.Request, *, connected: bool) -> Exception:
    """The httpx error httpcore would have raised for aiohttp's `exc` (`exc` itself if none)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text, request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(text, request=request)
    if isinstance(exc, asyncio.TimeoutError):
        return (httpx.ReadTimeout if connected else httpx.PoolTimeout)(text or "timed out", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS handshake: the OSError is the cause
        return httpx.ConnectError(text, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(text, request=request)
    if isinstance(exc, aiohttp.ClientOSError):
        return (httpx.ReadError if connected else httpx.ConnectError)(text, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(text, request=request)
    if isinstance(exc, aiohttp.ClientError):
        return httpx.TransportError(text, request=request)
    return exc


@functools.cache
def _version() -> str:
    from rotator._version import __version__

    return __version__


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), made once per
    process: every client shares it, so no request pays the CA bundle's 70-110 ms."""
    return httpx.create_ssl_context()


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing.  Cookies ignore ports, so one jar under every plugin
    would send a cookie one service on a host set to every other service on that host;
    and filling it cost ~0.1 ms a response (urllib's cookie policy on each)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None


class _Client(httpx.AsyncClient):
    """`httpx.AsyncClient` without a cookie jar (see `_NoCookies`)."""

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        return None


_NO_COOKIES = _NoCookies()


def http_client(
    *,
    timeout: float | httpx.Timeout = 10.0,
    transport: AiohttpTransport | None = None,
    trust_env: bool = False,
    **kwargs: Any,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` over an `AiohttpTransport` (a new one unless given), keeping
    no cookies: what every part of rotator uses.

    `trust_env`: take proxies from HTTP(S)_PROXY / NO_PROXY, as a default httpx client
    does.  The notifiers and the reset watch's clients did (they were default httpx
    clients) and still do; the plugins' shared client never did, and does not."""
    return _Client(
        timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
        transport=transport or AiohttpTransport(trust_env=trust_env),
        **kwargs,
    )
