"""The cases the benchmark runs, the latencies it injects, and each case's plan and services."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks import _latent
from benchmarks._services import AWS_REGION, IDLE_TIMEOUT
from benchmarks.window.child import Child

RESULTS = Path(__file__).resolve().parent.parent / "results"


HOOK_ENV = "ROTATOR_BENCH_HOOK_KEY"


VAULT_ENV = "ROTATOR_BENCH_VAULT_TOKEN"


VARIABLE = "ADJUTOR_API_KEY"


POLL = 0.05  # the runbook polls as often as rotator's webhook confirm does


@dataclass
class Case:
    name: str
    vault_mirrors: int  # Vault backends besides the primary
    aws: int
    env: int
    consumers: int
    consumers_read_primary: bool  # True: each consumer reads the primary (signalled once it is written)
    reps: int
    baseline_reps: int
    cold_reps: int = 0  # rotations in a fresh interpreter each (imports after the key show up there)
    reload_delay: float | None = None  # overrides --reload-delay for this case
    kind: str = "standard"  # standard | long-wait | plans | service
    waits: tuple[float, ...] = ()  # long-wait: seconds between arm and the key
    plans: int = 1  # plans: this many copies of the plan, armed and rotated at once
    handshake: bool = False  # a new connection's first answer waits one more latency (TCP/TLS round trip)
    parallel_floor: bool = False  # also time the bare concurrent script (`parallel_floor_once`)

    @property
    def backends(self) -> int:
        return 1 + self.vault_mirrors + self.aws + self.env

    @property
    def targets(self) -> int:
        return self.backends + self.consumers

    @property
    def fanout(self) -> int:
        return self.targets - 1


def cases(quick: bool, only: list[str] | None) -> list[Case]:
    q = quick
    all_cases = [
        # The headline: Vault primary, AWS and a .env file, ten webhook consumers that
        # (by default) are signalled once every backend is written.
        Case("headline", 0, 1, 1, 10, False, 6 if q else 15, 3 if q else 7, 1 if q else 2, parallel_floor=True),
        # The same with consumers that take 500 ms to reload (a graceful restart, say).
        Case("headline-reload-500ms", 0, 1, 1, 10, False, 3 if q else 5, 1 if q else 2, reload_delay=0.5),
        # Scaling: the same critical path at every size (consumers read the primary, other
        # backends are written meanwhile), so only the number of fan-out targets changes.
        Case("fanout-1", 0, 0, 0, 1, True, 5 if q else 11, 3 if q else 5, parallel_floor=True),
        Case("fanout-10", 1, 1, 1, 7, True, 4 if q else 9, 2 if q else 4, parallel_floor=True),
        Case("fanout-50", 2, 2, 2, 44, True, 3 if q else 7, 1 if q else 2, parallel_floor=True),
        Case("fanout-200", 7, 7, 7, 179, True, 3 if q else 5, 1, cold_reps=1, parallel_floor=True),
        # 1,000 targets: no runbook (it would take ~2 minutes a run); one fresh-interpreter
        # rotation for the rotator process's peak RSS.
        Case("fanout-1000", 33, 33, 34, 900, True, 2 if q else 3, 0, cold_reps=1, parallel_floor=True),
        # The headline plan with the key arriving 60 s (and 300 s, full run) after arm,
        # against the same plan with the key at once, alternating; servers close idle
        # connections after 30 s and a new connection costs a round trip more.
        Case(
            "long-wait",
            0,
            1,
            1,
            10,
            False,
            2 if q else 3,
            0,
            kind="long-wait",
            waits=(60.0,) if q else (60.0, 300.0),
            handshake=True,
        ),
        # An incident: five apps' plans (3 backends + 10 consumers each, one stand-in
        # each), armed together and their keys arriving together, against each alone.
        Case("plans-5", 0, 1, 1, 10, False, 3 if q else 5, 0, kind="plans", plans=5),
        # The headline plan through `rotator serve`'s HTTP API (arm, POST the key, follow
        # the SSE stream), alternating with the library path; run last.
        Case("service", 0, 1, 1, 10, False, 3 if q else 6, 0, kind="service"),
    ]
    return [c for c in all_cases if not only or c.name in only]


@dataclass
class Latency:
    probe: float
    vault: float
    aws: float
    env: float
    consumer: float
    reload_delay: float


@dataclass
class Setup:
    case: Case
    lat: Latency
    plan_data: dict[str, Any]
    probe_url: str
    vault_url: str
    moto_url: str
    vault_paths: list[str]  # primary first
    aws_names: list[str]
    env_paths: list[Path]
    consumer_urls: list[str]
    hook_key: bytes
    app: int = 0  # which stand-in (several plans at once: one per plan)


def prepare(case: Case, lat: Latency, s1: Child, s2: Child, root: Path, hook_key: bytes) -> list[Setup]:
    """One Setup per plan (several only for a `plans` case), services configured."""
    from rotator.secret import fingerprint

    if case.reload_delay is not None:
        lat = replace(lat, reload_delay=case.reload_delay)
    s1.call("latency", lat.probe, lat.vault, lat.aws)
    handshake = lat.consumer if case.handshake else 0.0
    for child in (s1, s2):
        child.call("conns", IDLE_TIMEOUT, handshake)
    _latent.LatentEnvFile.latency = lat.env
    probe_urls = s1.call("standins", case.plans)
    ports = s2.call("setup", case.consumers * case.plans, lat.consumer, lat.reload_delay, fingerprint("x"))
    out = []
    for j in range(case.plans):
        mine = ports[j * case.consumers : (j + 1) * case.consumers]
        out.append(_prepare_plan(case, lat, s1, root, hook_key, j, probe_urls[j], mine))
    return out


def _prepare_plan(
    case: Case, lat: Latency, s1: Child, root: Path, hook_key: bytes, app: int, probe_url: str, ports: list[int]
) -> Setup:
    info = {**s1.ready, "probe_url": probe_url}
    base = "bench" if case.plans == 1 else f"bench/app-{app}"
    vault_paths = [f"{base}/primary"] + [f"{base}/mirror-{i}" for i in range(case.vault_mirrors)]
    aws_names = [f"{base}/aws-{i}" for i in range(case.aws)]
    key = s1.call("seed", vault_paths, aws_names, app)
    env_paths = []
    for i in range(case.env):
        p = root / "env" / (f"svc-{i}.env" if case.plans == 1 else f"app-{app}-svc-{i}.env")
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        p.write_text(f"# service {i}\nAPP=bench\n{VARIABLE}={key}\nLOG_LEVEL=info\n")
        p.chmod(0o600)
        env_paths.append(p)
    consumer_urls = [f"http://127.0.0.1:{p}" for p in ports]

    backends: list[dict[str, Any]] = []
    for i, path in enumerate(vault_paths):
        backends.append(
            {
                "name": "vault" if i == 0 else f"vault-{i - 1}",
                "type": "vault",
                "primary": i == 0,
                "url": info["vault_url"],
                "mount": "secret",
                "path": path,
                "field": "api_key",
                "token": {"env": VAULT_ENV},
            }
        )
    for i, name in enumerate(aws_names):
        backends.append(
            {
                "name": f"aws-{i}",
                "type": "aws",
                "secret_id": name,
                "region": AWS_REGION,
                "endpoint_url": info["moto_url"],
            }
        )
    for i, p in enumerate(env_paths):
        backends.append({"name": f"env-{i}", "type": "envfile-latent", "path": str(p), "variable": VARIABLE})
    consumers = []
    for i, url in enumerate(consumer_urls):
        c: dict[str, Any] = {
            "name": f"svc-{i}",
            "type": "webhook",
            "url": f"{url}/reload",
            "confirm_url": f"{url}/fingerprint",
            "hmac_key": {"env": HOOK_ENV},
        }
        if case.consumers_read_primary:
            c["reads_from"] = ["vault"]
        consumers.append(c)
    plan_data = {
        "secret": {"name": f"bench-{case.name}" + (f"-app-{app}" if case.plans > 1 else "")},
        "probe": {"preset": "adjutor", "url": info["probe_url"]},
        "rotation": {"deadline": 60.0},
        "backends": backends,
        "consumers": consumers,
    }
    return Setup(
        case,
        lat,
        plan_data,
        info["probe_url"],
        info["vault_url"],
        info["moto_url"],
        vault_paths,
        aws_names,
        env_paths,
        consumer_urls,
        hook_key,
        app,
    )
