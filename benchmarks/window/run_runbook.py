"""(b) the runbook: what an operator's script does after the reset, one call after another."""

from __future__ import annotations

import json
import time
from typing import Any

from benchmarks._services import AWS_REGION, VAULT_TOKEN
from benchmarks.window.cases import POLL, VARIABLE, Setup
from benchmarks.window.child import Child
from benchmarks.window.envfiles import write_atomically


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
    from rotator_plugins.envfile import update_dotenv

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
        write_atomically(p, update_dotenv(p.read_text(), VARIABLE, key))
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
