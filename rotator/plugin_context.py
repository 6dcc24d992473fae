"""The shared resources handed to every plugin: threads, HTTP connections, keep-warm touches.

Part of the plugin interface (re-exported by `rotator.plugin`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from rotator.transport import AiohttpTransport, Send, http_client

T = TypeVar("T")


class PluginContext:
    """Shared resources handed to every plugin: a thread pool sized for the fan-out
    and one HTTP client (a connection pool per origin), both made at arm time; and the
    plugins' keep-warm touches that hold connections open while the operator gets the key.

    ``http`` is an `httpx.AsyncClient`; ``send(method, url, timeout=, headers=, content=)``
    goes through the same connections and returns a `rotator.transport.Reply` (status,
    headers, body read whole), raising the same httpx errors: use it for a request
    made once per target on the window's path, where a thousand targets make the CPU
    per request the window."""

    def __init__(
        self, *, max_threads: int = 32, http: httpx.AsyncClient | None = None, plan: str | None = None
    ) -> None:
        self.plan = plan  # the plan's name: the `proxy` consumer finds a proxy run in this process by it
        self.executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="rotator")
        self._own_http = http is None
        # httpx's API over aiohttp's pools (rotator.transport: a third of the CPU per
        # request), a pool per origin and connections kept for an hour while armed.
        self._transport = AiohttpTransport()
        self.http = http or http_client(timeout=10.0, transport=self._transport)
        # The same pools without httpx's models, for requests on the window's path at
        # scale (a consumer's signal and confirm): 0.2 ms of CPU where `http` costs 0.55.
        self.send: Send = self._transport.send
        self._touches: list[Callable[[], Awaitable[object]]] = []

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def keep_warm(self, touch: Callable[[], Awaitable[object]]) -> None:
        """Register a request that keeps a connection open while armed (called from `open`).

        The armed session's keeper runs every registered touch (`warm`) each
        `keep_warm_every` seconds (15 s) until the key arrives, under the idle timeouts
        that close connections on the way (many load balancers 60 s, nginx 75 s, some
        proxies 30 s).  A touch must be free and harmless to repeat: no key, no billed
        API call, no write (a webhook's HEAD, Vault's sys/health, an unsigned GET)."""
        self._touches.append(touch)

    async def warm(self) -> None:
        """Run every registered touch at once; their errors are ignored (preflight reports reachability)."""
        await asyncio.gather(*(self._touch(t) for t in self._touches))

    @staticmethod
    async def _touch(touch: Callable[[], Awaitable[object]]) -> None:
        try:
            await touch()
        except Exception:  # noqa: BLE001, S110 - best effort
            pass

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()
        await self._transport.aclose()
        self.executor.shutdown(wait=False, cancel_futures=True)
