"""Is the proxy's key dead?  One request to the plan's probe endpoint, as `rotator rotate` probes.

The verdict follows the plan's probe: a status in `refuse_status` (401, 403) is
dead, an accepted one (any 2xx unless `accept_status` says) live, anything else
(5xx, a timeout, no connection) unknown, so the held 401s go back unchanged
rather than wait on a guess.
"""

from __future__ import annotations

import aiohttp

from rotator.plan import ProbeSpec
from rotator.proxy.engine_types import Verdict
from rotator.secret import Secret


class KeyProbe:
    """Calls the probe endpoint with a key over its own small pool (kept warm by use)."""

    def __init__(self, spec: ProbeSpec) -> None:
        if not spec.url:
            raise ValueError("the plan has no probe url")
        self.spec = spec
        self.url = spec.url
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=4, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=self.spec.timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __call__(self, key: Secret) -> Verdict:
        assert self._session is not None, "open() first"
        headers = {name: value.replace("{key}", key.reveal()) for name, value in self.spec.headers.items()}
        try:
            async with self._session.request(self.spec.method, self.url, headers=headers, allow_redirects=False) as r:
                await r.read()
                status = r.status
        except (TimeoutError, aiohttp.ClientError, OSError):
            return Verdict.UNKNOWN
        if status in self.spec.refuse_status:
            return Verdict.DEAD
        accepted = status in self.spec.accept_status if self.spec.accept_status else 200 <= status < 300
        return Verdict.LIVE if accepted else Verdict.UNKNOWN
