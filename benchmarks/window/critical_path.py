"""The shortest possible window: from the injected latencies, and from each request timed alone."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._services import AWS_REGION, VAULT_TOKEN
from benchmarks.window.cases import VARIABLE, Case, Latency, Setup
from benchmarks.window.child import Child
from benchmarks.window.envfiles import write_atomically


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
    from rotator_plugins.envfile import update_dotenv

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
        write_atomically(env, update_dotenv(env.read_text(), VARIABLE, "y"))

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
