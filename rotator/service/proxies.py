"""The API proxies `rotator serve` runs: one per plan with a ``[proxy]`` section, in serve's event loop.

Each listens on its own address (the plan's ``[proxy] listen``, never the service's
port) and, if the plan says so, on its key channel too, so that a `rotator rotate`
run elsewhere still reaches it.  A rotation the service runs hands the new key to it
directly: the plan's `proxy` consumer finds its engine in `rotator.proxy.local` and
confirms by fingerprint, with no socket, restart or reload signal.

The proxies' series join the service's /metrics with a ``plan`` label, and the
plan's page shows each proxy's address, key fingerprint, held requests, replays and
503s (`view`).  Never the key: only its fingerprint leaves the engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import Metric

from rotator.errors import CommandError, PluginError
from rotator.exitcodes import Exit
from rotator.proxy import local

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from rotator.plan import Plan
    from rotator.proxy.runtime import ProxyRuntime

_SERVED: dict[str, ProxyRuntime] = {}  # plan name -> its running proxy, for `view` and the collector


class ServedProxies:
    """Start every plan's proxy before the service listens; stop them after it stops."""

    def __init__(self, plans: Iterable[Plan], registry: CollectorRegistry | None, log: Any) -> None:
        self.plans = [p for p in plans if p.proxy is not None]
        self.registry = registry
        self.log = log
        self.runtimes: dict[str, ProxyRuntime] = {}

    async def start(self) -> None:
        """Listen for every plan; the first that cannot stops them all with one line and its exit code."""
        if not self.plans:
            return
        from rotator.proxy.runtime import ProxyRuntime, upstream_of

        for plan in self.plans:
            assert plan.proxy is not None
            runtime = ProxyRuntime(plan, plan.proxy, upstream_of(plan, plan.proxy), log=self.log)
            try:
                await runtime.start()
            except OSError as exc:
                await runtime.stop()
                await self.stop()
                why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
                where = plan.proxy.listen + (f" or its key channel {plan.proxy.channel}" if plan.proxy.channel else "")
                raise CommandError(
                    f"{plan.name}: the proxy cannot listen on {where}: {why}; free it or change the plan's [proxy]",
                    Exit.PROXY_LISTEN,
                ) from None
            except PluginError as exc:  # a token file or variable that is missing
                await runtime.stop()
                await self.stop()
                raise CommandError(f"{plan.name}: proxy: {exc}", Exit.PLAN_INVALID) from None
            self.runtimes[plan.name] = _SERVED[plan.name] = runtime
            local.register(plan.name, runtime.engine)
            self.log.info(
                f"{plan.name}: proxy listening on {plan.proxy.listen}",
                plan=plan.name,
                listen=plan.proxy.listen,
                upstream=runtime.upstream_url,
                fingerprint=runtime.engine.fingerprint,
                channel=plan.proxy.channel,
            )
        if self.registry is not None:
            self.registry.register(_Collector(self.runtimes))

    async def stop(self) -> None:
        for name, runtime in list(self.runtimes.items()):
            local.unregister(name, runtime.engine)
            if _SERVED.get(name) is runtime:
                del _SERVED[name]
            await runtime.stop()
            del self.runtimes[name]


def view(plan_name: str) -> dict[str, Any] | None:
    """The plan's proxy as its page shows it (None: the plan has no proxy running here)."""
    runtime = _SERVED.get(plan_name)
    if runtime is None:
        return None
    engine, reg = runtime.engine, runtime.metrics.registry

    def value(name: str, **labels: str) -> int:
        return int(reg.get_sample_value(name, labels) or 0)

    return {
        "listen": runtime.spec.listen,
        "channel": runtime.spec.channel,
        "fingerprint": engine.fingerprint,
        "state": engine.state.value,
        "held_now": engine.held,
        "held_total": value("rotator_proxy_held_total"),
        "replays": value("rotator_proxy_replays_total", result="ok"),
        "replays_refused": value("rotator_proxy_replays_total", result="refused"),
        "unavailable": sum(
            int(s.value)
            for m in reg.collect()
            if m.name == "rotator_proxy_unavailable"
            for s in m.samples
            if s.name.endswith("_total")
        ),
        "requests": value("rotator_proxy_requests_total"),
    }


class _Collector:
    """Every served proxy's series in the service's registry, each sample labelled with its plan."""

    def __init__(self, runtimes: dict[str, ProxyRuntime]) -> None:
        self.runtimes = runtimes

    def describe(self) -> list[Metric]:
        return []  # names are the proxy's own (rotator_proxy_*): nothing to check against the service's

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for plan, runtime in sorted(self.runtimes.items()):
            for m in runtime.metrics.registry.collect():
                out = families.get(m.name)
                if out is None:
                    out = families[m.name] = Metric(m.name, m.documentation, m.type, m.unit)
                for s in m.samples:
                    out.add_sample(s.name, {"plan": plan, **s.labels}, s.value, s.timestamp, s.exemplar)
        yield from families.values()
