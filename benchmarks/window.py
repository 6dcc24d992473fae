"""Benchmark the revocation window: rotator against the critical path and a sequential runbook.

    python -m benchmarks.window            # full run (~2-3 min on 2 cores)
    python -m benchmarks.window --quick    # fewer repetitions (~1 min)

What it does, all on loopback:

* starts, in two child processes (so their CPU is not the rotator's): the Adjutor
  stand-in (probe), the Vault-protocol double, moto's server (AWS), and N webhook
  consumers (one asyncio process, one port each) whose ``/fingerprint`` reports
  the new key's fingerprint `reload_delay` seconds after the reload notice
  arrived.  Every request to each of them is answered after an injected latency;
  the .env files get the same latency per read and per write (benchmarks/_latent.py);
* per case, alternating in this process: (a) rotator's `Rotation` (armed before the
  reset, not timed; window = key received -> last consumer confirmed, as the
  report measures it), and (b) a sequential runbook script with the same client
  libraries (httpx, hvac, boto3), building its clients after the key arrives as a
  script started after the reset does, and making the same calls one after another:
  probe, for each backend write then read back, for each consumer signal then poll
  its confirm endpoint every 50 ms until it reports the new fingerprint; and, for
  headline and fanout-N, (c) the parallel floor: the same requests as concurrently as
  their dependencies allow, bare (aiohttp, hvac and boto3 in threads), warmed before the key;
* computes the critical path from the injected latencies, and the time from the key
  being received to the first bytes of the probe request at the stand-in;
* writes benchmarks/results/latest.json and latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import re
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/window.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks import _latent
from benchmarks._services import AWS_ENV, AWS_REGION, IDLE_TIMEOUT, VAULT_TOKEN, backends_main, consumers_main

RESULTS = Path(__file__).resolve().parent / "results"
HOOK_ENV = "ROTATOR_BENCH_HOOK_KEY"
VAULT_ENV = "ROTATOR_BENCH_VAULT_TOKEN"
VARIABLE = "ADJUTOR_API_KEY"
POLL = 0.05  # the runbook polls as often as rotator's webhook confirm does


# ---------------------------------------------------------------- cases


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


# ---------------------------------------------------------------- services


class Child:
    def __init__(self, target: Any, *args: Any) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        self.ready = self._recv(60)

    def _recv(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise RuntimeError(f"{self.proc.name} did not answer within {timeout:.0f}s")
        reply = self.conn.recv()
        if isinstance(reply, Exception):
            raise reply
        return reply

    def call(self, *msg: Any, timeout: float = 120) -> Any:
        self.conn.send(msg)
        return self._recv(timeout)

    def stop(self) -> None:
        try:
            self.call("stop", timeout=10)
        except (RuntimeError, OSError, EOFError):
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()


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


# ---------------------------------------------------------------- critical path


def injected_hops(lat: Latency) -> dict[str, float]:
    """Each request's injected latency (the .env file's per read and per write)."""
    return {
        "probe": lat.probe,
        "vault_write": lat.vault,
        "vault_read": lat.vault,
        "aws_write": lat.aws,
        "aws_read": lat.aws,
        "env_write": lat.env,
        "env_read": lat.env,
        "signal": lat.consumer,
        "confirm_get": lat.consumer,
    }


def critical_path(case: Case, hops: dict[str, float], reload_delay: float) -> dict[str, float]:
    """The shortest possible window given the time of each request (`hops`).

    Every backend write is a write plus the read-back rotator makes to compare
    fingerprints (2 round trips; the primary's check-and-set version comes from arm).
    A consumer needs its reload notice answered (1 round trip), then a confirm
    answer given after its reload finished: max(one request, reload_delay - notice)
    after the notice was answered, counting the reload from the notice's arrival.
    """
    h = hops
    probe = h["probe"]
    primary = h["vault_write"] + h["vault_read"]
    others = (
        [h["vault_write"] + h["vault_read"]] * case.vault_mirrors
        + [h["aws_write"] + h["aws_read"]] * case.aws
        + [h["env_write"] + h["env_read"]] * case.env
    )
    slowest_other = max(others, default=0.0)
    signal = h["signal"] if case.consumers else 0.0
    confirm = max(h["confirm_get"], reload_delay - h["signal"]) if case.consumers else 0.0
    if case.consumers_read_primary:
        tail = max(slowest_other, signal + confirm)
    else:
        tail = slowest_other + signal + confirm
    sequential = probe + primary + sum(others) + case.consumers * (signal + confirm)
    return {
        "probe": probe,
        "primary": primary,
        "slowest_other_write": slowest_other,
        "signal": signal,
        "confirm": confirm,
        "critical_path": probe + primary + tail,
        "sequential_floor": sequential,
    }


def measure_hops(setup: Setup, s1: Child, reps: int = 5) -> dict[str, float]:
    """Each kind of request alone, one at a time, with the same client libraries: what the
    critical path costs on this machine before any orchestration (the 'measured floor')."""
    import statistics

    import boto3
    import httpx
    import hvac
    from rotator_plugins.envfile import _atomic_write, update_dotenv

    lat = setup.lat
    http = httpx.Client(timeout=10)
    vault = hvac.Client(url=setup.vault_url, token=VAULT_TOKEN, timeout=10)
    sm = boto3.session.Session().client("secretsmanager", region_name=AWS_REGION, endpoint_url=setup.moto_url)
    s1.call("seed", ["bench/floor"], ["bench/floor"])
    env = setup.env_paths[0].with_name("floor.env") if setup.env_paths else None
    if env is None:
        env = Path(tempfile.mkdtemp()) / "floor.env"
    env.write_text(f"{VARIABLE}=x\n")
    consumer = setup.consumer_urls[0] if setup.consumer_urls else None
    from rotator.consumer import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

    def env_write() -> None:
        time.sleep(lat.env)
        _atomic_write(env, update_dotenv(env.read_text(), VARIABLE, "y").encode(), None)

    def env_read() -> None:
        time.sleep(lat.env)
        env.read_text()

    def signal() -> None:
        assert consumer is not None
        fp = http.get(f"{consumer}/fingerprint").json()["fingerprint"]  # re-announce what it runs on
        body = json.dumps({"fingerprint": fp}).encode()
        ts = int(time.time())
        t = time.perf_counter()
        http.post(
            f"{consumer}/reload",
            content=body,
            headers={TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(setup.hook_key, ts, body)},
        )
        timings.append(time.perf_counter() - t)

    ops: dict[str, Any] = {
        "probe": lambda: http.get(setup.probe_url),
        "vault_write": lambda: vault.secrets.kv.v2.create_or_update_secret(
            path="bench/floor", secret={"api_key": "y"}, mount_point="secret"
        ),
        "vault_read": lambda: vault.secrets.kv.v2.read_secret_version(
            path="bench/floor", mount_point="secret", raise_on_deleted_version=False
        ),
        "aws_write": lambda: sm.put_secret_value(SecretId="bench/floor", SecretString="y"),
        "aws_read": lambda: sm.get_secret_value(SecretId="bench/floor"),
        "env_write": env_write,
        "env_read": env_read,
    }
    if consumer:
        ops["confirm_get"] = lambda: http.get(f"{consumer}/fingerprint")
    out = {}
    for name, fn in ops.items():
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        out[name] = statistics.median(ts)
    if consumer:
        timings: list[float] = []
        for _ in range(reps):
            signal()
        out["signal"] = statistics.median(timings)
    else:
        out["signal"] = out["confirm_get"] = lat.consumer
    http.close()
    vault.adapter.close()
    return out


# ---------------------------------------------------------------- (a) rotator


def progress_printer() -> Any:
    """The CLI's live progress lines (rich), rendered into memory instead of a terminal:
    `rotator rotate` prints one per step and target on the event loop, so they count."""
    import io

    from rich.console import Console

    from rotator.render import ProgressPrinter

    return ProgressPrinter(Console(file=io.StringIO(), force_terminal=True, width=120, highlight=False))


async def _rotator_once(setup: Setup, journal: Any, s1: Child, s2: Child, wait: float = 0.0) -> dict[str, Any]:
    from rotator import pipeline
    from rotator.pipeline import arm
    from rotator.pipeline.session import ArmedSession
    from rotator.pipeline.state import RotationState
    from rotator.plan import parse_plan
    from rotator.secret import Secret

    plan = parse_plan(setup.plan_data, Path(f"bench-{setup.case.name}.toml"))
    rot = RotationState(plan, journal, reason="benchmark", operator="benchmark", progress_fn=progress_printer())
    cpu = WindowCpu(s1, s2)
    # long-wait: through the armed session `rotator rotate` and the service use, whose
    # keeper keeps the connections warm while the operator is away (both arms of the case).
    session = ArmedSession(rot) if setup.case.kind == "long-wait" else None
    try:
        t_arm = time.perf_counter()
        armed = await (session.arm() if session else arm.run(rot))
        arm_s = time.perf_counter() - t_arm
        if not armed.ok:
            bad = armed.problems()
            raise RuntimeError(f"arm failed ({len(bad)} targets): " + "; ".join(bad[:5]))
        if wait:
            await asyncio.sleep(wait)  # the operator finds the app in the dashboard
        s2.call("collect")
        key = s1.call("reset", setup.app)  # "Reset app key": the old key is dead from here
        cpu.start()
        if session:
            attempt = await session.offer(key)
            report = attempt.report
            t_key = rot.key_received
            assert t_key is not None and report is not None
        else:
            rot.key_arrived()
            t_key = rot.key_received
            assert t_key is not None
            report = await pipeline.rotate(rot, Secret(key))
        returned = time.perf_counter() - t_key
        used = cpu.stop()
    finally:
        await (session.release() if session else arm.disarm(rot))
    if report.state != "done":
        bad = [f"{t.name}: {t.status} {t.detail}" for t in report.targets if t.status != "ok"]
        raise RuntimeError(f"rotation {report.state}: {report.message}; {bad[:5]}")
    arrivals = [a for a in s1.call("arrivals", setup.app) if a >= t_key]
    reopened = {**s1.call("accepted", t_key), **s2.call("accepted", t_key)}
    farm = s2.call("collect")
    confirmed = [c for c in farm["confirmed"] if c is not None]
    if len(confirmed) != setup.case.consumers:
        raise RuntimeError(f"{len(confirmed)} of {setup.case.consumers} consumers confirmed")
    slowest = max(report.targets, key=lambda t: t.finished or 0.0)
    return {
        "window": report.window,
        "returned": returned,
        "arm": arm_s,
        "first_probe_byte": (min(arrivals) - t_key) if arrivals else None,
        "server_last_confirm": (max(confirmed) - t_key) if confirmed else None,
        "steps": dict(report.steps),
        "slowest_target": slowest.name,
        "connections_opened_after_key": reopened,
        "cpu": used,
    }


def rotator_once(setup: Setup, journal: Any, s1: Child, s2: Child, wait: float = 0.0) -> dict[str, Any]:
    return asyncio.run(_rotator_once(setup, journal, s1, s2, wait))


def cold_main(conn: Any, plan_data: dict[str, Any], env: dict[str, str], env_latency: float, db_url: str) -> None:
    """A fresh interpreter: arm, wait for the key, rotate once, through the armed session
    `rotator rotate` and the service use (the paste cleaned there too).  Reports the
    window and every module first imported after the key arrived (import work on the
    critical path)."""
    os.environ.update(env)
    _latent.register()
    _latent.LatentEnvFile.latency = env_latency
    from rotator.journal import Journal
    from rotator.pipeline.session import ArmedSession
    from rotator.pipeline.state import RotationState
    from rotator.plan import parse_plan

    async def go() -> dict[str, Any]:
        journal = Journal(db_url)
        rot = RotationState(
            parse_plan(plan_data, Path("bench-cold.toml")),
            journal,
            reason="benchmark",
            operator="benchmark",
            progress_fn=progress_printer(),
        )
        session = ArmedSession(rot)
        try:
            await session.arm()
            conn.send("armed")
            key = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            before = set(sys.modules)
            attempt = await session.offer(key)
            imported = sorted(set(sys.modules) - before)
        finally:
            await session.release()
            journal.close()
        report = attempt.report
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        return {
            "window": report.window,
            "t_key": rot.key_received,
            "state": report.state,
            "imported": imported,
            "peak_rss_mb": rss,
        }

    try:
        conn.send(asyncio.run(go()))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        conn.send(RuntimeError(f"cold run: {type(exc).__name__}: {exc}"))


def cold_once(setup: Setup, s1: Child, s2: Child, db_url: str) -> dict[str, Any]:
    env = {k: os.environ[k] for k in (HOOK_ENV, VAULT_ENV, *AWS_ENV)}
    child = Child(cold_main, setup.plan_data, env, setup.lat.env, db_url)  # ready once armed
    try:
        s2.call("collect")
        key = s1.call("reset")
        child.conn.send(key)
        res = child._recv(120)
    finally:
        child.proc.join(10)
    if res["state"] != "done":
        raise RuntimeError(f"cold rotation {res['state']}")
    arrivals = [a for a in s1.call("arrivals") if a >= res["t_key"]]
    s2.call("collect")
    res["first_probe_byte"] = (min(arrivals) - res["t_key"]) if arrivals else None
    return res


# ---------------------------------------------------------------- (b) runbook


def signed_reload(hook_key: bytes, fp: str, rotation_id: str) -> tuple[bytes, dict[str, str]]:
    """A reload notice and its signed headers, as rotator's webhook consumer sends them."""
    from rotator.consumer import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

    ts = int(time.time())
    body = json.dumps(
        {"secret": "bench", "fingerprint": fp, "rotation_id": rotation_id, "timestamp": ts}, separators=(",", ":")
    ).encode()
    headers = {
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(hook_key, ts, body),
        "Content-Type": "application/json",
    }
    return body, headers


def baseline_once(setup: Setup, s1: Child, s2: Child) -> dict[str, Any]:
    """What an operator's script does after the reset: one call after another."""
    import boto3
    import httpx
    import hvac
    from rotator_plugins.envfile import _atomic_write, update_dotenv

    from rotator.secret import fingerprint

    lat = setup.lat
    s2.call("collect")
    key = s1.call("reset")
    t0 = time.perf_counter()
    fp = fingerprint(key)
    clients = 0.0

    def built(fn: Any) -> Any:
        nonlocal clients
        t = time.perf_counter()
        obj = fn()
        clients += time.perf_counter() - t
        return obj

    http = built(lambda: httpx.Client(timeout=10))
    r = http.get(setup.probe_url, headers={"Authorization": f"Bearer {key}"})
    if r.status_code != 200 or r.json().get("status") != "success":
        raise RuntimeError(f"baseline probe: HTTP {r.status_code}")
    t_probe = time.perf_counter() - t0
    vault = built(lambda: hvac.Client(url=setup.vault_url, token=VAULT_TOKEN, timeout=10))
    for path in setup.vault_paths:
        vault.secrets.kv.v2.create_or_update_secret(
            path=path, secret={"api_key": key, "other": "kept"}, mount_point="secret"
        )
        back = vault.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=False)
        if back["data"]["data"]["api_key"] != key:
            raise RuntimeError(f"baseline: vault {path} read back a different key")
    if setup.aws_names:
        sm = built(
            lambda: boto3.session.Session().client(
                "secretsmanager", region_name=AWS_REGION, endpoint_url=setup.moto_url
            )
        )
        for name in setup.aws_names:
            sm.put_secret_value(SecretId=name, SecretString=key)
            if sm.get_secret_value(SecretId=name)["SecretString"] != key:
                raise RuntimeError(f"baseline: aws {name} read back a different key")
    for p in setup.env_paths:
        time.sleep(lat.env)
        _atomic_write(p, update_dotenv(p.read_text(), VARIABLE, key).encode(), None)
        time.sleep(lat.env)
        if f"{VARIABLE}={key}" not in p.read_text():
            raise RuntimeError(f"baseline: {p} read back a different key")
    t_backends = time.perf_counter() - t0
    for url in setup.consumer_urls:
        body, headers = signed_reload(setup.hook_key, fp, "runbook")
        r = http.post(f"{url}/reload", content=body, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"baseline: {url}/reload answered {r.status_code}")
        deadline = time.perf_counter() + 30
        while http.get(f"{url}/fingerprint").json().get("fingerprint") != fp:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"baseline: {url} never confirmed")
            time.sleep(POLL)
    window = time.perf_counter() - t0
    http.close()
    vault.adapter.close()
    s2.call("collect")
    return {"window": window, "clients": clients, "probe": t_probe, "backends": t_backends}


# ---------------------------------------------------------------- (c) parallel floor


async def _parallel_floor(setup: Setup, s1: Child, s2: Child) -> dict[str, Any]:
    """The requests a perfect orchestrator must make after the key, as concurrently as the
    dependencies allow, with the leanest clients, built and warmed before the key."""
    from concurrent.futures import ThreadPoolExecutor

    import aiohttp
    import boto3
    import hvac
    from rotator_plugins.envfile import _atomic_write, update_dotenv

    from rotator.secret import fingerprint

    case, lat = setup.case, setup.lat
    loop = asyncio.get_running_loop()
    # Sized like rotator's PluginContext at arm (rotator/pipeline/arm.py).
    pool = ThreadPoolExecutor(max_workers=max(64, min(case.targets * 2 + 4, 1024)))
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=64, keepalive_timeout=3600),
        timeout=aiohttp.ClientTimeout(total=30),
    )
    vaults = {p: hvac.Client(url=setup.vault_url, token=VAULT_TOKEN, timeout=10) for p in setup.vault_paths}
    boto = boto3.session.Session()
    sms = {
        n: boto.client("secretsmanager", region_name=AWS_REGION, endpoint_url=setup.moto_url) for n in setup.aws_names
    }
    versions: dict[str, int] = {}

    def vault_read(path: str) -> Any:
        return vaults[path].secrets.kv.v2.read_secret_version(
            path=path, mount_point="secret", raise_on_deleted_version=False
        )["data"]

    def vault_write(key: str, path: str) -> float:
        vaults[path].secrets.kv.v2.create_or_update_secret(
            path=path, secret={"api_key": key, "other": "kept"}, cas=versions[path], mount_point="secret"
        )
        if vault_read(path)["data"]["api_key"] != key:
            raise RuntimeError(f"parallel floor: vault {path} read back a different key")
        return time.perf_counter()

    def aws_write(key: str, name: str) -> float:
        sms[name].put_secret_value(SecretId=name, SecretString=key)
        if sms[name].get_secret_value(SecretId=name)["SecretString"] != key:
            raise RuntimeError(f"parallel floor: aws {name} read back a different key")
        return time.perf_counter()

    def env_write(key: str, p: Path) -> float:
        time.sleep(lat.env)
        _atomic_write(p, update_dotenv(p.read_text(), VARIABLE, key).encode(), None)
        time.sleep(lat.env)
        if f"{VARIABLE}={key}" not in p.read_text():
            raise RuntimeError(f"parallel floor: {p} read back a different key")
        return time.perf_counter()

    async def warm(sem: asyncio.Semaphore, method: str, url: str) -> None:
        async with sem, session.request(method, url) as r:
            await r.read()

    async def consumer(url: str, fp: str, t0: float) -> float:
        """Signal, then poll as rotator's webhook confirm does; the confirming answer's time."""
        body, headers = signed_reload(setup.hook_key, fp, "floor")
        async with session.post(f"{url}/reload", data=body, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"parallel floor: {url}/reload answered {r.status}")
        while True:
            async with session.get(f"{url}/fingerprint") as r:
                reported = json.loads(await r.read()).get("fingerprint")
            if reported == fp:
                return time.perf_counter()
            if time.perf_counter() - t0 > 30:
                raise RuntimeError(f"parallel floor: {url} never confirmed")
            await asyncio.sleep(POLL)

    def blocking(fn: Any, *args: Any) -> Any:
        return loop.run_in_executor(pool, fn, *args)

    try:
        # Before the key, as rotator's arm: the current versions (the cas), every connection opened.
        current = await asyncio.gather(*(blocking(vault_read, p) for p in setup.vault_paths))
        versions.update({p: c["metadata"]["version"] for p, c in zip(setup.vault_paths, current, strict=True)})
        await asyncio.gather(*(blocking(lambda n=n: sms[n].get_secret_value(SecretId=n)) for n in sms))
        sem = asyncio.Semaphore(64)
        await asyncio.gather(
            warm(sem, "GET", setup.probe_url), *(warm(sem, "HEAD", f"{u}/reload") for u in setup.consumer_urls)
        )
        s2.call("collect")
        key = s1.call("reset", setup.app)
        cpu = WindowCpu(s1, s2)
        cpu.start()
        t0 = time.perf_counter()
        fp = fingerprint(key)
        async with session.get(setup.probe_url, headers={"Authorization": f"Bearer {key}"}) as r:
            ok = r.status == 200 and json.loads(await r.read()).get("status") == "success"
        if not ok:
            raise RuntimeError(f"parallel floor probe: HTTP {r.status}")
        t_probe = time.perf_counter() - t0
        t_primary = await blocking(vault_write, key, setup.vault_paths[0]) - t0
        others = [
            *(blocking(vault_write, key, p) for p in setup.vault_paths[1:]),
            *(blocking(aws_write, key, n) for n in setup.aws_names),
            *(blocking(env_write, key, p) for p in setup.env_paths),
        ]
        # The window ends with the last target (as rotator's report: every target's finish).
        if case.consumers_read_primary:
            ends = await asyncio.gather(*others, *(consumer(u, fp, t0) for u in setup.consumer_urls))
        else:  # default reads_from: every backend written first
            ends = await asyncio.gather(*others)
            ends += await asyncio.gather(*(consumer(u, fp, t0) for u in setup.consumer_urls))
        n = len(others)
        last_backend = max(ends[:n], default=t_primary + t0) - t0
        last_consumer = max(ends[n:], default=t_primary + t0) - t0
        window = max(last_backend, last_consumer)
        used = cpu.stop()
    finally:
        await session.close()
        for v in vaults.values():
            v.adapter.close()
        for sm in sms.values():
            sm.close()
        pool.shutdown(wait=False)
    s2.call("collect")
    return {
        "window": window,
        "cpu": used,
        "probe": t_probe,
        "primary": t_primary,
        "last_backend": last_backend,
        "last_consumer": last_consumer,
    }


def parallel_floor_once(setup: Setup, s1: Child, s2: Child) -> dict[str, Any]:
    """A bare script, no rotator code on the path: what N targets cost on this machine, in
    one process and one event loop, before any orchestration (see benchmarks/README.md)."""
    return asyncio.run(_parallel_floor(setup, s1, s2))


# ---------------------------------------------------------------- stats and output


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": pct(values, 0.5),
        "p10": pct(values, 0.1),
        "p90": pct(values, 0.9),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def process_cpu(pid: int) -> float:
    """Seconds of CPU every thread of process `pid` has run (the scheduler's own count,
    /proc/PID/task/*/schedstat, in ns: finer than the 10 ms ticks of /proc/PID/stat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total / 1e9


class WindowCpu:
    """CPU each process spent between `start()` and `stop()`: rotator's (every thread, and its
    event loop's thread alone), the backends' and the consumers'.  All share this machine's
    cores, so their sum over the cores is the least time this machine needs for that work
    (issue 15)."""

    def __init__(self, s1: Child, s2: Child) -> None:
        self.pids = {"rotator": os.getpid(), "backends": s1.proc.pid, "consumers": s2.proc.pid}

    def start(self) -> None:
        self._loop = time.thread_time()
        self._at = {k: process_cpu(p) for k, p in self.pids.items()}

    def stop(self) -> dict[str, float]:
        out = {k: process_cpu(p) - self._at[k] for k, p in self.pids.items()}
        out["rotator_loop"] = time.thread_time() - self._loop
        return out


def cpu_medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median CPU seconds per process over `runs`, and `all_over_cores`: their sum spread
    over every core, the least time this machine needs for that work whatever the order."""
    keys = runs[0]["cpu"].keys()
    out = {k: pct([r["cpu"][k] for r in runs], 0.5) for k in keys}
    out["all_over_cores"] = (out["rotator"] + out["backends"] + out["consumers"]) / (os.cpu_count() or 1)
    return out


def run_case(setup: Setup, journal: Any, s1: Child, s2: Child, log: Any, db_url: str) -> dict[str, Any]:
    case = setup.case
    load_start = loadavg()
    cp = critical_path(case, injected_hops(setup.lat), setup.lat.reload_delay)
    hops = measure_hops(setup, s1)
    floor = critical_path(case, hops, setup.lat.reload_delay)
    # One unrecorded warm-up each (first-use costs in this long-lived process).
    rotator_once(setup, journal, s1, s2)
    pf_reps = min(case.reps, max(case.baseline_reps, 2)) if case.parallel_floor else 0
    if pf_reps:
        parallel_floor_once(setup, s1, s2)
    rot_runs: list[dict[str, Any]] = []
    base_runs: list[dict[str, Any]] = []
    pf_runs: list[dict[str, Any]] = []
    for i in range(case.reps):
        order = ("r", "b", "p") if i % 2 == 0 else ("p", "b", "r")
        for which in order:
            if which == "r":
                rot_runs.append(rotator_once(setup, journal, s1, s2))
            elif which == "b" and i < case.baseline_reps:
                base_runs.append(baseline_once(setup, s1, s2))
            elif which == "p" and i < pf_reps:
                pf_runs.append(parallel_floor_once(setup, s1, s2))
    cold = [cold_once(setup, s1, s2, db_url) for _ in range(case.cold_reps)]
    w = summary([r["window"] for r in rot_runs])
    b = summary([r["window"] for r in base_runs]) if base_runs else None
    fb = summary([r["first_probe_byte"] for r in rot_runs if r["first_probe_byte"] is not None])
    steps = {k: pct([r["steps"][k] for r in rot_runs if k in r["steps"]], 0.5) for k in rot_runs[0]["steps"]}
    out = {
        "case": asdict(case),
        "load_average": {"start": load_start, "end": loadavg()},
        "window_over_critical_path": w["median"] / cp["critical_path"],
        "window_over_floor": w["median"] / floor["critical_path"],
        "targets": case.targets,
        "fanout_targets": case.fanout,
        "backends": case.backends,
        "consumers": case.consumers,
        "reload_delay": setup.lat.reload_delay,
        "critical_path": cp,
        "measured_hops": hops,
        "measured_floor": floor,
        "rotator": {
            "window": w,
            "window_over_critical_path": w["median"] / cp["critical_path"],
            "window_over_measured_floor": w["median"] / floor["critical_path"],
            "first_probe_byte": fb,
            "returned_median": pct([r["returned"] for r in rot_runs], 0.5),
            "server_last_confirm_median": pct(
                [r["server_last_confirm"] for r in rot_runs if r["server_last_confirm"]], 0.5
            )
            if case.consumers
            else None,
            "arm_median": pct([r["arm"] for r in rot_runs], 0.5),
            "steps_median": steps,
            "slowest_targets": sorted({r["slowest_target"] for r in rot_runs}),
            "connections_opened_after_key": rot_runs[-1]["connections_opened_after_key"],
            "runs": [r["window"] for r in rot_runs],
        },
        "cpu_in_window": cpu_medians(rot_runs),
    }
    if b is not None:
        out["baseline"] = {
            "window": b,
            "clients_median": pct([r["clients"] for r in base_runs], 0.5),
            "runs": [r["window"] for r in base_runs],
        }
        out["baseline_over_window"] = b["median"] / w["median"]
    if pf_runs:
        pf = summary([r["window"] for r in pf_runs])
        out["parallel_floor"] = {
            **pf,
            "probe_median": pct([r["probe"] for r in pf_runs], 0.5),
            "primary_median": pct([r["primary"] for r in pf_runs], 0.5),
            "last_backend_median": pct([r["last_backend"] for r in pf_runs], 0.5),
            "last_consumer_median": pct([r["last_consumer"] for r in pf_runs], 0.5),
            "runs": [r["window"] for r in pf_runs],
            "cpu_in_window": cpu_medians(pf_runs),
        }
        out["window_over_parallel_floor"] = w["median"] / pf["median"]
    if cold:
        out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in cold)
        out["rotator"]["cold_process"] = {
            "peak_rss_mb": out["peak_rss_mb"],
            "window": summary([r["window"] for r in cold]),
            "first_probe_byte": summary([r["first_probe_byte"] for r in cold if r["first_probe_byte"] is not None]),
            "imported_after_key": sorted({m for r in cold for m in r["imported"]}),
        }
    runbook = f"runbook {ms(b['median'])} ms = {out['baseline_over_window']:.1f}x" if b else "no runbook"
    cpu = out["cpu_in_window"]
    runbook += f" | CPU in window: rotator {ms(cpu['rotator'])} ms (loop {ms(cpu['rotator_loop'])}), all / cores {ms(cpu['all_over_cores'])} ms"
    if pf_runs:
        runbook += f" | parallel floor {ms(pf['median'])} ms, window / it {out['window_over_parallel_floor']:.2f}x"
    log(
        f"{case.name:>11}: {case.backends} backends + {case.consumers} consumers | critical path {ms(cp['critical_path'])} ms"
        f" | rotator {ms(w['median'])} ms [{ms(w['p10'])}-{ms(w['p90'])}] = {out['window_over_critical_path']:.2f}x CP"
        f" | {runbook} | key->probe byte {fb['median'] * 1000:.1f} ms | load {out['load_average']['end'][0]}"
        + (f" | peak RSS {out['peak_rss_mb']:.0f} MB" if cold else "")
    )
    return out


def run_long_wait(setup: Setup, journal: Any, s1: Child, s2: Child, log: Any) -> dict[str, Any]:
    """The key at once and the key after each wait, alternating, same plan and services."""
    case = setup.case
    load_start = loadavg()
    cp = critical_path(case, injected_hops(setup.lat), setup.lat.reload_delay)
    hops = measure_hops(setup, s1)
    floor = critical_path(case, hops, setup.lat.reload_delay)
    rotator_once(setup, journal, s1, s2)
    runs: dict[float, list[dict[str, Any]]] = {0.0: [], **{w: [] for w in case.waits}}
    for i in range(case.reps):
        order = [0.0, *case.waits] if i % 2 == 0 else [*case.waits, 0.0]
        for wait in order:
            runs[wait].append(rotator_once(setup, journal, s1, s2, wait))
    base = summary([r["window"] for r in runs[0.0]])
    waits = {}
    for wait in case.waits:
        w = summary([r["window"] for r in runs[wait]])
        waits[f"{wait:g}"] = {
            "wait": wait,
            "window": w,
            "window_over_critical_path": w["median"] / cp["critical_path"],
            "window_over_floor": w["median"] / floor["critical_path"],
            "window_over_no_wait": w["median"] / base["median"],
            "first_probe_byte": summary([r["first_probe_byte"] for r in runs[wait] if r["first_probe_byte"]]),
            "connections_opened_after_key": [r["connections_opened_after_key"] for r in runs[wait]],
            "steps": [r["steps"] for r in runs[wait]],
            "runs": [r["window"] for r in runs[wait]],
        }
    worst = max(waits.values(), key=lambda v: v["window_over_no_wait"])
    out = {
        "case": asdict(case),
        "load_average": {"start": load_start, "end": loadavg()},
        "window_over_critical_path": worst["window_over_critical_path"],
        "window_over_floor": worst["window_over_floor"],
        "window_over_no_wait": worst["window_over_no_wait"],
        "targets": case.targets,
        "backends": case.backends,
        "consumers": case.consumers,
        "reload_delay": setup.lat.reload_delay,
        "idle_timeout": IDLE_TIMEOUT,
        "handshake": setup.lat.consumer if case.handshake else 0.0,
        "critical_path": cp,
        "measured_floor": floor,
        "no_wait": {
            "window": base,
            "window_over_critical_path": base["median"] / cp["critical_path"],
            "connections_opened_after_key": [r["connections_opened_after_key"] for r in runs[0.0]],
            "steps": [r["steps"] for r in runs[0.0]],
            "runs": [r["window"] for r in runs[0.0]],
        },
        "waits": waits,
    }
    log(
        f"{case.name:>11}: no wait {ms(base['median'])} ms"
        + "".join(
            f" | {k} s: {ms(v['window']['median'])} ms = {v['window_over_no_wait']:.3f}x no wait,"
            f" opened after key {v['connections_opened_after_key'][-1]}"
            for k, v in waits.items()
        )
        + f" | load {out['load_average']['end'][0]}"
    )
    return out


async def _plans_together(setups: list[Setup], journal: Any, s1: Child, s2: Child) -> list[float]:
    from rotator import pipeline
    from rotator.pipeline import arm
    from rotator.pipeline.state import RotationState
    from rotator.plan import parse_plan
    from rotator.secret import Secret

    rots = [
        RotationState(
            parse_plan(st.plan_data, Path(f"bench-{st.case.name}-{st.app}.toml")),
            journal,
            reason="benchmark",
            operator="benchmark",
            progress_fn=progress_printer(),
        )
        for st in setups
    ]
    try:
        armed = await asyncio.gather(*(arm.run(r) for r in rots))
        bad = [p for a in armed for p in a.problems()]
        if bad:
            raise RuntimeError("arm failed: " + "; ".join(bad[:5]))
        s2.call("collect")
        keys = [s1.call("reset", st.app) for st in setups]  # several apps' keys reset at once

        async def go(rot: Any, key: str) -> Any:
            rot.key_arrived()
            return await pipeline.rotate(rot, Secret(key))

        reports = await asyncio.gather(*(go(r, k) for r, k in zip(rots, keys, strict=True)))
    finally:
        for r in rots:
            await arm.disarm(r)
    s2.call("collect")
    for rep in reports:
        if rep.state != "done":
            raise RuntimeError(f"rotation {rep.state}: {rep.message}")
    return [rep.window for rep in reports]


def run_plans(setups: list[Setup], journal: Any, s1: Child, s2: Child, log: Any) -> dict[str, Any]:
    """Each plan alone, then all at once (keys arriving together), alternating."""
    case = setups[0].case
    load_start = loadavg()
    cp = critical_path(case, injected_hops(setups[0].lat), setups[0].lat.reload_delay)
    hops = measure_hops(setups[0], s1)
    floor = critical_path(case, hops, setups[0].lat.reload_delay)
    for st in setups:
        rotator_once(st, journal, s1, s2)
    asyncio.run(_plans_together(setups, journal, s1, s2))
    alone: list[list[float]] = [[] for _ in setups]
    together: list[list[float]] = [[] for _ in setups]
    for i in range(case.reps):
        for which in ("a", "t") if i % 2 == 0 else ("t", "a"):
            if which == "a":
                for j, st in enumerate(setups):
                    alone[j].append(rotator_once(st, journal, s1, s2)["window"])
            else:
                for j, w in enumerate(asyncio.run(_plans_together(setups, journal, s1, s2))):
                    together[j].append(w)
    per_plan = []
    for j in range(len(setups)):
        a, t = summary(alone[j]), summary(together[j])
        per_plan.append(
            {
                "plan": setups[j].plan_data["secret"]["name"],
                "alone": a,
                "together": t,
                "together_over_alone": t["median"] / a["median"],
                "window_over_critical_path": t["median"] / cp["critical_path"],
            }
        )
    worst = max(per_plan, key=lambda v: v["together_over_alone"])
    out = {
        "case": asdict(case),
        "load_average": {"start": load_start, "end": loadavg()},
        "window_over_critical_path": max(v["window_over_critical_path"] for v in per_plan),
        "window_over_floor": max(v["together"]["median"] for v in per_plan) / floor["critical_path"],
        "together_over_alone": worst["together_over_alone"],
        "targets": case.targets,
        "backends": case.backends,
        "consumers": case.consumers,
        "reload_delay": setups[0].lat.reload_delay,
        "critical_path": cp,
        "measured_floor": floor,
        "plans": per_plan,
    }
    log(
        f"{case.name:>11}: {case.plans} plans of {case.backends} backends + {case.consumers} consumers | alone "
        + ", ".join(ms(v["alone"]["median"]) for v in per_plan)
        + " ms | together "
        + ", ".join(ms(v["together"]["median"]) for v in per_plan)
        + f" ms | worst together/alone {worst['together_over_alone']:.3f}x | load {out['load_average']['end'][0]}"
    )
    return out


def _toml(data: dict[str, Any]) -> str:
    """The plan dict as TOML (strings, numbers, booleans, lists, inline tables, arrays of tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(type(v))

    out = []
    for section, body in data.items():
        rows = body if isinstance(body, list) else [body]
        for row in rows:
            out.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            out += [f"{k} = {value(v)}" for k, v in row.items()]
            out.append("")
    return "\n".join(out)


SERVE = (
    "import sys; from benchmarks import _latent; _latent.register(); _latent.LatentEnvFile.latency = float(sys.argv.pop(1)); "
    "from importlib.metadata import entry_points; "
    "sys.exit([e for e in entry_points(group='console_scripts') if e.name == 'rotator'][0].load()())"
)


class _Service:
    """`rotator serve` in its own process, as an operator runs it, with the benchmark's plan."""

    def __init__(self, setup: Setup, root: Path) -> None:
        import subprocess

        plans = root / "service-plans"
        plans.mkdir(exist_ok=True)
        self.plan = f"{setup.plan_data['secret']['name']}-service"
        data = {**setup.plan_data, "secret": {"name": self.plan}}
        (plans / f"{self.plan}.toml").write_text(_toml(data))
        self.token = secrets.token_urlsafe(24)
        env = {**os.environ, "ROTATOR_API_TOKEN": self.token, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        args = ["serve", "--plans", str(plans), "--port", "0", "--no-scheduler", "--db", f"sqlite:///{root / 'svc.db'}"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(setup.lat.env), *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        self.url = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"rotator serve exited ({self.proc.wait()})")
            found = re.search(r"listening on (https?://[^\s\"]+)", line)  # plain text or a JSON log line
            if found:
                self.url = found.group(1).rstrip("/")
                break
        if not self.url:
            raise RuntimeError("rotator serve did not start listening within 60 s")
        import threading

        import httpx

        stderr = self.proc.stderr
        threading.Thread(target=lambda: [None for _ in stderr], daemon=True).start()  # keep the pipe drained
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("rotator serve did not answer /healthz within 60 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except Exception:  # noqa: BLE001
            self.proc.kill()


def _window_seconds(body: Any) -> float | None:
    """`window_seconds` wherever the API's answer has it."""
    if isinstance(body, dict):
        if isinstance(body.get("window_seconds"), int | float):
            return float(body["window_seconds"])
        for v in body.values():
            found = _window_seconds(v)
            if found is not None:
                return found
    if isinstance(body, list):
        for v in body:
            found = _window_seconds(v)
            if found is not None:
                return found
    return None


def service_once(svc: _Service, setup: Setup, s1: Child, s2: Child) -> dict[str, Any]:
    """Arm through the API, follow the SSE stream, POST the key (the operator's paste)."""
    import threading

    import httpx

    auth = {"Authorization": f"Bearer {svc.token}"}
    http = httpx.Client(base_url=svc.url, headers=auth, timeout=60)
    try:
        r = http.post(f"/api/plans/{svc.plan}/arm", json={"reason": "benchmark"})
        if r.status_code != 201:
            raise RuntimeError(f"service arm: HTTP {r.status_code} {r.text[:300]}")
        rid = r.json()["id"]
        events: list[tuple[float, str]] = []
        ended = threading.Event()

        def follow() -> None:
            with httpx.Client(base_url=svc.url, headers=auth, timeout=60) as c:
                with c.stream("GET", f"/api/rotations/{rid}/events") as resp:
                    kind = ""
                    for line in resp.iter_lines():
                        if line.startswith("event:"):
                            kind = line.split(":", 1)[1].strip()
                        elif line.startswith("data:"):
                            events.append((time.perf_counter(), kind))
                            if kind == "end":
                                break
            ended.set()

        threading.Thread(target=follow, daemon=True).start()
        s2.call("collect")
        key = s1.call("reset", setup.app)
        t_post = time.perf_counter()
        r = http.post(f"/api/rotations/{rid}/key", json={"key": key})
        answered = time.perf_counter() - t_post
        if r.status_code != 200:
            raise RuntimeError(f"service key: HTTP {r.status_code} {r.text[:300]}")
        body = r.json()
        ended.wait(30)
    finally:
        http.close()
    state = body.get("report", {}).get("state")
    if state != "done":
        raise RuntimeError(f"service rotation {state}")
    window = _window_seconds(body.get("report"))
    farm = s2.call("collect")
    confirmed = [c for c in farm["confirmed"] if c is not None]
    final = [t for t, k in events if k != "end"]
    last_confirm = max(confirmed) if confirmed else None
    return {
        "window": window,
        "key_post_answered": answered,
        "final_event_after_last_confirm": (max(final) - last_confirm) if final and last_confirm else None,
        "events": len(events),
    }


def run_service(setup: Setup, journal: Any, s1: Child, s2: Child, log: Any, root: Path) -> dict[str, Any]:
    """The API's window against the library's, same plan and services, alternating."""
    case = setup.case
    load_start = loadavg()
    cp = critical_path(case, injected_hops(setup.lat), setup.lat.reload_delay)
    hops = measure_hops(setup, s1)
    floor = critical_path(case, hops, setup.lat.reload_delay)
    svc = _Service(setup, root)
    try:
        service_once(svc, setup, s1, s2)  # warm-up
        rotator_once(setup, journal, s1, s2)
        via_api: list[dict[str, Any]] = []
        library: list[float] = []
        for i in range(case.reps):
            for which in ("s", "l") if i % 2 == 0 else ("l", "s"):
                if which == "s":
                    via_api.append(service_once(svc, setup, s1, s2))
                else:
                    library.append(rotator_once(setup, journal, s1, s2)["window"])
    finally:
        svc.stop()
    w = summary([r["window"] for r in via_api])
    lib = summary(library)
    lag = [r["final_event_after_last_confirm"] for r in via_api if r["final_event_after_last_confirm"] is not None]
    out = {
        "case": asdict(case),
        "load_average": {"start": load_start, "end": loadavg()},
        "window_over_critical_path": w["median"] / cp["critical_path"],
        "window_over_floor": w["median"] / floor["critical_path"],
        "window_over_library": w["median"] / lib["median"],
        "targets": case.targets,
        "backends": case.backends,
        "consumers": case.consumers,
        "reload_delay": setup.lat.reload_delay,
        "critical_path": cp,
        "measured_floor": floor,
        "service": {
            "window": w,
            "final_event_after_window": summary(lag) if lag else None,
            "key_post_answered": summary([r["key_post_answered"] for r in via_api]),
            "runs": via_api,
        },
        "library": {"window": lib, "runs": library},
    }
    log(
        f"{case.name:>11}: API window {ms(w['median'])} ms = {out['window_over_critical_path']:.3f}x CP, "
        f"{out['window_over_library']:.3f}x the library's ({ms(lib['median'])} ms) | final SSE event "
        + (f"{lag and pct(lag, 0.5) * 1000:.1f} ms after the last confirmation" if lag else "not seen")
        + f" | load {out['load_average']['end'][0]}"
    )
    return out


def targets_met(results: dict[str, Any]) -> list[dict[str, Any]]:
    by = {c["case"]["name"]: c for c in results["cases"]}
    out = []
    if "headline" in by:
        h = by["headline"]
        out.append(
            {
                "target": "3 backends + 10 consumers: window <= 1.10 x critical path",
                "value": f"{h['window_over_critical_path']:.3f} x",
                "met": h["window_over_critical_path"] <= 1.10,
            }
        )
        out.append(
            {
                "target": "3 backends + 10 consumers: runbook >= 5 x window",
                "value": f"{h['baseline_over_window']:.2f} x (ceiling from latencies alone: "
                f"{h['critical_path']['sequential_floor'] / h['critical_path']['critical_path']:.2f} x)",
                "met": h["baseline_over_window"] >= 5.0,
            }
        )
    if "headline-reload-500ms" in by:
        h = by["headline-reload-500ms"]
        out.append(
            {
                "target": "(same, consumers reloading in 500 ms) runbook >= 5 x window",
                "value": f"{h['baseline_over_window']:.2f} x (ceiling "
                f"{h['critical_path']['sequential_floor'] / h['critical_path']['critical_path']:.2f} x); "
                f"window {h['window_over_critical_path']:.3f} x critical path",
                "met": h["baseline_over_window"] >= 5.0,
            }
        )
    standard = [c for c in results["cases"] if c["case"]["kind"] == "standard"]
    if standard:
        worst = max(standard, key=lambda c: c["window_over_floor"])
        out.append(
            {
                "target": "window / measured floor <= 1.05 in every case",
                "value": f"{worst['window_over_floor']:.3f} (worst: {worst['case']['name']})",
                "met": worst["window_over_floor"] <= 1.05,
            }
        )
    with_pf = [c for c in standard if "window_over_parallel_floor" in c]
    if with_pf:
        worst = max(with_pf, key=lambda c: c["window_over_parallel_floor"])
        out.append(
            {
                "target": "(informational) window / parallel floor <= 1.05 (rotator's own overhead at N targets)",
                "value": f"{worst['window_over_parallel_floor']:.3f} (worst: {worst['case']['name']}; "
                + ", ".join(f"{c['case']['name']} {c['window_over_parallel_floor']:.2f}" for c in with_pf)
                + ")",
                "met": worst["window_over_parallel_floor"] <= 1.05,
            }
        )
    one = by.get("fanout-1")
    for n, goal in (("200", 1.3), ("1000", 2.0)):
        c = by.get(f"fanout-{n}")
        if one and c:
            r = c["rotator"]["window"]["median"] / one["rotator"]["window"]["median"]
            c["window_over_fanout_1"] = r
            out.append(
                {
                    "target": f"{n} targets: window <= {goal} x window with 1 target",
                    "value": f"{r:.3f} x",
                    "met": r <= goal,
                }
            )
    if "fanout-1000" in by and "peak_rss_mb" in by["fanout-1000"]:
        rss = by["fanout-1000"]["peak_rss_mb"]
        out.append({"target": "1,000 targets: rotator peak RSS <= 250 MB", "value": f"{rss:.0f} MB", "met": rss <= 250})
    if "long-wait" in by:
        for k, v in by["long-wait"]["waits"].items():
            out.append(
                {
                    "target": f"key {k} s after arm: window <= 1.05 x window with the key at once",
                    "value": f"{v['window_over_no_wait']:.3f} x",
                    "met": v["window_over_no_wait"] <= 1.05,
                }
            )
    if "plans-5" in by:
        c = by["plans-5"]
        out.append(
            {
                "target": "5 plans at once: each plan's window <= 1.2 x its window alone",
                "value": f"{c['together_over_alone']:.3f} x (worst plan)",
                "met": c["together_over_alone"] <= 1.2,
            }
        )
    if "service" in by:
        c = by["service"]
        out.append(
            {
                "target": "through the service: window <= 1.10 x critical path",
                "value": f"{c['window_over_critical_path']:.3f} x ({c['window_over_library']:.3f} x the library's)",
                "met": c["window_over_critical_path"] <= 1.10,
            }
        )
        lag = c["service"]["final_event_after_window"]
        if lag:
            out.append(
                {
                    "target": "through the service: final SSE event <= 20 ms after the window's end",
                    "value": f"{lag['median'] * 1000:.1f} ms median ({lag['max'] * 1000:.1f} max)",
                    "met": lag["median"] <= 0.020,
                }
            )
    with_fb = [c for c in standard if c["rotator"]["first_probe_byte"]["n"]]
    if with_fb:
        fb = max(c["rotator"]["first_probe_byte"]["median"] for c in with_fb)
        cold = [
            c["rotator"]["cold_process"]["first_probe_byte"]["max"]
            for c in with_fb
            if "cold_process" in c["rotator"] and c["rotator"]["cold_process"]["first_probe_byte"]["n"]
        ]
        fbmax = max(c["rotator"]["first_probe_byte"]["max"] for c in with_fb)
        out.append(
            {
                "target": "key received -> first probe byte <= 20 ms",
                "value": f"{fb * 1000:.2f} ms (worst median of all cases; worst single run {fbmax * 1000:.2f} ms"
                + (f"; fresh interpreter {max(cold) * 1000:.2f} ms)" if cold else ")"),
                "met": fb <= 0.020,
            }
        )
    return out


def _marginal(c: dict[str, Any], one: dict[str, Any] | None) -> str:
    """rotator's CPU per fan-out target beyond what fanout-1 spends (its fixed costs left out)."""
    if one is None or c["fanout_targets"] <= one["fanout_targets"]:
        return "-"
    extra = c["cpu_in_window"]["rotator"] - one["cpu_in_window"]["rotator"]
    return f"{extra / (c['fanout_targets'] - one['fanout_targets']) * 1e6:.0f} us"


def _load(c: dict[str, Any]) -> str:
    return f"{c['load_average']['start'][0]:.1f} / {c['load_average']['end'][0]:.1f}"


def markdown(results: dict[str, Any]) -> str:
    m = results["meta"]
    lat = m["latency"]
    quick = (
        ["**Quick run** (`--quick`: fewer repetitions, one 60 s wait instead of 60 s and 300 s), not the full run.", ""]
        if m["mode"] == "quick"
        else []
    )
    lines = [
        *quick,
        f"Injected latency per request: probe {ms(lat['probe'])} ms, Vault {ms(lat['vault'])} ms, "
        f"AWS (moto) {ms(lat['aws'])} ms, .env {ms(lat['env'])} ms per read and per write, "
        f"consumers {ms(lat['consumer'])} ms. {m['cpus']} CPUs, Python {m['python']}, {m['mode']} run, "
        f"{m['seconds']:.0f} s. Servers close connections idle for {m['idle_timeout']:.0f} s.",
        "",
        "| case | backends + consumers | reload | critical path | measured floor | rotator window median [p10-p90] "
        "| window / CP | window / floor | parallel floor median [p10-p90] | window / parallel floor "
        "| runbook median [p10-p90] | runbook / window | key -> probe byte median (max) "
        "| runs rotator/runbook | load 1-min (start / end) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in results["cases"]:
        if c["case"]["kind"] != "standard":
            continue
        r = c["rotator"]
        w, fb = r["window"], r["first_probe_byte"]
        b = c.get("baseline", {}).get("window")
        runbook = (
            f"{ms(b['median'])} ms [{ms(b['p10'])}-{ms(b['p90'])}] | {c['baseline_over_window']:.1f}x" if b else "- | -"
        )
        pf = c.get("parallel_floor")
        parallel = (
            f"{ms(pf['median'])} ms [{ms(pf['p10'])}-{ms(pf['p90'])}] | {c['window_over_parallel_floor']:.2f}"
            if pf
            else "- | -"
        )
        lines.append(
            f"| {c['case']['name']} | {c['backends']} + {c['consumers']} | {ms(c['reload_delay'])} ms "
            f"| {ms(c['critical_path']['critical_path'])} ms | {ms(c['measured_floor']['critical_path'])} ms "
            f"| {ms(w['median'])} ms [{ms(w['p10'])}-{ms(w['p90'])}] | {c['window_over_critical_path']:.2f} "
            f"| {c['window_over_floor']:.2f} | {parallel} | {runbook} | {fb['median'] * 1000:.1f} ms ({fb['max'] * 1000:.1f}) "
            f"| {w['n']}/{b['n'] if b else 0} | {_load(c)} |"
        )
    with_cpu = [c for c in results["cases"] if c["case"]["kind"] == "standard" and "cpu_in_window" in c]
    if with_cpu:
        lines += [
            "",
            "**CPU in the window** (key -> last consumer confirmed, medians; every process shares the "
            f"{m['cpus']} cores, so the sum over the cores is the least time this machine needs for that "
            "work; rotator's threads share one GIL):",
            "",
            "| case | rotator, all threads | its event loop | backends' servers | consumers' server "
            "| sum / cores | parallel floor: its process, sum / cores | rotator CPU per target beyond fanout-1's |",
            "|---|---|---|---|---|---|---|---|",
        ]
    one = next((c for c in with_cpu if c["case"]["name"] == "fanout-1"), None)
    for c in with_cpu:
        u = c["cpu_in_window"]
        pfu = c.get("parallel_floor", {}).get("cpu_in_window")
        floor_cpu = f"{ms(pfu['rotator'])} ms, {ms(pfu['all_over_cores'])} ms" if pfu else "-"
        lines.append(
            f"| {c['case']['name']} | {ms(u['rotator'])} ms | {ms(u['rotator_loop'])} ms | {ms(u['backends'])} ms "
            f"| {ms(u['consumers'])} ms | {ms(u['all_over_cores'])} ms | {floor_cpu} | {_marginal(c, one)} |"
        )
    for c in results["cases"]:
        if c["case"]["kind"] == "long-wait":
            nw = c["no_wait"]["window"]
            lines += [
                "",
                f"**{c['case']['name']}** ({c['backends']} backends + {c['consumers']} consumers; idle timeout "
                f"{c['idle_timeout']:.0f} s, a new connection's first answer {ms(c['handshake'])} ms later; "
                f"load {_load(c)}):",
                "",
                "| key after | window median [p10-p90] | window / CP | window / no wait | connections opened after the key |",
                "|---|---|---|---|---|",
                f"| at once | {ms(nw['median'])} ms [{ms(nw['p10'])}-{ms(nw['p90'])}] "
                f"| {c['no_wait']['window_over_critical_path']:.2f} | 1 | "
                f"{_opened(c['no_wait']['connections_opened_after_key'])} |",
            ]
            for k, v in c["waits"].items():
                w = v["window"]
                lines.append(
                    f"| {k} s | {ms(w['median'])} ms [{ms(w['p10'])}-{ms(w['p90'])}] "
                    f"| {v['window_over_critical_path']:.2f} | {v['window_over_no_wait']:.3f} "
                    f"| {_opened(v['connections_opened_after_key'])} |"
                )
        if c["case"]["kind"] == "plans":
            lines += [
                "",
                f"**{c['case']['name']}** ({c['case']['plans']} plans of {c['backends']} backends + {c['consumers']} "
                f"consumers, one stand-in each, keys reset together; load {_load(c)}):",
                "",
                "| plan | alone median | together median | together / alone | together / CP |",
                "|---|---|---|---|---|",
            ]
            for v in c["plans"]:
                lines.append(
                    f"| {v['plan']} | {ms(v['alone']['median'])} ms | {ms(v['together']['median'])} ms "
                    f"| {v['together_over_alone']:.3f} | {v['window_over_critical_path']:.2f} |"
                )
    for c in results["cases"]:
        if c["case"]["kind"] == "service":
            w, lib, lag = c["service"]["window"], c["library"]["window"], c["service"]["final_event_after_window"]
            lines += [
                "",
                f"**{c['case']['name']}** (the headline plan through `rotator serve`: arm with the API, POST the key, "
                f"follow the SSE stream; load {_load(c)}): window as the API reports it {ms(w['median'])} ms "
                f"[{ms(w['p10'])}-{ms(w['p90'])}] = {c['window_over_critical_path']:.2f} x critical path, "
                f"{c['window_over_library']:.3f} x the library path's {ms(lib['median'])} ms in the same run; "
                + (
                    f"final SSE event at the client {lag['median'] * 1000:.1f} ms (max {lag['max'] * 1000:.1f}) after "
                    "the last consumer's confirming answer."
                    if lag
                    else "no final SSE event seen."
                ),
            ]
    for c in results["cases"]:
        cold = c.get("rotator", {}).get("cold_process")
        if cold:
            lines += [
                "",
                f"{c['case']['name']}, each rotation in a fresh interpreter ({cold['window']['n']} runs): window median "
                f"{ms(cold['window']['median'])} ms, key -> probe byte {cold['first_probe_byte']['median'] * 1000:.1f} ms, "
                f"peak RSS {cold['peak_rss_mb']:.0f} MB, "
                f"modules first imported after the key: {', '.join(cold['imported_after_key']) or 'none'}.",
            ]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    lines += [
        "",
        "Critical path: from the injected latencies (probe + primary write and read-back + slowest other write and "
        "read-back + slowest signal + confirm). Measured floor: the same path built from each request's time measured "
        "alone, one at a time, with the same client libraries (what a perfect orchestrator could reach on this "
        "machine). Parallel floor: a bare script (no rotator code) making exactly the requests after the key, as "
        "concurrently as the dependencies allow (aiohttp, hvac and boto3 in threads), clients built and connections "
        "opened before the key: what N targets cost on this machine's one event loop, so window / parallel floor is "
        "rotator's own overhead. headline: Vault primary, AWS and .env mirrors, 10 webhook consumers signalled once every backend "
        "is written. fanout-N: Vault primary plus N targets (Vault/AWS/.env mirrors and webhook consumers that read "
        "the primary), so the critical path is the same at every N. The runbook builds its clients after the key "
        "arrives and makes the same calls (write, read back; signal, poll confirm every 50 ms) one at a time. "
        "long-wait: the headline plan, the key at once and after each wait, alternating. plans-5: five copies of the "
        "headline plan, each alone and all at once in one process, alternating. service: the headline plan through "
        "`rotator serve`'s HTTP API, alternating with the library path.",
    ]
    return "\n".join(lines) + "\n"


def _opened(per_run: list[dict[str, int]]) -> str:
    """Connections the services accepted after the key, per service, in the last run."""
    last = per_run[-1] if per_run else {}
    return ", ".join(f"{k} {v}" for k, v in sorted(last.items()) if v) or "none"


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.window", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute)")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added to every request (default 0.05)")
    for name in ("probe", "vault", "aws", "env", "consumer"):
        ap.add_argument(f"--{name}-latency", type=float, help=f"override --latency for {name}")
    ap.add_argument("--reload-delay", type=float, help="seconds a consumer takes to reload (default: --latency)")
    ap.add_argument("--case", action="append", help="run only these cases (headline, fanout-1, fanout-10, ...)")
    ap.add_argument(
        "--wait", type=float, action="append", help="long-wait: seconds between arm and the key (repeatable)"
    )
    ap.add_argument("--out", type=Path, default=RESULTS, help="directory for latest.json and latest.md")
    args = ap.parse_args(argv)

    def pick(name: str) -> float:
        v = getattr(args, f"{name}_latency")
        return args.latency if v is None else v

    lat = Latency(
        pick("probe"),
        pick("vault"),
        pick("aws"),
        pick("env"),
        pick("consumer"),
        args.latency if args.reload_delay is None else args.reload_delay,
    )
    hook_key = secrets.token_hex(32)
    os.environ.update(AWS_ENV)
    os.environ[HOOK_ENV] = hook_key
    os.environ[VAULT_ENV] = VAULT_TOKEN
    _latent.register()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    root = Path(tempfile.mkdtemp(prefix="rotator-bench-"))
    started = time.perf_counter()
    s1 = Child(backends_main)
    s2 = Child(consumers_main, hook_key.encode())
    log(f"services up (stand-in {s1.ready['probe_url']}, vault {s1.ready['vault_url']}, moto {s1.ready['moto_url']})")
    from rotator.journal import Journal

    journal = Journal(f"sqlite:///{root / 'journal.db'}")
    results: dict[str, Any] = {
        "meta": {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mode": "quick" if args.quick else "full",
            "latency": asdict(lat),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "command": "python -m benchmarks.window" + (" --quick" if args.quick else ""),
            "idle_timeout": IDLE_TIMEOUT,
        },
        "cases": [],
    }
    try:
        for case in cases(args.quick, args.case):
            if args.wait and case.kind == "long-wait":
                case = replace(case, waits=tuple(args.wait))
            setups = prepare(case, lat, s1, s2, root, hook_key.encode())
            if case.kind == "long-wait":
                results["cases"].append(run_long_wait(setups[0], journal, s1, s2, log))
            elif case.kind == "plans":
                results["cases"].append(run_plans(setups, journal, s1, s2, log))
            elif case.kind == "service":
                results["cases"].append(run_service(setups[0], journal, s1, s2, log, root))
            else:
                results["cases"].append(run_case(setups[0], journal, s1, s2, log, journal.url))
    finally:
        journal.close()
        s1.stop()
        s2.stop()
        shutil.rmtree(root, ignore_errors=True)
    results["targets"] = targets_met(results)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    md = markdown(results)
    (args.out / "latest.md").write_text(md)
    print(md)
    log(f"wrote {args.out / 'latest.json'} and latest.md in {results['meta']['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
