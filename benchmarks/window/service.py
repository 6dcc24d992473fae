"""The headline plan through `rotator serve`'s HTTP API, as an operator runs it."""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.window.cases import Setup
from benchmarks.window.child import Child


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
        env = {**os.environ, "ROTATOR_API_TOKEN": self.token, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
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
