"""`rotator serve` as a real process on loopback, driven over HTTP as the page and
an operator's script do: sign in, arm, reset the key in the (stand-in) dashboard,
paste a wrong key, paste the right one, follow the progress, read the metrics.

The service is a subprocess; the Adjutor stand-in and a webhook receiver run
in this process.  Everything the service prints is kept and searched for keys.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from rotator.registry import UnknownPlugin, consumer_class
from rotator.testing import plans
from rotator.testing._http import LoopbackServer
from rotator.testing.adjutor import AdjutorStandIn
from tests import forkserver
from tests.timing import scaled, wait_until

REPO = Path(__file__).resolve().parents[1]
TOKEN = "svc-test-" + secrets.token_hex(16)
HOOK_ENV = "ROTATOR_TEST_HOOK_KEY"
PLAN_NAME = "adjutor-svc"


def webhook_available() -> bool:
    try:
        consumer_class("webhook")
    except UnknownPlugin:
        return False
    return True


class HookReceiver:
    """A consumer's reload endpoint (or a chat webhook): records each POST's body,
    answers 200 with `answer`."""

    def __init__(self, answer: bytes = b"{}", path: str = "") -> None:
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # rotator's arm check: the reload URL exists
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                outer.bodies.append(self.rfile.read(n))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = LoopbackServer("127.0.0.1", 0, Handler).start_background("hook-receiver")
        self.url = self.server.url + path

    def stop(self) -> None:
        self.server.stop()


def write_env(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# service test\nAPP_NAME=svc\nADJUTOR_API_KEY={key}\nLOG_LEVEL=info\n")
    path.chmod(0o600)


def write_plan(
    root: Path,
    standin: AdjutorStandIn,
    *,
    hook_url: str | None = None,
    schedules: list[dict[str, Any]] | None = None,
    name: str = PLAN_NAME,
    **secret: Any,
) -> Path:
    """A plan like `rotator demo`'s: three .env stores, and a webhook consumer when
    that plugin is installed.  `secret`: more keys of ``[secret]``."""
    key = standin.current_key
    for sub in ("store/adjutor.env", "api/.env", "worker/.env"):
        write_env(root / sub, key)
    consumers = []
    if hook_url:
        consumers.append(plans.webhook("api", f"{hook_url}/reload", hmac_env=HOOK_ENV, reads_from=["api-env"]))
    plan = root / "plans" / f"{name}.toml"
    plan.parent.mkdir(parents=True, exist_ok=True)
    return plans.write_plan(
        plan,
        plans.plan(
            name,
            description="Adjutor key for the service tests",
            max_age_days=90,
            **secret,
            probe=plans.adjutor_probe(standin.models_url, check_old_key=True, retries=0),
            backends=[
                plans.envfile("store", root / "store/adjutor.env", primary=True),
                plans.envfile("api-env", root / "api/.env"),
                plans.envfile("worker-env", root / "worker/.env"),
            ],
            consumers=consumers,
            schedules=schedules or [],
        ),
    )


def env_key(path: Path) -> str | None:
    for line in path.read_text().splitlines():
        if line.startswith("ADJUTOR_API_KEY="):
            return line.split("=", 1)[1].strip().strip("'\"")
    return None


class ServiceProc:
    """`python -m rotator serve ...` with everything it prints kept."""

    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, token: str | None = TOKEN, own_pid: bool = False
    ) -> None:
        """`own_pid`: exec'd, so `proc.pid` is the service's (a lock's PID); else through the fork server."""
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", HOOK_ENV: "hook-key-" + "x" * 24, **(env or {})}
        full_env.pop("ROTATOR_API_TOKEN", None)
        if token is not None:
            full_env["ROTATOR_API_TOKEN"] = token
        self.proc = subprocess.Popen(
            [*forkserver.command(own_pid), "serve", "--port", "0", *args],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._url: str | None = None
        self._ready = threading.Event()
        self._pumps = [
            threading.Thread(target=self._pump, args=(s,), daemon=True) for s in (self.proc.stdout, self.proc.stderr)
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)
            if "listening on http://" in line:
                self._url = json.loads(line)["url"].rstrip("/")
            if "Application startup complete" in line:
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 20.0) -> str:
        if not self._ready.wait(scaled(timeout)) or self._url is None or self.proc.poll() is not None:
            raise AssertionError(f"rotator serve did not start:\n{self.output()}")
        return self._url

    @property
    def url(self) -> str:
        return self.wait_ready()

    def output(self) -> str:
        return "".join(self.lines)

    def drained(self, timeout: float = 10.0) -> str:
        """Everything the exited process printed: its pipes read to the end (on a busy machine
        the pump threads may still be reading when `wait` returns)."""
        for pump in self._pumps:
            pump.join(timeout)
        return self.output()

    def client(self, token: str | None = TOKEN, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"rotator serve did not stop on SIGTERM:\n{self.output()}") from None
        self.drained()
        return self.proc.returncode


class SSE:
    """Follows /api/rotations/ID/events in a thread; keeps each (event, data)."""

    def __init__(self, svc: ServiceProc, rid: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.raw: list[str] = []
        self.ended = threading.Event()
        self._client = svc.client()
        self._rid = rid
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        kind = "message"
        try:
            with self._client.stream("GET", f"/api/rotations/{self._rid}/events") as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                for line in resp.iter_lines():
                    self.raw.append(line)
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((kind, json.loads(line[6:])))
                        if kind == "end":
                            break
        finally:
            self.ended.set()
            self._client.close()

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    def wait(self, kind: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            for k, d in self.events:
                if k == kind:
                    return d
            time.sleep(0.01)
        raise AssertionError(f"no {kind!r} event; got {self.kinds()}")


@pytest.fixture
def hook() -> Iterator[HookReceiver | None]:
    if not webhook_available():
        yield None
        return
    h = HookReceiver()
    yield h
    h.stop()


@pytest.fixture
def svc_setup(tmp_path: Path, standin: AdjutorStandIn, hook: HookReceiver | None) -> dict[str, Any]:
    plan = write_plan(tmp_path, standin, hook_url=hook.url if hook else None)
    return {"root": tmp_path, "plan": plan, "db": f"sqlite:///{tmp_path / 'journal.db'}"}


@pytest.fixture
def service(svc_setup: dict[str, Any]) -> Iterator[ServiceProc]:
    svc = ServiceProc(["--plans", str(svc_setup["plan"].parent), "--db", svc_setup["db"]])
    svc.wait_ready()
    yield svc
    svc.stop()


def assert_no_key(texts: list[str], *keys: str) -> None:
    for key in keys:
        for text in texts:
            assert key not in text, "a key leaked into a response or the log"


# -- tests ---------------------------------------------------------------------
def test_refuses_to_start_without_a_token(svc_setup: dict[str, Any]) -> None:
    svc = ServiceProc(["--plans", str(svc_setup["plan"])], token=None)
    assert svc.proc.wait(20) == 2
    out = svc.drained().strip().splitlines()
    assert len(out) == 1, out
    assert "no API token" in out[0] and "ROTATOR_API_TOKEN" in out[0]
    weak = ServiceProc(["--plans", str(svc_setup["plan"])], token="short")
    assert weak.proc.wait(20) == 2
    assert "too weak" in weak.drained()


def test_health_is_open_everything_else_needs_the_token(service: ServiceProc) -> None:
    with service.client(token=None) as anon:
        r = anon.get("/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        for path in ("/api/plans", "/metrics", "/api/history", f"/api/plans/{PLAN_NAME}"):
            r = anon.get(path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert anon.post(f"/api/plans/{PLAN_NAME}/arm", json={}).status_code == 401
        # The page and its static files hold nothing secret: they load without the token.
        page = anon.get("/")
        assert page.status_code == 200 and 'src="/static/app.js"' in page.text
        assert "<script>" not in page.text  # no inline script (the CSP would refuse it anyway)
        assert anon.get("/static/app.js").status_code == 200
    with service.client(token="wrong-" + TOKEN) as bad:
        assert bad.get("/api/plans").status_code == 401
    with service.client() as c:
        r = c.get("/api/plans")
        assert r.status_code == 200
        plan = r.json()["plans"][0]
        assert plan["name"] == PLAN_NAME and plan["primary"] == "store"
        assert plan["key_age"]["status"] == "unknown"
        for resp in (r, c.get("/"), c.get("/healthz")):
            csp = resp.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert resp.headers["x-content-type-options"] == "nosniff"
            assert resp.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"


def test_state_changes_need_json_and_same_origin(service: ServiceProc) -> None:
    with service.client() as c:
        # What an HTML form could send: refused before anything is armed.
        r = c.post(f"/api/plans/{PLAN_NAME}/arm", content=b"a=b", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        r = c.post(f"/api/plans/{PLAN_NAME}/arm", json={}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        r = c.post(f"/api/plans/{PLAN_NAME}/arm", json={}, headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403
        assert c.get("/api/plans").json()["plans"][0]["armed_rotation"] is None


def test_body_over_the_limit_is_413(service: ServiceProc) -> None:
    with service.client() as c:
        big = json.dumps({"key": "sk_test_" + "a" * (70 * 1024)})
        r = c.post("/api/rotations/nope/key", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        # Chunked, with no Content-Length to go by.
        chunks = (big[i : i + 8192].encode() for i in range(0, len(big), 8192))
        r = c.post("/api/rotations/nope/key", content=chunks, headers={"Content-Type": "application/json"})
        assert r.status_code == 413
    assert service.proc.poll() is None


def test_rotation_through_the_api(
    service: ServiceProc, svc_setup: dict[str, Any], standin: AdjutorStandIn, hook: HookReceiver | None
) -> None:
    root = svc_setup["root"]
    old_key = standin.current_key
    bodies: list[str] = []
    with service.client() as c:
        # Arm: every target checked before the dashboard is touched.
        r = c.post(f"/api/plans/{PLAN_NAME}/arm", json={"reason": "test", "operator": "ada"})
        bodies.append(r.text)
        assert r.status_code == 201, r.text
        armed = r.json()
        rid = armed["id"]
        assert armed["state"] == "armed"
        assert {p["target"] for p in armed["preflight"]} >= {"store", "api-env", "worker-env"}
        assert all(p["ok"] is not False for p in armed["preflight"])
        assert any("Reset app key" in line for line in armed["instruction"])
        # A second arm of the same plan is refused while this one waits.
        again = c.post(f"/api/plans/{PLAN_NAME}/arm", json={})
        assert again.status_code == 409 and again.json()["rotation"] == rid

        sse = SSE(service, rid)
        sse.wait("armed")  # the arm's events are replayed to a late subscriber

        new_key = standin.reset()  # the operator presses "Reset app key"
        before = {p: (root / p).read_bytes() for p in ("store/adjutor.env", "api/.env", "worker/.env")}

        # A wrong key: refused by the probe, nothing written, still armed.
        wrong = new_key[:-1] + ("x" if new_key[-1] != "x" else "y")
        r = c.post(f"/api/rotations/{rid}/key", json={"key": wrong})
        bodies.append(r.text)
        assert r.status_code == 422, r.text
        assert "refused" in r.json()["rotation"]["last_refusal"]["message"]
        assert r.json()["rotation"]["state"] == "armed"
        assert {p: (root / p).read_bytes() for p in before} == before
        r = c.get(f"/api/rotations/{rid}")
        bodies.append(r.text)
        assert r.json()["state"] == "armed"
        sse.wait("refused")

        # Not a key at all (paste hygiene): rejected, still armed.
        r = c.post(f"/api/rotations/{rid}/key", json={"key": "sk_test_abc def"})
        bodies.append(r.text)
        assert r.status_code == 422 and "whitespace" in r.json()["error"]

        # The right key, pasted with the usual junk around it.
        r = c.post(f"/api/rotations/{rid}/key", json={"key": f"  {new_key}\n"})
        bodies.append(r.text)
        assert r.status_code == 200, r.text
        report = r.json()["report"]
        assert report["state"] == "done" and report["exit_code"] == 0
        assert report["window_seconds"] is not None and report["window_seconds"] > 0
        assert report["old_key_check"]["revoked"] is True  # the old key was refused
        statuses = {t["name"]: t["status"] for t in report["targets"]}
        expected = {"store", "api-env", "worker-env"} | ({"api"} if hook else set())
        assert set(statuses) == expected
        assert all(s == "ok" for s in statuses.values()), statuses

        # The live view: each target went running -> ok, then the report, then the end.
        assert sse.ended.wait(20)
        kinds = sse.kinds()
        assert kinds.index("armed") < kinds.index("refused") < kinds.index("report") < kinds.index("end")
        ok_targets = {d["target"] for k, d in sse.events if k == "progress" and d["status"] == "ok"}
        assert expected <= ok_targets
        final = dict(sse.events)["report"]["report"]
        assert final["new_fingerprint"] == report["new_fingerprint"]

        for p in ("store/adjutor.env", "api/.env", "worker/.env"):
            assert env_key(root / p) == new_key
            assert "APP_NAME=svc" in (root / p).read_text()  # the other lines kept
        if hook:
            assert len(hook.bodies) == 1
            assert json.loads(hook.bodies[0])["fingerprint"] == report["new_fingerprint"]

        r = c.get(f"/api/rotations/{rid}")
        bodies.append(r.text)
        assert r.json()["state"] == "finished"
        r = c.get("/api/history")
        bodies.append(r.text)
        row = next(x for x in r.json()["rotations"] if x["id"] == rid)
        assert row["state"] == "done" and row["new_fp"] == report["new_fingerprint"]
        assert row["operator"].startswith("ada")
        r = c.get("/api/plans")
        bodies.append(r.text)
        plan = r.json()["plans"][0]
        assert plan["fingerprint"] == report["new_fingerprint"]
        assert plan["key_age"]["status"] == "ok" and plan["last_rotation"]["id"] == rid

        metrics = c.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        m = metrics.text
        assert f'rotator_rotation_window_seconds_count{{plan="{PLAN_NAME}"}} 1.0' in m
        assert f'rotator_last_successful_rotation_timestamp_seconds{{plan="{PLAN_NAME}"}}' in m
        assert f'rotator_backend_drift{{backend="api-env",plan="{PLAN_NAME}"}} 0.0' in m
        assert f'rotator_key_age_seconds{{plan="{PLAN_NAME}"}}' in m
        assert 'step="probe"' in m and 'step="fan_out"' in m
        bodies.append(m)

    service.stop()
    assert_no_key([*bodies, *sse.raw, service.output()], old_key, new_key, wrong)


def test_sync_endpoint_reports_then_repairs_drift(service: ServiceProc, svc_setup: dict[str, Any]) -> None:
    root = svc_setup["root"]
    key = env_key(root / "store/adjutor.env")
    write_env(root / "worker/.env", "sk_test_drifted0000000000")
    with service.client() as c:
        r = c.post(f"/api/plans/{PLAN_NAME}/sync", json={"check": True})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "drift"
        assert env_key(root / "worker/.env") == "sk_test_drifted0000000000"
        m = c.get("/metrics").text
        assert f'rotator_backend_drift{{backend="worker-env",plan="{PLAN_NAME}"}} 1.0' in m
        assert c.get("/api/plans").json()["plans"][0]["drifted"] == ["worker-env"]

        r = c.post(f"/api/plans/{PLAN_NAME}/sync", json={})
        assert r.status_code == 200 and r.json()["state"] == "done", r.text
        assert env_key(root / "worker/.env") == key
        m = c.get("/metrics").text
        assert f'rotator_backend_drift{{backend="worker-env",plan="{PLAN_NAME}"}} 0.0' in m
        assert f'rotator_last_successful_sync_timestamp_seconds{{plan="{PLAN_NAME}"}}' in m
        assert c.get("/api/plans").json()["plans"][0]["drifted"] == []
        kinds = [(x["kind"], x["state"]) for x in c.get("/api/history").json()["rotations"]]
        # The drift check wrote nothing: journaled as a check, not as a sync.
        assert ("check", "drift") in kinds and ("sync", "done") in kinds
        assert ("sync", "drift") not in kinds


def test_an_armed_rotation_without_a_key_is_closed(svc_setup: dict[str, Any]) -> None:
    svc = ServiceProc(["--plans", str(svc_setup["plan"]), "--db", svc_setup["db"], "--arm-timeout", "1"])
    try:
        with svc.client() as c:
            rid = c.post(f"/api/plans/{PLAN_NAME}/arm", json={}).json()["id"]
            sse = SSE(svc, rid)
            closed = sse.wait("closed", timeout=15)
            assert "no key" in closed["reason"]
            assert sse.ended.wait(5)
            r = c.get(f"/api/rotations/{rid}")
            assert r.json()["state"] == "closed"
            assert c.post(f"/api/rotations/{rid}/key", json={"key": "sk_test_x"}).status_code == 409
            row = next(x for x in c.get("/api/history").json()["rotations"] if x["id"] == rid)
            assert row["state"] == "aborted"
            # The lock is released: the plan can be armed again.
            assert c.post(f"/api/plans/{PLAN_NAME}/arm", json={}).status_code == 201
    finally:
        assert svc.stop() == 0


def test_sigterm_lets_a_rotation_in_flight_finish(svc_setup: dict[str, Any], standin: AdjutorStandIn) -> None:
    svc = ServiceProc(["--plans", str(svc_setup["plan"]), "--db", svc_setup["db"]])
    root = svc_setup["root"]
    with svc.client() as c:
        rid = c.post(f"/api/plans/{PLAN_NAME}/arm", json={}).json()["id"]
        new_key = standin.reset()
        standin.latency = 1.0  # the probe (and the old-key check) now take a second each
        result: dict[str, Any] = {}

        def paste() -> None:
            with svc.client() as c2:
                r = c2.post(f"/api/rotations/{rid}/key", json={"key": new_key})
                result["status"], result["body"] = r.status_code, r.json()

        t = threading.Thread(target=paste)
        t.start()
        wait_until("the new key's probe in flight", lambda: standin.serving(new_key))
        svc.proc.send_signal(signal.SIGTERM)

        def draining() -> bool:  # no new work is taken while the rotation finishes
            with svc.client() as c3:
                try:
                    return c3.get("/healthz").status_code == 503
                except httpx.TransportError:
                    return True  # or the listener is already closed

        wait_until("the service draining", draining)
        t.join(30)
        standin.latency = 0.0
    assert svc.stop() == 0
    assert result["status"] == 200, result
    assert result["body"]["report"]["state"] == "done"
    assert env_key(root / "worker/.env") == new_key
    assert "stopped" in svc.output()
