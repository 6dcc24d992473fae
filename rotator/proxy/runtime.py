"""One running proxy: the engine, the listener, the key channel and their clients, started and stopped together.

`rotator proxy` runs one; `rotator serve` runs one per plan with a ``[proxy]``
section in its own event loop (`rotator.service.proxies`), where the `proxy`
consumer hands it keys through `engine.set_key` (`rotator.proxy.local`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from rotator.errors import PlanError, PluginError
from rotator.plan import Plan
from rotator.plugin import PluginContext
from rotator.proxy.channel import KeyChannel
from rotator.proxy.config import ProxySpec
from rotator.proxy.engine import Bounds, Engine
from rotator.proxy.keyprobe import KeyProbe
from rotator.proxy.metrics import ProxyMetrics
from rotator.proxy.server import ProxyServer
from rotator.proxy.upstream import Upstream
from rotator.registry import backend_class
from rotator.secret import Secret


def upstream_of(plan: Plan, spec: ProxySpec) -> str:
    """The API origin the proxy forwards to; a PlanError when the plan has no probe to check keys with."""
    if not plan.probe.enabled or not plan.probe.url:
        raise PlanError(
            [f"{plan.path}: probe: the proxy needs the plan's probe (it asks it whether its key is dead after a 401)"]
        )
    if spec.upstream:
        return spec.upstream
    parts = urlsplit(plan.probe.url)
    return f"{parts.scheme}://{parts.netloc}"


class ProxyRuntime:
    def __init__(self, plan: Plan, spec: ProxySpec, upstream_url: str, *, log: Any = None) -> None:
        self.plan = plan
        self.spec = spec
        self.log = log
        self.upstream_url = upstream_url
        self.metrics = ProxyMetrics()
        self.upstream = Upstream(upstream_url, self.metrics, pool_size=spec.pool_size, timeout=spec.upstream_timeout)
        self.probe = KeyProbe(plan.probe)
        self.engine = Engine(
            self.upstream,
            self.metrics,
            self.probe,
            Bounds(spec.hold_deadline, spec.max_held, spec.max_held_bytes, spec.retry_after),
            refresh=self.read_primary,
            refresh_every=spec.refresh_from_primary,
            log=log,
        )
        self._ctx: PluginContext | None = None
        self.server: ProxyServer | None = None
        self.channel: KeyChannel | None = None

    async def read_primary(self) -> Secret | None:
        """The key the plan's primary holds now (None when it holds none)."""
        if self._ctx is None:
            self._ctx = PluginContext(max_threads=4)
        settings = self.plan.primary
        backend = backend_class(settings.type)(settings, self._ctx)
        await backend.open()
        try:
            return (await backend.read()).secret
        finally:
            await backend.close()

    async def start(self) -> None:
        await self.upstream.open()
        await self.probe.open()
        try:
            key = await self.read_primary()
        except PluginError as exc:
            key = None
            if self.log is not None:
                self.log.warning(
                    "proxy: cannot read the primary; holding requests until a key arrives", reason=str(exc)
                )
        if key is not None:
            self.engine.set_key(key)
        tokens = [t.token.resolve() for t in self.spec.consumer_tokens]
        self.server = ProxyServer(
            self.engine,
            self.spec.listen_address,
            max_body=self.spec.max_body,
            metrics_path=self.spec.metrics_path,
            tokens=tokens,
            socket_mode=self.spec.mode,
        )
        channel = self.spec.channel_address
        if channel is not None and self.spec.channel_token is not None:
            self.channel = KeyChannel(self.engine, channel, self.spec.channel_token.resolve())
            await self.channel.start()
        await self.server.start()

    async def stop(self) -> None:
        for part in (self.server, self.channel):
            if part is not None:
                await part.stop()
        await self.engine.aclose()
        await self.probe.close()
        await self.upstream.close()
        if self._ctx is not None:
            await self._ctx.aclose()
