"""The API proxy run by `rotator serve`, and a promote of an alternating plan through `rotator proxy`.

Under `rotator serve` (a real process), a plan with a ``[proxy]`` section gets its
proxy in serve's event loop, on its own address.  Real clients (`curl`, Node,
Python `requests`) call through it continuously; the operator arms on the API,
resets the app's key, and pastes the new key 2 s later.  The plan's `proxy`
consumer hands the key to the proxy in-process (it has no channel), confirmed by
fingerprint.  No call fails, each POST is executed once by the stand-in, the page's
API shows the proxy (address, fingerprint, holds, replays, 503s), serve's /metrics
carries the proxy's series, and no key appears in anything the service printed.

An alternating plan: `rotator rotate` (promote, then re-key) with a `rotator proxy`
process as a consumer over its key channel: the promote switches the proxy to the
standby key while the clients call on, and no call fails.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from rotator.exitcodes import Exit
from rotator.secret import fingerprint
from rotator.testing import plans
from rotator.testing.adjutor import AdjutorStandIn

try:
    from tests import forkserver
    from tests.test_proxy import calls, free_port, leaked, start_clients, wait_for_calls
    from tests.test_service import SSE, ServiceProc
except ImportError:  # pragma: no cover - run from inside tests/
    sys.path.insert(0, str(Path(__file__).parent))
    import forkserver  # type: ignore[no-redef]
    from test_proxy import calls, free_port, leaked, start_clients, wait_for_calls  # type: ignore[no-redef]
    from test_service import SSE, ServiceProc  # type: ignore[no-redef]

PLAN = "billing"
RESET_LINE = re.compile(r"Reset (\S+) \(its new key becomes")


def more_calls(tmp: Path, names: list[str]) -> None:
    """Until each client has made 4 more calls (it calls on across what just happened)."""
    counts = {name: len(calls(tmp, name)) for name in names}
    for name in names:
        wait_for_calls(tmp, [name], counts[name] + 4)


def stop_clients(tmp: Path, procs: dict[str, subprocess.Popen[bytes]], stop: Path) -> None:
    more_calls(tmp, list(procs))  # each runs on after the switch
    stop.touch()
    for p in procs.values():
        p.wait(timeout=60)


def assert_clients_ok(tmp: Path, names: list[str], api: AdjutorStandIn) -> None:
    for name in names:
        seen = calls(tmp, name)
        failed = [c for c in seen if c.status != "200"]
        assert not failed, (name, failed[:5])
        for c in (c for c in seen if c.method == "POST"):
            assert api.posts.get(c.id) == 1, (name, c, api.posts.get(c.id))
    assert api.post_mismatches == 0
    answered = {c.id for n in names for c in calls(tmp, n) if c.method == "POST"}
    assert set(api.posts) == answered  # nothing executed that no client saw answered


# --- under rotator serve: a single-app reset, the key pasted on the API 2 s later ------------------


def serve_with_proxy(tmp: Path, api: AdjutorStandIn) -> tuple[ServiceProc, str]:
    """`rotator serve` with one single-app plan whose ``[proxy]`` it runs; the proxy's address."""
    env = tmp / "store.env"
    env.write_text(f"ADJUTOR_API_KEY={api.current_key}\n")
    env.chmod(0o600)
    listen = f"127.0.0.1:{free_port()}"
    data = plans.plan(
        PLAN,
        backends=[plans.envfile("store", env, primary=True)],
        consumers=[{"name": "api-proxy", "type": "proxy"}],  # no channel: the proxy serve runs, in-process
        probe=plans.adjutor_probe(api.models_url),
    )
    data["proxy"] = {"listen": listen, "upstream": api.url}
    (tmp / "plans").mkdir()
    plan = plans.write_plan(tmp / "plans" / f"{PLAN}.toml", data)
    svc = ServiceProc(["--plans", str(plan.parent), "--db", f"sqlite:///{tmp / 'journal.db'}"])
    svc.wait_ready()
    assert f"proxy listening on {listen}" in svc.output()
    return svc, listen


def test_serve_runs_the_proxy_and_hands_it_the_key_in_process(tmp_path: Path) -> None:
    api = AdjutorStandIn().start()
    svc: ServiceProc | None = None
    try:
        old = api.current_key
        svc, listen = serve_with_proxy(tmp_path, api)

        base = f"http://{listen}"
        procs, stop = start_clients(base, tmp_path)
        names = list(procs)
        wait_for_calls(tmp_path, names, 6)
        bodies: list[str] = []
        with svc.client() as c:
            shown = c.get(f"/api/plans/{PLAN}").json()["proxy"]
            assert shown["listen"] == listen and shown["fingerprint"] == fingerprint(old)
            assert shown["state"] in ("live", "none") and shown["held_now"] == 0

            r = c.post(f"/api/plans/{PLAN}/arm", json={"reason": "test", "operator": "ada"})
            bodies.append(r.text)
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
            proxy_check = next(p for p in r.json()["preflight"] if p["target"] == "api-proxy")
            assert proxy_check["ok"] is not False and "in this process" in json.dumps(proxy_check)

            new = api.reset()  # the operator resets the key: the old one dies now ...
            time.sleep(2.0)  # ... and pastes the new one 2 s later
            during = c.get(f"/api/plans/{PLAN}").json()["proxy"]  # requests held while the key is dead
            r = c.post(f"/api/rotations/{rid}/key", json={"key": new})
            bodies.append(r.text)
            assert r.status_code == 200, r.text
            report = r.json()["report"]
            assert report["state"] == "done" and report["exit_code"] == 0, report
            proxied = next(t for t in report["targets"] if t["name"] == "api-proxy")
            assert proxied["status"] == "ok" and proxied["fingerprint"] == fingerprint(new), proxied

            stop_clients(tmp_path, procs, stop)
            assert during["held_now"] >= 1 and during["state"] == "dead", during
            after = c.get(f"/api/plans/{PLAN}")
            bodies.append(after.text)
            shown = after.json()["proxy"]
            assert shown["fingerprint"] == fingerprint(new) and shown["state"] == "live"
            assert shown["held_now"] == 0 and shown["held_total"] >= len(names)
            assert shown["replays"] >= len(names) and shown["replays_refused"] == 0
            assert shown["unavailable"] == 0
            listed = c.get("/api/plans").json()["plans"]
            assert next(p for p in listed if p["name"] == PLAN)["proxy"]["fingerprint"] == fingerprint(new)

            metrics = c.get("/metrics").text  # the proxy's series in serve's /metrics, by plan
            bodies.append(metrics)
            assert re.search(rf'rotator_proxy_replays_total\{{plan="{PLAN}",result="ok"\}} [1-9]', metrics)
            assert f'rotator_proxy_key_state{{plan="{PLAN}",state="live"}} 1.0' in metrics
            assert f'rotator_proxy_unavailable_total{{bound="deadline",plan="{PLAN}"}}' in metrics or (
                f'rotator_proxy_unavailable_total{{plan="{PLAN}",bound="deadline"}} 0.0' in metrics
            )
        assert_clients_ok(tmp_path, names, api)
        for name in names:  # shown with -s: the longest call, which waited across the 2 s paste
            seen = calls(tmp_path, name)
            print(f"SERVE {name:8} calls {len(seen)}, failed 0, longest {max(c.seconds for c in seen):.3f} s")
        assert svc.stop() == 0
        assert not leaked(tmp_path, [old, new], svc.output(), *bodies, skip=("store.env",))
    finally:
        if svc is not None:
            svc.stop()
        api.stop()


# --- alternating: `rotator rotate` promotes; the proxy switches keys and nothing fails -----------


def operate(plan: Path, api: AdjutorStandIn, tmp: Path, *args: str) -> tuple[int, str, str]:
    """`rotator ARGS PLAN --key-stdin --json` as an operator: reset each app it names, type its key."""
    err_path = tmp / f"rotator-{args[0]}.err"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [*forkserver.command(), *args, str(plan), "--key-stdin", "--json"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=tmp,
        )
    assert proc.stdin is not None and proc.stdout is not None
    done = 0
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline:
        asked = RESET_LINE.findall(err_path.read_text(errors="replace"))
        if len(asked) > done:
            key = api.reset(asked[done])
            proc.stdin.write(key.encode() + b"\n")
            proc.stdin.flush()
            done += 1
        time.sleep(0.02)
    proc.stdin.close()
    out = proc.stdout.read().decode()
    proc.wait(timeout=30)
    return proc.returncode, out, err_path.read_text(errors="replace")


def channel_status(channel: str, token: str) -> dict[str, Any]:
    """GET /key on the proxy's key channel (a Unix socket): its fingerprint and state, never the key."""

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(10)
            self.sock.connect(channel.removeprefix("unix:"))

    conn = UnixConnection("localhost")
    try:
        conn.request("GET", "/key", headers={"Authorization": f"Bearer {token}"})
        return json.loads(conn.getresponse().read())  # type: ignore[no-any-return]
    finally:
        conn.close()


def test_a_promote_switches_the_proxy_and_fails_no_call(tmp_path: Path) -> None:
    with AdjutorStandIn(app="blue") as api:
        api.add_app("green")
        keys = [api.key_of("blue"), api.key_of("green")]
        env = tmp_path / "store.env"
        env.write_text(f"ADJUTOR_API_KEY={keys[0]}\n")
        env.chmod(0o600)
        token = tmp_path / "channel-token"
        token.write_text(secrets.token_urlsafe(24))
        token.chmod(0o600)
        channel = f"unix:{tmp_path}/key.sock"
        listen = f"127.0.0.1:{free_port()}"
        data = plans.plan(
            "payments",
            strategy="alternating",
            apps=["blue", "green"],
            backends=[plans.envfile("store", env, primary=True)],
            consumers=[{"name": "api-proxy", "type": "proxy", "channel": channel, "token": {"file": str(token)}}],
            probe=plans.adjutor_probe(api.models_url),
        )
        data["proxy"] = {
            "listen": listen,
            "channel": channel,
            "channel_token": {"file": str(token)},
            "upstream": api.url,
        }
        plan = plans.write_plan(tmp_path / "payments.toml", data)
        log = tmp_path / "proxy.log"
        proxy = subprocess.Popen(
            [sys.executable, "-m", "rotator", "-v", "proxy", str(plan)], stderr=log.open("wb"), cwd=tmp_path
        )
        try:
            deadline = time.monotonic() + 20
            while "listening on" not in log.read_text():
                assert proxy.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            # The one-time seeding: green's key becomes the standby; the proxy keeps blue's.
            code, out, err = operate(plan, api, tmp_path, "rekey")
            assert code == 0, err[-2000:]
            keys.append(api.key_of("green"))
            status = channel_status(channel, token.read_text())
            assert status["fingerprint"] == fingerprint(keys[0])

            procs, stop = start_clients(f"http://{listen}", tmp_path)
            names = list(procs)
            wait_for_calls(tmp_path, names, 6)
            # The planned rotation: promote green (the proxy switches to it), then re-key blue.
            code, out2, err2 = operate(plan, api, tmp_path, "rotate")
            assert code == 0, err2[-2000:]
            keys.append(api.key_of("blue"))
            stop_clients(tmp_path, procs, stop)
            report = json.loads(out2)
            assert report["alternating"]["active"]["app"] == "green", report["message"]
            proxied = next(t for t in report["targets"] if t["name"] == "api-proxy")  # signalled in the promote
            assert proxied["status"] == "ok" and proxied["fingerprint"] == fingerprint(api.key_of("green")), proxied

            status = channel_status(channel, token.read_text())  # by fingerprint, never the key
            assert status["fingerprint"] == fingerprint(api.key_of("green")) and status["state"] == "live"
            assert status["held"] == 0
            metrics = requests.get(f"http://{listen}/metrics", timeout=5).text
            assert 'rotator_proxy_unavailable_total{bound="deadline"} 0.0' in metrics
            assert 'rotator_proxy_replays_total{result="refused"} 0.0' in metrics
            assert_clients_ok(tmp_path, names, api)
            proxy.terminate()
            proxy.wait(timeout=10)
            assert not leaked(tmp_path, keys, out, err, out2, err2, metrics, skip=("store.env",))
        finally:
            if proxy.poll() is None:
                proxy.terminate()
                proxy.wait(timeout=10)


def test_under_serve_a_promote_switches_the_proxy_in_process(tmp_path: Path) -> None:
    """An alternating plan under `rotator serve`: the planned rotation's promote hands the
    promoted key to the proxy in-process (no channel), before the operator resets the
    retired app; clients calling through the proxy see no failed call."""
    with AdjutorStandIn(app="blue") as api:
        api.add_app("green")
        keys = [api.key_of("blue"), api.key_of("green")]
        env = tmp_path / "store.env"
        env.write_text(f"ADJUTOR_API_KEY={keys[0]}\n")
        env.chmod(0o600)
        listen = f"127.0.0.1:{free_port()}"
        data = plans.plan(
            "payments",
            strategy="alternating",
            apps=["blue", "green"],
            backends=[plans.envfile("store", env, primary=True)],
            consumers=[{"name": "api-proxy", "type": "proxy"}],
            probe=plans.adjutor_probe(api.models_url),
        )
        data["proxy"] = {"listen": listen, "upstream": api.url}
        (tmp_path / "plans").mkdir()
        plan = plans.write_plan(tmp_path / "plans" / "payments.toml", data)
        svc = ServiceProc(["--plans", str(plan.parent), "--db", f"sqlite:///{tmp_path / 'journal.db'}"])
        bodies: list[str] = []
        try:
            svc.wait_ready()
            with svc.client() as c:

                def flow(name: str) -> tuple[str, SSE]:
                    r = c.post("/api/plans/payments/arm", json={"flow": name})
                    bodies.append(r.text)
                    assert r.status_code == 201, r.text
                    return r.json()["id"], SSE(svc, r.json()["id"])

                def proxy_now() -> dict[str, Any]:
                    r = c.get("/api/plans/payments")
                    bodies.append(r.text)
                    return r.json()["proxy"]  # type: ignore[no-any-return]

                rid, sse = flow("rekey")  # the one-time seeding of the standby (green)
                assert sse.wait("ask")["app"] == "green"
                keys.append(api.reset("green"))
                r = c.post(f"/api/rotations/{rid}/key", json={"key": keys[-1]})
                assert r.status_code == 200 and r.json()["report"]["exit_code"] == 0, r.text
                assert proxy_now()["fingerprint"] == fingerprint(keys[0])  # a re-key leaves the proxy alone

                procs, stop = start_clients(f"http://{listen}", tmp_path)
                names = list(procs)
                wait_for_calls(tmp_path, names, 6)
                rid, sse = flow("rotate")  # promote green at once, then ask for blue's reset
                ask = sse.wait("ask", timeout=30)
                assert ask["app"] == "blue", ask
                shown = proxy_now()  # switched by the promote, before blue's reset
                assert shown["fingerprint"] == fingerprint(api.key_of("green")) and shown["state"] == "live"
                more_calls(tmp_path, names)
                keys.append(api.reset("blue"))
                r = c.post(f"/api/rotations/{rid}/key", json={"key": keys[-1]})
                bodies.append(r.text)
                assert r.status_code == 200 and r.json()["report"]["exit_code"] == 0, r.text
                proxied = next(t for t in r.json()["report"]["targets"] if t["name"] == "api-proxy")
                assert proxied["status"] == "ok" and proxied["fingerprint"] == fingerprint(api.key_of("green"))
                assert sse.ended.wait(20)
                # A promote alone (no key), and its roll back: the proxy follows each swap.
                for name, app in (("promote", "blue"), ("rollback", "green")):
                    rid, sse = flow(name)
                    assert sse.ended.wait(30), sse.kinds()
                    assert dict(sse.events)["report"]["report"]["exit_code"] == 0, sse.events
                    assert proxy_now()["fingerprint"] == fingerprint(api.key_of(app)), (name, app)
                    more_calls(tmp_path, names)
                stop_clients(tmp_path, procs, stop)
                shown = proxy_now()
                assert shown["fingerprint"] == fingerprint(api.key_of("green")) and shown["state"] == "live"
                assert shown["held_total"] == 0 and shown["unavailable"] == 0  # nothing held: no 401 at all
            assert_clients_ok(tmp_path, names, api)
            assert svc.stop() == 0
            assert not leaked(tmp_path, keys, svc.output(), *bodies, skip=("store.env",))
        finally:
            svc.stop()


# --- the page shows the proxy ----------------------------------------------------------------------


def test_the_page_shows_the_proxy_its_key_and_its_held_requests(tmp_path: Path) -> None:
    from tests.test_service_page import _browser, _need_browser, _sign_in, save_shot

    sync_playwright = _need_browser()
    api = AdjutorStandIn().start()
    svc: ServiceProc | None = None
    try:
        old = api.current_key
        svc, listen = serve_with_proxy(tmp_path, api)
        problems: list[str] = []
        with sync_playwright() as p:
            browser = _browser(p)
            try:
                page = browser.new_page()
                _sign_in(page, svc.url, problems)
                info = page.locator("#proxy-info")
                info.wait_for()
                text = info.inner_text()
                assert f"listening on {listen}" in text and f"key {fingerprint(old)} (live)" in text, text
                assert "held now 0" in text and "503s 0" in text

                new = api.reset()  # the key dies; a caller's request is held until the new key comes
                held: dict[str, Any] = {}
                caller = threading.Thread(
                    target=lambda: held.update(r=requests.get(f"http://{listen}/v2/decisioning/models", timeout=30))
                )
                caller.start()
                page.wait_for_function(
                    "() => /held now 1/.test(document.getElementById('proxy-info').textContent)", timeout=15000
                )
                assert "(dead: holding requests for the new key)" in info.inner_text()
                assert "warn" in (info.get_attribute("class") or "")
                save_shot(page, tmp_path, "proxy-held.png", full_page=True)

                with svc.client() as c:
                    rid = c.post(f"/api/plans/{PLAN}/arm", json={"operator": "ada"}).json()["id"]
                    r = c.post(f"/api/rotations/{rid}/key", json={"key": new})
                    assert r.status_code == 200 and r.json()["report"]["state"] == "done", r.text
                caller.join(timeout=30)
                assert held["r"].status_code == 200  # answered once the key arrived: held, not failed
                page.wait_for_function(
                    f"() => document.getElementById('proxy-info').textContent.includes('key {fingerprint(new)} (live)')",
                    timeout=15000,
                )
                text = info.inner_text()
                assert "held now 0" in text and "replayed 1 (0 refused again)" in text, text
                html = page.content()
                assert old not in html and new not in html
            finally:
                browser.close()
        assert problems == [], problems
    finally:
        if svc is not None:
            svc.stop()
        api.stop()


# --- what cannot run says so in one line ---------------------------------------------------------


def test_serve_stops_with_one_line_when_a_proxy_cannot_listen(tmp_path: Path) -> None:
    with AdjutorStandIn() as api, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = tmp_path / "store.env"
        env.write_text(f"ADJUTOR_API_KEY={api.current_key}\n")
        data = plans.plan(
            PLAN,
            backends=[plans.envfile("store", env, primary=True)],
            consumers=[{"name": "api-proxy", "type": "proxy"}],
            probe=plans.adjutor_probe(api.models_url),
        )
        data["proxy"] = {"listen": f"127.0.0.1:{port}", "upstream": api.url}
        plan = plans.write_plan(tmp_path / f"{PLAN}.toml", data)
        svc = ServiceProc(["--plans", str(plan), "--db", f"sqlite:///{tmp_path / 'journal.db'}"])
        assert svc.proc.wait(30) == int(Exit.PROXY_LISTEN)
        time.sleep(0.1)
        said = [line for line in svc.output().splitlines() if line.startswith("rotator:")]
        assert said == [
            f"rotator: {PLAN}: the proxy cannot listen on 127.0.0.1:{port}: address already in use; "
            "free it or change the plan's [proxy]"
        ], svc.output()
        assert "Traceback" not in svc.output() and "listening on http" not in svc.output()

        del data["probe"]  # the proxy asks the probe whether its key is dead: a plan without one is refused
        plans.write_plan(plan, data)
        svc = ServiceProc(["--plans", str(plan), "--db", f"sqlite:///{tmp_path / 'journal.db'}"])
        assert svc.proc.wait(30) == int(Exit.PLAN_INVALID)
        time.sleep(0.1)
        assert "the proxy needs the plan's probe" in svc.output() and "Traceback" not in svc.output()


def test_the_consumer_without_a_channel_needs_serve_to_run_the_proxy(tmp_path: Path) -> None:
    """Outside `rotator serve` (here: no proxy registered for the plan) a channel-less `proxy`
    consumer fails its preflight with the fix, and a channel without its token is a plan error."""
    import asyncio

    from pydantic import ValidationError

    from rotator.plugin import PluginContext
    from rotator.registry import consumer_class

    cls = consumer_class("proxy")
    consumer = cls(cls.Settings(name="api-proxy"), PluginContext(max_threads=1, plan=PLAN))
    check = asyncio.run(consumer.preflight())
    assert check.ok is False
    assert f"no proxy for plan {PLAN} runs in this process" in check.detail and "channel" in check.detail
    try:
        cls.Settings(name="api-proxy", channel=f"unix:{tmp_path}/k.sock")
    except ValidationError as exc:
        assert "a channel needs its token" in str(exc)
    else:
        raise AssertionError("a channel without a token was accepted")
