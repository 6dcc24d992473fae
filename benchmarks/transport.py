"""CPU per request of the HTTP clients rotator could put under its plugins, side by side.

    python -m benchmarks.transport              # 1,000 origins, 3 rounds each
    python -m benchmarks.transport --origins 200

What it does: a child process listens on N loopback ports (one origin each, as N
consumers are) and answers every request at once with a small JSON body.  This
process opens a keep-alive connection to each, then sends one signed-sized POST to
every origin at once, three rounds, and divides its own CPU time
(``time.process_time``: this process only, the server's CPU is not counted) by the
requests.  The variants, in one run, alternating order:

* httpx's own transport (httpcore, h11, anyio), one pool per origin as rotator had;
* httpx over rotator.transport.AiohttpTransport (`PluginContext.http` today);
* `PluginContext.send` (the same transport without httpx's models);
* aiohttp alone (the floor for an asyncio client in Python).

Writes results/transport.{json,md}.  Nothing in it is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
BODY = b'{"secret":"bench","fingerprint":"0123456789abcdef","rotation_id":"r","timestamp":1}'
HEADERS = {"X-Rotator-Signature": "t=1,v1=" + "0" * 64, "Content-Type": "application/json"}

SERVER = r"""
import asyncio, sys
BODY = b'{"fingerprint":"0123456789abcdef"}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
class Answer(asyncio.Protocol):
    def connection_made(self, transport): self.t, self.buf = transport, b""
    def data_received(self, data):
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in self.buf[:end].lower().split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            self.t.write(ANSWER)
async def main(n):
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(Answer, "127.0.0.1", 0, backlog=1024) for _ in range(n)]
    print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    await asyncio.Event().wait()
asyncio.run(main(int(sys.argv[1])))
"""


async def _fan(urls: list[str], one: Callable[[str], Awaitable[object]], rounds: int) -> dict[str, float]:
    await asyncio.gather(*(one(u) for u in urls))  # connections opened, as arm opens them
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        await asyncio.gather(*(one(u) for u in urls))
    n = rounds * len(urls)
    return {
        "cpu_ms_per_request": (time.process_time() - cpu) / n * 1000,
        "wall_ms_per_round": (time.perf_counter() - wall) / rounds * 1000,
    }


async def _httpcore(urls: list[str], rounds: int) -> dict[str, float]:
    import httpx

    class PerOrigin(httpx.AsyncBaseTransport):
        """One httpcore pool per origin and one TLS context, as rotator had before rotator.transport."""

        def __init__(self) -> None:
            self.ssl = httpx.create_ssl_context()
            self.pools: dict[Any, httpx.AsyncHTTPTransport] = {}

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            key = (request.url.raw_scheme, request.url.raw_host, request.url.port)
            pool = self.pools.get(key) or self.pools.setdefault(key, httpx.AsyncHTTPTransport(verify=self.ssl))
            return await pool.handle_async_request(request)

        async def aclose(self) -> None:
            await asyncio.gather(*(p.aclose() for p in self.pools.values()))

    client = httpx.AsyncClient(timeout=10, transport=PerOrigin())

    async def one(u: str) -> None:
        (await client.post(u, content=BODY, headers=HEADERS)).json()

    try:
        return await _fan(urls, one, rounds)
    finally:
        await client.aclose()


async def _plugin(urls: list[str], rounds: int, *, lean: bool) -> dict[str, float]:
    from rotator.plugin import PluginContext

    ctx = PluginContext(max_threads=1)

    async def one(u: str) -> None:
        if lean:
            (await ctx.send("POST", u, content=BODY, headers=HEADERS, timeout=10)).json()
        else:
            (await ctx.http.post(u, content=BODY, headers=HEADERS)).json()

    try:
        return await _fan(urls, one, rounds)
    finally:
        await ctx.aclose()


async def _aiohttp(urls: list[str], rounds: int) -> dict[str, float]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=3600))

    async def one(u: str) -> None:
        async with session.post(u, data=BODY, headers=HEADERS) as r:
            await r.json()

    try:
        return await _fan(urls, one, rounds)
    finally:
        await session.close()


VARIANTS: dict[str, Callable[[list[str], int], Awaitable[dict[str, float]]]] = {
    "httpx, its own transport (httpcore), a pool per origin": _httpcore,
    "httpx over rotator.transport (PluginContext.http)": functools.partial(_plugin, lean=False),
    "PluginContext.send (same transport, no httpx models)": functools.partial(_plugin, lean=True),
    "aiohttp alone": _aiohttp,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.transport", description=__doc__.split("\n\n")[0])
    ap.add_argument("--origins", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2, help="runs of every variant, alternating order")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.origins)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        urls = [f"http://127.0.0.1:{p}/reload" for p in server.stdout.readline().split()]
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
        load = [os.getloadavg()[0]]
        for i in range(args.repeat):
            order = list(VARIANTS) if i % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                runs[name].append(asyncio.run(VARIANTS[name](urls, args.rounds)))
        load.append(os.getloadavg()[0])
    finally:
        server.kill()
    rows = []
    floor = min(r["cpu_ms_per_request"] for r in runs["aiohttp alone"])
    for name, rs in runs.items():
        cpu = sorted(r["cpu_ms_per_request"] for r in rs)
        rows.append({"client": name, "cpu_ms_per_request": cpu, "over_aiohttp": round(min(cpu) / floor, 2)})
    results = {
        "meta": {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "origins": args.origins,
            "rounds": args.rounds,
            "repeat": args.repeat,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1min": load,
        },
        "clients": rows,
    }
    md = [
        f"{args.origins} origins, one keep-alive connection each, {args.rounds} rounds of one POST to every "
        f"origin at once, {args.repeat} runs per client (alternating order); {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load {load[0]:.1f} / {load[1]:.1f}.",
        "",
        "| client | CPU per request (ms, each run) | / aiohttp alone |",
        "|---|---|---|",
    ]
    for row in rows:
        runs_text = ", ".join(f"{c:.3f}" for c in row["cpu_ms_per_request"])
        md.append(f"| {row['client']} | {runs_text} | {row['over_aiohttp']:.2f} |")
    text = "\n".join(md) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transport.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "transport.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
