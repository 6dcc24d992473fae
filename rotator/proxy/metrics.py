"""The proxy's /metrics: held requests, hold time, replays, 503s and upstream latency.

Its own registry, so a proxy run in-process under `rotator serve` later adds its
series beside the service's without clashing.  No label ever holds a key, a path
or a body: the outcome names below are the only label values.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from rotator.proxy.engine_types import Bound, ProxyKeyState, ReplayResult

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_HOLD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)


class ProxyMetrics:
    """Every series the proxy exports, made once."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("rotator_proxy_requests", "Requests answered by the proxy", registry=r)
        self.held_now = Gauge("rotator_proxy_held_requests", "Requests held now (waiting for a key)", registry=r)
        self.held_bytes = Gauge("rotator_proxy_held_bytes", "Bytes of held request bodies now", registry=r)
        self.held = Counter(
            "rotator_proxy_held", "Requests held (refused with 401, or sent while the key is dead)", registry=r
        )
        self.hold_seconds = Histogram(
            "rotator_proxy_hold_seconds", "Time a held request waited", buckets=_HOLD_BUCKETS, registry=r
        )
        self.replays = Counter(
            "rotator_proxy_replays", "Held requests sent again with a new key", ["result"], registry=r
        )
        self.unavailable = Counter(
            "rotator_proxy_unavailable",
            "503 answers with Retry-After: a holding bound was reached",
            ["bound"],
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "rotator_proxy_upstream_seconds", "Upstream answer time", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.upstream_errors = Counter("rotator_proxy_upstream_errors", "Upstream requests that failed", registry=r)
        self.probes = Counter("rotator_proxy_probes", "Probes of the key after a 401", ["result"], registry=r)
        self.key_switches = Counter("rotator_proxy_key_switches", "New keys taken", registry=r)
        self.key_state = Gauge("rotator_proxy_key_state", "1 for the key's current state", ["state"], registry=r)
        for result in ReplayResult:
            self.replays.labels(result.value)
        for bound in Bound:
            self.unavailable.labels(bound.value)
        self.set_state(ProxyKeyState.NONE)

    def set_state(self, state: ProxyKeyState) -> None:
        for s in ProxyKeyState:
            self.key_state.labels(s.value).set(1 if s is state else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
