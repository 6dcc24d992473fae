"""`rotator proxy` beside direct calls and nginx: added latency, throughput, and a reset.

    python -m benchmarks.proxy            # about 2 minutes (each reset 3 times)
    python -m benchmarks.proxy --quick    # about 40 s

Everything on loopback against one Adjutor stand-in (its own process,
``python -m rotator.testing.adjutor``):

* **direct**: the client sends the key itself;
* **rotator proxy**: a real ``rotator proxy PLAN`` process; the client sends no key;
* **nginx**: Debian's nginx (one worker, upstream keep-alive) with
  ``proxy_set_header Authorization "Bearer <key>"``, the proxy a user would pick
  instead (its key sits in its config file; changing it needs a reload).

Latency: one keep-alive connection, one request at a time, round-robin over the
three paths so drift hits all alike; added = path minus direct, at p50 and p99.
Throughput: 50 concurrent clients for a few seconds per path, by Debian's `wrk`
(2 threads) where installed, else an aiohttp client in this process.  The stand-in is a
threaded Python server and caps every path near its own rate, so two more rows put
nginx's canned answer (``return 200``) upstream instead: direct, and through a
second rotator proxy, to show the proxy's own ceiling.  The load generator
shares the 2 cores with the stand-in and the proxies, so throughput is the whole
machine's, not the proxy's alone.

Across a reset (rotator proxy only): 10 clients call continuously; the stand-in's
key is reset (the old one dies at once) and the new key handed to the proxy over
its key channel after the operator's share: 0.1 s (clipboard speed: the clipboard
source's measured median is 97 ms) and 2 s (a paste).  Failed calls, and per held
call its time beyond a normal call, against the outage (reset -> key in the proxy).
Writes results/proxy.json and results/proxy.md.  Nothing in it is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/proxy.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

import aiohttp

from rotator.testing import plans

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = "/v2/decisioning/models"
GOALS = {"p50_added_ms": 0.5, "p99_added_ms": 2.0, "throughput": 2000, "hold_over_outage_ms": 50}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmarks.proxy: {what} did not start")
        time.sleep(0.05)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Services:
    """The stand-in, rotator proxy and nginx, as child processes in a private temp dir."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        ready = self.tmp / "standin.json"
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "rotator.testing.adjutor", "--port", "0", "--ready-file", str(ready)],
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for(ready.exists, "the stand-in")
        info = json.loads(ready.read_text())
        self.api, self.admin, self.key = info["url"], info["admin_token"], info["key"]
        self._start_nginx()
        # A second proxy in front of nginx's canned answer: what the proxy does when the
        # stand-in (a threaded Python server) is not the ceiling.
        self.proxy_static = self._start_proxy(self.static, "proxy-static")
        self.proxy = self._start_proxy()

    def _start_proxy(self, upstream: str | None = None, name: str = "proxy") -> str:
        env = self.tmp / ".env"
        env.write_text(f"ADJUTOR_API_KEY={self.key}\n")
        self.token = secrets.token_urlsafe(24)
        token_file = self.tmp / "channel-token"
        token_file.write_text(self.token)
        self.channel = self.tmp / f"{name}-key.sock"
        port = free_port()
        data = plans.plan(
            "bench",
            backends=[plans.envfile("store", env, primary=True)],
            probe=plans.adjutor_probe(self.api + MODELS),
        )
        data["proxy"] = {
            "listen": f"127.0.0.1:{port}",
            "channel": f"unix:{self.channel}",
            "channel_token": {"file": str(token_file)},
            **({"upstream": upstream} if upstream else {}),
        }
        plan = plans.write_plan(self.tmp / f"{name}.toml", data)
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "rotator", "proxy", str(plan)], stderr=(self.tmp / f"{name}.log").open("wb")
            )
        )
        wait_for(lambda: listening(port), "rotator proxy")
        return f"http://127.0.0.1:{port}"

    def _start_nginx(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        port, static = free_port(), free_port()
        upstream = self.api.removeprefix("http://")
        temp = self.tmp / "nginx"
        temp.mkdir()
        conf = temp / "nginx.conf"
        conf.write_text(
            f"""worker_processes 1;
daemon off;
pid {temp}/nginx.pid;
error_log {temp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy; fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
  upstream api {{ server {upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer {self.key}";
    }}
  }}
  server {{
    listen 127.0.0.1:{static};
    location / {{ default_type application/json; return 200 '{{"status":"success","data":[]}}'; }}
  }}
}}
"""
        )
        conf.chmod(0o600)
        self.procs.append(
            subprocess.Popen(
                [nginx, "-p", str(temp), "-c", str(conf), "-e", str(temp / "error.log")], stderr=subprocess.DEVNULL
            )
        )
        wait_for(lambda: listening(port), "nginx")
        self.nginx = f"http://127.0.0.1:{port}"
        self.static = f"http://127.0.0.1:{static}"

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


# -- the load ----------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(paths: dict[str, tuple[str, dict[str, str]]], n: int) -> dict[str, dict[str, float]]:
    """Per path: p50 and p99 in ms over `n` sequential requests, round-robin over the paths."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    sessions = {name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for name in paths}
    try:
        for i in range(n + 50):
            for name, (base, headers) in paths.items():
                started = time.perf_counter()
                async with sessions[name].get(base + MODELS, headers=headers) as r:
                    await r.read()
                    assert r.status == 200, (name, r.status)
                if i >= 50:  # the first ones warm the connections
                    times[name].append((time.perf_counter() - started) * 1000)
    finally:
        for s in sessions.values():
            await s.close()
    return {name: {"p50": _pct(t, 0.5), "p99": _pct(t, 0.99), "mean": statistics.fmean(t)} for name, t in times.items()}


async def throughput(base: str, headers: dict[str, str], clients: int, seconds: float) -> dict[str, float]:
    done = failed = 0
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client() -> None:
            nonlocal done, failed
            while time.perf_counter() < stop:
                try:
                    async with session.get(base + MODELS, headers=headers) as r:
                        await r.read()
                        done, failed = (done + 1, failed) if r.status == 200 else (done, failed + 1)
                except aiohttp.ClientError:
                    failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {"rps": done / elapsed, "failed": failed}


def throughput_wrk(
    wrk: str, tmp: Path, base: str, headers: dict[str, str], clients: int, seconds: float
) -> dict[str, Any]:
    """`wrk` (C, 2 threads): the load costs far less CPU than a Python client.  Headers go in a
    0600 Lua file, not argv (a key never goes in a process's arguments)."""
    script = tmp / "wrk.lua"
    script.write_text("".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items()))
    script.chmod(0o600)
    out = subprocess.run(
        [wrk, "-t2", f"-c{clients}", f"-d{seconds:g}s", "-s", str(script), base + MODELS],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    script.unlink()
    rps = float(out.split("Requests/sec:")[1].split()[0])
    failed = sum(int(line.split()[-1]) for line in out.splitlines() if line.strip().startswith("Non-2xx"))
    errors = [line.strip() for line in out.splitlines() if line.strip().startswith("Socket errors")]
    return {"rps": rps, "failed": failed, "socket_errors": errors, "tool": "wrk"}


async def across_reset(svc: Services, pause: float, clients: int = 10) -> dict[str, Any]:
    """Clients call through the proxy; reset; hand the key `pause` s later.  Failed calls and holds."""
    calls: list[tuple[float, float, int]] = []
    stop = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    async with session.get(svc.proxy + MODELS) as r:
                        await r.read()
                        status = r.status
                except aiohttp.ClientError:
                    status = 0
                calls.append((started, time.perf_counter(), status))
                await asyncio.sleep(0.005)

        tasks = [asyncio.ensure_future(client()) for _ in range(clients)]
        await asyncio.sleep(1.0)
        normal = statistics.median(e - s for s, e, _ in calls) if calls else 0.0
        async with session.post(svc.api + "/_admin/reset", headers={"X-Admin-Token": svc.admin}) as r:
            new_key = (await r.json())["key"]
        reset_at = time.perf_counter()
        await asyncio.sleep(pause)
        conn = aiohttp.UnixConnector(path=str(svc.channel))
        async with aiohttp.ClientSession(connector=conn) as channel:
            async with channel.put(
                "http://localhost/key", json={"key": new_key}, headers={"Authorization": f"Bearer {svc.token}"}
            ) as r:
                assert r.status == 200, r.status
        switched_at = time.perf_counter()
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks)
    outage = switched_at - reset_at
    held = [(s, e) for s, e, _ in calls if s < switched_at and e > reset_at + normal * 2]
    over = [((e - s) - normal) - outage for s, e in held]
    return {
        "pause_s": pause,
        "calls": len(calls),
        "failed": sum(1 for *_, st in calls if st != 200),
        "held": len(held),
        "outage_ms": outage * 1000,
        "longest_hold_ms": max(((e - s) - normal for s, e in held), default=0.0) * 1000,
        "worst_hold_over_outage_ms": max(over, default=0.0) * 1000,
    }


async def run(svc: Services, quick: bool) -> dict[str, Any]:
    paths = {
        "direct": (svc.api, {"Authorization": f"Bearer {svc.key}"}),
        "rotator proxy": (svc.proxy, {}),
        "nginx": (svc.nginx, {}),
        "canned answer (nginx), direct": (svc.static, {"Authorization": f"Bearer {svc.key}"}),
        "canned answer, through rotator proxy": (svc.proxy_static, {}),
    }
    lat = await latency(paths, 400 if quick else 1500)
    seconds = 3.0 if quick else 6.0
    wrk = shutil.which("wrk")
    if wrk:
        tput = {name: throughput_wrk(wrk, svc.tmp, base, h, 50, seconds) for name, (base, h) in paths.items()}
    else:  # Debian's `wrk` absent: a Python client, itself a large share of the CPU
        tput = {name: await throughput(base, h, 50, seconds) for name, (base, h) in paths.items()}
    resets = [await across_reset(svc, pause) for pause in (0.1, 2.0) for _ in range(1 if quick else 3)]
    # The stand-in's key changed: nginx still sends the old one (it would need a new config and a reload).
    return {"latency_ms": lat, "throughput": tput, "resets": resets}


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def render(result: dict[str, Any]) -> str:
    lat, tput = result["latency_ms"], result["throughput"]
    direct = lat["direct"]
    lines = [
        f"# rotator proxy: {result['when']}, {result['machine']}, load average before/after "
        f"{result['load_before']} / {result['load_after']}",
        "",
        "| path | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s (50 clients) | failed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in lat.items():
        base = lat["canned answer (nginx), direct"] if name.startswith("canned") else direct
        is_base = v is base
        added = "" if is_base else f"{v['p50'] - base['p50']:.3f}"
        added99 = "" if is_base else f"{v['p99'] - base['p99']:.3f}"
        t = tput[name]
        lines.append(
            f"| {name} | {v['p50']:.3f} | {v['p99']:.3f} | {added} | {added99} | {t['rps']:.0f} | {t['failed']} |"
        )
    p_add = lat["rotator proxy"]["p50"] - direct["p50"]
    n_add = lat["nginx"]["p50"] - direct["p50"]
    ratio = f"{p_add / n_add:.1f}x nginx's" if n_add > 0 else "n/a"
    lines += [
        "",
        f"Added p50: rotator proxy {p_add:.3f} ms = {ratio} ({n_add:.3f} ms).",
        "",
        "| across a reset | calls | failed | held | outage ms | longest hold ms | worst hold beyond outage ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["resets"]:
        label = "clipboard speed (0.1 s)" if r["pause_s"] < 1 else f"paste ({r['pause_s']:g} s)"
        lines.append(
            f"| {label} | {r['calls']} | {r['failed']} | {r['held']} | {r['outage_ms']:.0f} | "
            f"{r['longest_hold_ms']:.0f} | {r['worst_hold_over_outage_ms']:.1f} |"
        )
    lines += [
        "",
        f"Goals: added p50 <= {GOALS['p50_added_ms']} ms, p99 <= {GOALS['p99_added_ms']} ms, >= {GOALS['throughput']} "
        f"req/s, 0 failed calls, hold <= outage + {GOALS['hold_over_outage_ms']} ms.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter throughput runs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rotator-proxy-bench-") as tmp_dir:
        os.chmod(tmp_dir, 0o700)
        svc = Services(Path(tmp_dir))
        before = load_average()
        try:
            svc.start()
            result = asyncio.run(run(svc, args.quick))
        finally:
            svc.stop()
    result.update(
        when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        load_before=before,
        load_after=load_average(),
        quick=args.quick,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "proxy.json").write_text(json.dumps(result, indent=2) + "\n")
    text = render(result)
    (RESULTS / "proxy.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
