"""`rotator proxy` across a single-app reset, with real clients in three languages.

A real `rotator proxy PLAN` process forwards to the Adjutor stand-in; `curl` (a shell
loop), a Node program and Python `requests` call it continuously, alternating GET and
POST.  The app's key is reset (the old key dies at once) and the operator hands the new
key to a real `rotator rotate --key-stdin` 0, 2 or 10 s later; its `proxy` consumer puts
the key into the proxy over the key channel.  No call may fail, every POST is executed
once (counted by the stand-in), and no key appears in any output, log or file.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from rotator.secret import fingerprint
from rotator.testing import plans
from rotator.testing.adjutor import AdjutorStandIn
from tests import forkserver
from tests.timing import wait_until

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = Path(__file__).resolve().parent / "proxy_clients"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proxy:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    plan: Path
    channel: str
    token: Path

    def metrics(self) -> dict[str, float]:
        text = requests.get(f"{self.url}/metrics", timeout=5).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def write_setup(
    tmp: Path, api: AdjutorStandIn, *, probe_url: str | None = None, **proxy: Any
) -> tuple[Path, dict[str, Any]]:
    env = tmp / ".env"
    env.write_text(f"ADJUTOR_API_KEY={api.current_key}\n")
    env.chmod(0o600)
    token = tmp / "channel-token"
    token.write_text(secrets.token_urlsafe(24))
    token.chmod(0o600)
    channel = f"unix:{tmp}/key.sock"
    data = plans.plan(
        "adjutor",
        backends=[plans.envfile("store", env, primary=True)],
        consumers=[{"name": "api-proxy", "type": "proxy", "channel": channel, "token": {"file": str(token)}}],
        probe=plans.adjutor_probe(probe_url or api.models_url),
    )
    data["proxy"] = {
        "listen": f"127.0.0.1:{free_port()}",
        "channel": channel,
        "channel_token": {"file": str(token)},
        "upstream": api.url,
        **proxy,
    }
    return plans.write_plan(tmp / "plan.toml", data), data


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Any]:
    started: list[Proxy] = []

    def start(api: AdjutorStandIn, **proxy: Any) -> Proxy:
        plan, data = write_setup(tmp_path, api, **proxy)
        log = tmp_path / "proxy.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "rotator", "-v", "proxy", str(plan)], stderr=log.open("wb"), cwd=tmp_path
        )
        p = Proxy(
            "http://" + data["proxy"]["listen"],
            process,
            log,
            plan,
            data["proxy"]["channel"],
            Path(data["proxy"]["channel_token"]["file"]),
        )
        started.append(p)
        deadline = time.monotonic() + 20
        while "listening on" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.05)
        return p

    yield start
    for p in started:
        p.process.terminate()
        p.process.wait(timeout=10)


# --- the clients ----------------------------------------------------------------------------


@dataclass
class Call:
    status: str
    method: str
    id: str
    seconds: float
    end: float  # Unix time the answer came
    extra: str

    @property
    def start(self) -> float:
        return self.end - self.seconds


def start_clients(base: str, tmp: Path) -> tuple[dict[str, subprocess.Popen[bytes]], Path]:
    stop = tmp / "stop"
    node = shutil.which("node") or shutil.which("nodejs")
    assert node, "node is part of this test (Debian's nodejs)"
    argv = {
        "curl": ["sh", str(CLIENTS / "client.sh")],
        "node": [node, str(CLIENTS / "client.js")],
        "requests": [sys.executable, str(CLIENTS / "client_requests.py")],
    }
    procs = {
        name: subprocess.Popen(
            [*cmd, base, str(tmp / f"{name}.out"), str(stop), name], stderr=(tmp / f"{name}.err").open("wb")
        )
        for name, cmd in argv.items()
    }
    return procs, stop


def calls(tmp: Path, name: str) -> list[Call]:
    path = tmp / f"{name}.out"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        status, method, rid, seconds, end, extra = line.split(" ", 5)
        out.append(Call(status, method, rid, float(seconds), float(end), extra))
    return out


def wait_for_calls(tmp: Path, names: list[str], n: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while any(len(calls(tmp, name)) < n for name in names):
        assert time.monotonic() < deadline, {name: len(calls(tmp, name)) for name in names}
        time.sleep(0.05)


def leaked(tmp: Path, keys: list[str], *texts: str, skip: tuple[str, ...] = (".env",)) -> list[str]:
    """Where any of `keys` appears: a file under `tmp` (but the backend's own) or the journal's
    directory, or one of `texts`."""
    found = [f"output {i}" for i, text in enumerate(texts) if any(k in text for k in keys)]
    journal = Path(os.environ["ROTATOR_DATA_DIR"])
    for path in [*tmp.rglob("*"), *journal.rglob("*")]:
        if path.is_file() and path.name not in skip and not path.is_socket():
            data = path.read_bytes()
            found += [str(path) for k in keys if k.encode() in data]
    return found


# --- a single-app reset through the proxy -----------------------------------------------------

DELAYS = [0.0, 2.0, 10.0]
MATRIX: dict[tuple[str, float], tuple[int, float, float]] = {}


def switch_time(log: Path) -> float:
    """When the proxy took the new key (Unix time), from its log's "proxy key switched" line."""
    from datetime import datetime

    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{") and json.loads(line).get("event") == "proxy key switched":
            return datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00")).timestamp()
    raise AssertionError("the proxy never logged a key switch")


@pytest.mark.parametrize("delay", DELAYS, ids=[f"operator-{d:g}s" for d in DELAYS])
def test_a_reset_costs_no_failed_call(start_proxy: Any, tmp_path: Path, delay: float) -> None:
    api = AdjutorStandIn().start()
    try:
        old = api.current_key
        proxy = start_proxy(api)
        procs, stop = start_clients(proxy.url, tmp_path)
        names = list(procs)
        wait_for_calls(tmp_path, names, 6)

        rotate = subprocess.Popen(
            [*forkserver.command(), "rotate", str(proxy.plan), "--key-stdin", "--json"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        said: list[bytes] = []
        reader = threading.Thread(target=lambda: said.extend(iter(rotate.stderr.readline, b"")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        deadline = time.monotonic() + 60
        while not any(b"Armed." in line for line in said):  # the operator waits for "Armed." ...
            assert rotate.poll() is None and time.monotonic() < deadline, b"".join(said).decode()[-2000:]
            time.sleep(0.05)
        new = api.reset()  # ... clicks "Reset app key": the old key dies now ...
        reset_at = time.time()
        time.sleep(delay)  # ... and pastes the new key this much later
        handed_at = time.time()
        assert rotate.stdin is not None and rotate.stdout is not None
        rotate.stdin.write((new + "\n").encode())
        rotate.stdin.close()
        out = rotate.stdout.read()
        rotate.wait(timeout=60)
        reader.join(timeout=10)
        err = b"".join(said)
        assert rotate.returncode == 0, err.decode()[-2000:]
        switched_at = switch_time(proxy.log)
        assert switched_at >= handed_at
        report = json.loads(out)
        proxied = next(t for t in report["targets"] if t["name"] == "api-proxy")
        assert proxied["status"] == "ok" and proxied["fingerprint"] == fingerprint(new), proxied
        for name in names:  # each runs on after the switch
            wait_for_calls(tmp_path, [name], len(calls(tmp_path, name)) + 4)
        stop.touch()
        for p in procs.values():
            p.wait(timeout=60)

        metrics = proxy.metrics()
        posts = api.posts
        for name in names:
            seen = calls(tmp_path, name)
            failed = [c for c in seen if c.status != "200"]
            assert not failed, (name, failed[:5])
            # Held: sent before the key was handed over and still unanswered well after the
            # reset.  Each is answered once the key is in, not before (the API refuses the old key).
            # (0.5 s: a client's own clock reading may lag its answer on a loaded machine.)
            held = [c for c in seen if c.start < handed_at - 0.1 and c.end > reset_at + 0.5]
            across = [c for c in seen if c.start < switched_at and c.end > reset_at]  # overlapping the outage
            MATRIX[(name, delay)] = (len(failed), max((c.seconds for c in across), default=0.0), switched_at - reset_at)
            if delay > 0:
                assert held, f"{name}: no call waited across the {delay:g} s gap"
                assert all(c.end >= switched_at for c in held), (name, [c for c in held if c.end < switched_at])
            for c in (c for c in seen if c.method == "POST"):
                assert posts.get(c.id) == 1, (name, c, posts.get(c.id))
        assert api.post_mismatches == 0  # every replayed body reached the API byte for byte
        executed = {rid for rid in posts}
        answered = {c.id for n in names for c in calls(tmp_path, n) if c.method == "POST"}
        assert executed == answered  # nothing executed that no client saw answered
        assert metrics.get('rotator_proxy_unavailable_total{bound="deadline"}', 0) == 0
        if delay > 0:
            assert metrics["rotator_proxy_held_total"] >= len(names)
            assert metrics['rotator_proxy_replays_total{result="ok"}'] >= len(names)
            assert metrics['rotator_proxy_replays_total{result="refused"}'] == 0
        texts = (out.decode(), err.decode(), requests.get(f"{proxy.url}/metrics", timeout=5).text)
        proxy.process.terminate()
        proxy.process.wait(timeout=10)
        assert not leaked(tmp_path, [old, new], *texts)
    finally:
        api.stop()


@pytest.fixture(scope="module", autouse=True)
def _print_matrix() -> Iterator[None]:
    """After the module: the client x delay matrix the reset runs filled (shown with pytest -s)."""
    yield
    for (name, delay), (failed, longest, outage) in sorted(MATRIX.items()):
        print(
            f"MATRIX {name:8} delay {delay:4.0f} s: failed {failed}, longest call across the reset {longest:.3f} s "
            f"(reset -> proxy has the key: {outage:.3f} s)"
        )


# --- bounds -------------------------------------------------------------------------------------


def test_past_the_deadline_a_held_call_gets_503_with_retry_after(start_proxy: Any, tmp_path: Path) -> None:
    with AdjutorStandIn() as api:
        old = api.current_key
        proxy = start_proxy(api, hold_deadline=1.0, retry_after=7, max_body=1000)
        assert requests.get(f"{proxy.url}/v2/decisioning/models", timeout=5).status_code == 200
        new = api.reset()  # and nobody hands the proxy the new key

        started = time.monotonic()
        r = requests.post(
            f"{proxy.url}/v2/decisioning/models", json={"id": "x"}, headers={"X-Request-Id": "x"}, timeout=10
        )
        waited = time.monotonic() - started
        assert r.status_code == 503 and r.headers["Retry-After"] == "7"
        assert 1.0 <= waited < 5
        assert "x" not in api.posts
        # The key is known dead now: a body too large to hold is not held (nor sent with a dead key).
        started = time.monotonic()
        big = requests.post(f"{proxy.url}/v2/decisioning/models", data=b"{" + b" " * 5000 + b"}", timeout=10)
        assert big.status_code == 503 and big.headers["Retry-After"] == "7"
        assert time.monotonic() - started < 0.9
        # A plain curl sees the same.
        curl = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-D", "-", f"{proxy.url}/v2/decisioning/models"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert curl.stdout.startswith("HTTP/1.1 503") and "retry-after: 7" in curl.stdout.lower()
        m = proxy.metrics()
        assert m['rotator_proxy_unavailable_total{bound="deadline"}'] >= 2
        assert m['rotator_proxy_unavailable_total{bound="body"}'] == 1
        assert m['rotator_proxy_key_state{state="dead"}'] == 1
        assert not leaked(tmp_path, [old, new], r.text, big.text, curl.stdout)


def test_a_401_with_a_live_key_goes_back_unchanged(start_proxy: Any, tmp_path: Path) -> None:
    """The API refuses one call but the probe accepts the key (an endpoint the app lacks, a
    passing fault): that 401 goes back as it came, and nothing else is held."""
    with AdjutorStandIn() as probe_api, AdjutorStandIn() as refusing:
        # The proxy forwards to `refusing` (which knows no key of ours) and probes `probe_api`,
        # whose key it holds: every call is refused while the key is live.
        proxy = start_proxy(probe_api, upstream=refusing.url)
        r = requests.get(f"{proxy.url}/v2/decisioning/models", timeout=10)
        assert r.status_code == 401 and r.json()["message"] == "Invalid token"
        assert "X-Rotator-Replayed" not in r.headers
        m = proxy.metrics()
        assert m['rotator_proxy_probes_total{result="live"}'] == 1
        assert m['rotator_proxy_key_state{state="live"}'] == 1
        assert m['rotator_proxy_unavailable_total{bound="deadline"}'] == 0


# --- alternating: a promote switches keys atomically ---------------------------------------------


def test_a_switch_lets_requests_in_flight_finish_on_the_old_key(start_proxy: Any, tmp_path: Path) -> None:
    with AdjutorStandIn(app="blue") as api:
        green = api.add_app("green")
        proxy = start_proxy(api)
        assert requests.get(f"{proxy.url}/v2/decisioning/models", timeout=5).json()["meta"]["app"] == "blue"
        api.latency = 0.6
        slow: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: slow.update(r=requests.get(f"{proxy.url}/v2/decisioning/models", timeout=10))
        )
        t.start()
        wait_until("the slow call in flight with blue's key", lambda: api.serving(api.key_of("blue")))
        answer = channel_put(proxy, green)
        t.join()
        api.latency = 0.0
        assert answer["state"] == "live"
        assert slow["r"].status_code == 200 and slow["r"].json()["meta"]["app"] == "blue"
        after = requests.get(f"{proxy.url}/v2/decisioning/models", timeout=5)
        assert after.json()["meta"]["app"] == "green"
        assert proxy.metrics()["rotator_proxy_key_switches_total"] == 2


def channel_put(proxy: Proxy, key: str, token: str | None = None) -> dict[str, Any]:
    sock_path = proxy.channel.removeprefix("unix:")
    token = token if token is not None else proxy.token.read_text()
    r = subprocess.run(
        [
            "curl",
            "-sS",
            "--unix-socket",
            sock_path,
            "-X",
            "PUT",
            "-H",
            f"Authorization: Bearer {token}",
            "--data-binary",
            "@-",
            "http://localhost/key",
        ],
        input=json.dumps({"key": key}),
        capture_output=True,
        text=True,
        timeout=10,
    )
    return json.loads(r.stdout)


def test_the_key_channel_wants_its_token_and_a_private_socket(start_proxy: Any, tmp_path: Path) -> None:
    with AdjutorStandIn() as api:
        proxy = start_proxy(api)
        sock_path = Path(proxy.channel.removeprefix("unix:"))
        assert sock_path.stat().st_mode & 0o777 == 0o600
        refused = channel_put(proxy, "sk_test_" + "x" * 40, token="wrong")
        assert refused == {"error": "missing or wrong channel token"}
        assert requests.get(f"{proxy.url}/v2/decisioning/models", timeout=5).status_code == 200  # key unchanged
        proxy.process.terminate()
        assert proxy.process.wait(timeout=10) == 0  # SIGTERM: a clean stop
        assert not sock_path.exists()


def test_a_plan_listening_beyond_loopback_is_refused(tmp_path: Path) -> None:
    with AdjutorStandIn() as api:
        plan, _ = write_setup(tmp_path, api, listen="0.0.0.0:8088")
    r = subprocess.run([*forkserver.command(), "check", str(plan)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "is not loopback" in r.stderr and "Traceback" not in r.stderr


# --- the sidecar recipe -----------------------------------------------------------------------------


def test_the_sidecar_recipe_is_valid_and_keeps_the_key_from_the_app(tmp_path: Path) -> None:
    import yaml
    from lightkube import codecs

    from rotator.plan import load_plan

    path = ROOT / "deploy" / "kubernetes" / "examples" / "proxy-sidecar.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        model = type(codecs.from_dict(doc))
        assert model.from_dict(doc, lazy=False).to_dict() == doc, doc["metadata"]["name"]
    by_kind = {d["kind"]: d for d in docs}
    ((name, text),) = by_kind["ConfigMap"]["data"].items()
    (tmp_path / name).write_text(text)
    plan = load_plan(tmp_path / name)
    assert plan.proxy is not None and plan.proxy.listen_address.host == "127.0.0.1"
    assert plan.proxy.refresh_from_primary > 0
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False  # the app container gets no token
    (sidecar,) = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always" and sidecar["args"][:2] == ["rotator", "proxy"]
    assert any(m["name"] == "proxy-identity" for m in sidecar["volumeMounts"])
    (app,) = pod["containers"]
    assert "volumeMounts" not in app and all("KEY" not in e["name"] for e in app["env"])
    assert by_kind["Role"]["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["adjutor-api"], "verbs": ["get"]}
    ]


def test_without_a_channel_the_proxy_rereads_the_primary_while_its_key_is_dead(
    start_proxy: Any, tmp_path: Path
) -> None:
    """The sidecar's way: no key channel; once the key is dead the proxy re-reads the primary."""
    with AdjutorStandIn() as api:
        proxy = start_proxy(api, refresh_from_primary=0.2)
        new = api.reset()
        answer: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: answer.update(r=requests.get(f"{proxy.url}/v2/decisioning/models", timeout=30))
        )
        t.start()
        # Held: the key is dead and the primary still holds it.
        wait_until("the call held", lambda: proxy.metrics().get("rotator_proxy_held_requests", 0) >= 1)
        env = tmp_path / ".env"
        tmp = tmp_path / ".env.new"
        tmp.write_text(f"ADJUTOR_API_KEY={new}\n")
        tmp.chmod(0o600)
        tmp.replace(env)  # as rotator's envfile backend writes it
        written = time.monotonic()
        t.join()
        assert answer["r"].status_code == 200
        assert time.monotonic() - written < 5
        assert proxy.metrics()['rotator_proxy_replays_total{result="ok"}'] == 1


def test_with_consumer_tokens_a_caller_needs_its_own(start_proxy: Any, tmp_path: Path) -> None:
    local = tmp_path / "billing-token"
    local.write_text("local-token-of-billing")
    local.chmod(0o600)
    with AdjutorStandIn() as api:
        proxy = start_proxy(api, consumer_tokens=[{"name": "billing", "token": {"file": str(local)}}])
        bare = requests.get(f"{proxy.url}/v2/decisioning/models", timeout=5)
        assert bare.status_code == 401 and bare.headers["X-Rotator-Proxy"] == "consumer-token"
        wrong = requests.get(f"{proxy.url}/v2/decisioning/models", headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        ok = requests.get(
            f"{proxy.url}/v2/decisioning/models", headers={"Authorization": "Bearer local-token-of-billing"}, timeout=5
        )
        assert ok.status_code == 200  # the local token was replaced by the key, not forwarded
        assert api.stats()["unauthorized"] == 0


def test_held_requests_are_bounded_and_a_refused_replay_is_marked(start_proxy: Any, tmp_path: Path) -> None:
    with AdjutorStandIn() as api:
        proxy = start_proxy(api, max_held=1, hold_deadline=20)
        url = f"{proxy.url}/v2/decisioning/models"
        api.reset()  # the old key dies; the new one is never handed over
        first: dict[str, Any] = {}
        t = threading.Thread(target=lambda: first.update(r=requests.get(url, timeout=30)))
        t.start()
        deadline = time.monotonic() + 10
        while proxy.metrics()["rotator_proxy_held_requests"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = requests.get(url, timeout=10)  # a second one is past max_held
        assert second.status_code == 503 and second.headers["X-Rotator-Proxy"] == "held-requests"
        assert "Retry-After" in second.headers
        # A key that is refused too (not the one the API issued): the held request is
        # replayed once with it, and its 401 goes back marked as a replay.
        channel_put(proxy, "sk_test_" + "Z" * 40)
        t.join()
        r = first["r"]
        assert r.status_code == 401 and r.headers["X-Rotator-Replayed"] == "1"
        assert r.json() == {"status": 401, "message": "Invalid token"}  # the API's answer, as it came
        m = proxy.metrics()
        assert m['rotator_proxy_replays_total{result="refused"}'] == 1
        assert m['rotator_proxy_unavailable_total{bound="requests"}'] == 1
