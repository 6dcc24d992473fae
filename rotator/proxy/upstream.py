"""The API client: one aiohttp session, pooled keep-alive connections, the key added per request.

aiohttp is rotator's transport already (`rotator.transport`); here without httpx's
models, since the proxy forwards bytes: no decompression (``auto_decompress``
off, so a gzip body passes through as sent), no cookies, hop-by-hop headers
dropped both ways.  The key is put in the one header and nowhere else; an
error's message is rebuilt from its type, never the library's text.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from rotator.proxy.engine_types import Answer, Outgoing
from rotator.proxy.metrics import ProxyMetrics
from rotator.secret import Secret

# RFC 9110 7.6.1, plus what the proxy sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "authorization",
    }
)


class UpstreamError(Exception):
    """The API could not be reached or did not answer (the message names the kind, never a header)."""


def forwardable(headers: Any) -> tuple[tuple[str, str], ...]:
    """The request headers to send on: everything but hop-by-hop, Host, Content-Length and Authorization."""
    return tuple((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)


class Upstream:
    """Sends requests to `origin` with ``Authorization: Bearer <key>`` over kept-alive connections."""

    def __init__(self, origin: str, metrics: ProxyMetrics, *, pool_size: int = 100, timeout: float = 60.0) -> None:
        self.origin = origin.rstrip("/")
        self.metrics = metrics
        self._pool_size = pool_size
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(10.0, timeout))
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._pool_size, limit_per_host=self._pool_size, keepalive_timeout=60, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, req: Outgoing, key: Secret, stream: Any = None) -> Answer:
        """Forward `req` with `key`; the whole answer (API answers are small JSON)."""
        assert self._session is not None, "open() first"
        headers = [*req.headers, ("Authorization", "Bearer " + key.reveal())]
        started = time.perf_counter()
        try:
            async with self._session.request(
                req.method,
                self.origin + req.path,
                headers=headers,  # made a CIMultiDict once, by aiohttp
                data=req.body if req.body is not None else stream,
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                out = [(k, v) for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP]
                answer = Answer(resp.status, out, body)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.metrics.upstream_errors.inc()
            raise UpstreamError(_describe(exc)) from None
        finally:
            self.metrics.upstream_seconds.observe(time.perf_counter() - started)
        return answer


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "the API did not answer in time"
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionError):
        return "cannot connect to the API"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the API closed the connection"
    return f"the API request failed ({type(exc).__name__})"
