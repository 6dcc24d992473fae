"""(c) the parallel floor: the requests after the key as concurrently as their dependencies allow, no rotator code."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from benchmarks._services import AWS_REGION, VAULT_TOKEN
from benchmarks.window.cases import POLL, VARIABLE, Setup
from benchmarks.window.child import Child, WindowCpu
from benchmarks.window.envfiles import write_atomically
from benchmarks.window.run_runbook import signed_reload


async def _parallel_floor(setup: Setup, s1: Child, s2: Child) -> dict[str, Any]:
    """The requests a perfect orchestrator must make after the key, as concurrently as the
    dependencies allow, with the leanest clients, built and warmed before the key."""
    from concurrent.futures import ThreadPoolExecutor

    import aiohttp
    import boto3
    import hvac
    from rotator_plugins.envfile import update_dotenv

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
        write_atomically(p, update_dotenv(p.read_text(), VARIABLE, key))
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
