"""The Adjutor stand-in: one valid key at a time, like the real dashboard reset."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from rotator.secret import fingerprint
from rotator.testing.adjutor import ADMIN_HEADER, MODELS_PATH, AdjutorStandIn
from tests.timing import scaled

REPO = Path(__file__).resolve().parents[1]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_for_file(path: Path, proc: subprocess.Popen[Any], timeout: float = 10.0) -> dict[str, Any]:
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"process exited early: {proc.returncode}")
        time.sleep(0.01)
    raise AssertionError(f"{path} did not appear within {timeout}s")


@pytest.fixture
def api() -> Iterator[AdjutorStandIn]:
    with AdjutorStandIn(cost=25.0, balance=1000.0) as standin:
        yield standin


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as c:
        yield c


def test_reset_revokes_the_old_key_at_once(api: AdjutorStandIn, client: httpx.Client) -> None:
    old = api.current_key
    assert re.fullmatch(r"sk_test_[A-Za-z0-9]{40}", old)
    assert client.get(api.models_url, headers=bearer(old)).status_code == 200

    new = api.reset()

    assert new != old and re.fullmatch(r"sk_test_[A-Za-z0-9]{40}", new)
    assert api.current_key == new
    refused = client.get(api.models_url, headers=bearer(old))
    assert refused.status_code == 401
    assert refused.json() == {"status": 401, "message": "Invalid token"}
    assert client.get(api.models_url, headers=bearer(new)).status_code == 200
    assert (api.requests, api.authorized, api.unauthorized) == (3, 2, 1)


def test_missing_or_malformed_authorization_is_refused(api: AdjutorStandIn, client: httpx.Client) -> None:
    key = api.current_key
    assert client.get(api.models_url).status_code == 401
    assert client.get(api.models_url, headers={"Authorization": key}).status_code == 401
    assert client.get(api.models_url, headers={"Authorization": f"Basic {key}"}).status_code == 401
    assert client.get(api.models_url, headers=bearer(key + "x")).status_code == 401
    assert client.get(api.models_url, headers={"Authorization": f"bearer   {key}"}).status_code == 200


def test_success_envelope_charges_the_wallet(api: AdjutorStandIn, client: httpx.Client) -> None:
    first = client.get(api.models_url, headers=bearer(api.current_key)).json()
    assert first["status"] == "success" and first["message"] == "Successful"
    assert first["data"][0]["id"] == 1 and first["data"][0]["name"] == "Demo model"
    assert first["meta"] == {"cost": 25.0, "balance": 975.0}
    second = client.get(api.models_url, headers=bearer(api.current_key)).json()
    assert second["meta"] == {"cost": 25.0, "balance": 950.0}
    client.get(api.models_url, headers=bearer("sk_test_wrong"))
    assert api.balance == 950.0  # a refused call costs nothing


def test_unavailable_answers_503_until_switched_back(api: AdjutorStandIn, client: httpx.Client) -> None:
    api.unavailable = True
    response = client.get(api.models_url, headers=bearer(api.current_key))
    assert response.status_code == 503 and response.json()["status"] == 503
    api.unavailable = False
    assert client.get(api.models_url, headers=bearer(api.current_key)).status_code == 200
    assert api.unavailable_served == 1


def test_latency_is_added_to_each_call(client: httpx.Client) -> None:
    with AdjutorStandIn(latency=0.2) as api:
        started = time.monotonic()
        assert client.get(api.models_url, headers=bearer(api.current_key)).status_code == 200
        assert time.monotonic() - started >= 0.2


def test_admin_endpoints_need_the_token(api: AdjutorStandIn, client: httpx.Client) -> None:
    old = api.current_key
    assert client.post(f"{api.url}/_admin/reset").status_code == 401
    assert client.post(f"{api.url}/_admin/reset", headers={ADMIN_HEADER: "guess"}).status_code == 401
    assert api.current_key == old

    admin = {ADMIN_HEADER: api.admin_token}
    new = client.post(f"{api.url}/_admin/reset", headers=admin).json()["key"]
    assert new == api.current_key != old

    assert client.post(f"{api.url}/_admin/unavailable", headers=admin, json={"unavailable": True}).status_code == 200
    assert client.get(api.models_url, headers=bearer(new)).status_code == 503
    client.post(f"{api.url}/_admin/unavailable", headers=admin, json={"unavailable": False})
    assert client.post(f"{api.url}/_admin/latency", headers=admin, json={"latency": "x"}).status_code == 400

    stats = client.get(f"{api.url}/_admin/stats", headers=admin)
    assert stats.status_code == 200
    assert stats.json()["key_fingerprint"] == fingerprint(new)
    assert stats.json()["resets"] == 1 and stats.json()["unavailable_served"] == 1
    assert new not in stats.text and old not in stats.text
    assert client.get(f"{api.url}/_admin/stats").status_code == 401


def test_keep_alive_one_connection_many_calls(api: AdjutorStandIn) -> None:
    parts = urlsplit(api.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        conn.request("GET", "/v2/decisioning/models", headers=bearer(api.current_key))
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        for _ in range(20):
            conn.request("GET", "/v2/decisioning/models", headers=bearer(api.current_key))
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        assert conn.sock is sock  # never reconnected
    finally:
        conn.close()


def test_stop_drops_open_keep_alive_connections() -> None:
    api = AdjutorStandIn().start()
    parts = urlsplit(api.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    conn.request("GET", "/v2/decisioning/models", headers=bearer(api.current_key))
    conn.getresponse().read()
    api.stop()
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("GET", "/v2/decisioning/models", headers=bearer(api.current_key))
        conn.getresponse().read()
    conn.close()


def test_many_concurrent_clients(api: AdjutorStandIn) -> None:
    key = api.current_key

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with httpx.Client(timeout=10.0, limits=limits) as shared, ThreadPoolExecutor(max_workers=64) as pool:

        def worker(_: int) -> list[int]:
            return [shared.get(api.models_url, headers=bearer(key)).status_code for _ in range(10)]

        results = [s for batch in pool.map(worker, range(64)) for s in batch]
    assert results == [200] * 640
    assert api.authorized == 640


def test_runs_as_a_process_with_a_ready_file(tmp_path: Path) -> None:
    ready = tmp_path / "standin.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotator.testing.adjutor", "--port", "0", "--ready-file", str(ready), "--cost", "5"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        info = wait_for_file(ready, proc)
        assert stat.S_IMODE(os.stat(ready).st_mode) == 0o600
        assert info["pid"] == proc.pid
        models = f"{info['url']}/v2/decisioning/models"
        with httpx.Client(timeout=5.0) as c:
            ok = c.get(models, headers=bearer(info["key"]))
            assert ok.status_code == 200 and ok.json()["meta"]["cost"] == 5.0
            new = c.post(f"{info['url']}/_admin/reset", headers={ADMIN_HEADER: info["admin_token"]}).json()["key"]
            assert c.get(models, headers=bearer(info["key"])).status_code == 401
            assert c.get(models, headers=bearer(new)).status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert info["key"] not in out + err and new not in out + err


def test_initial_key_from_the_environment(tmp_path: Path) -> None:
    ready = tmp_path / "standin.json"
    key = "sk_test_" + "A" * 40
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotator.testing.adjutor", "--ready-file", str(ready), "--initial-key-env", "FIRST_KEY"],
        cwd=REPO,
        env={**os.environ, "FIRST_KEY": key},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        info = wait_for_file(ready, proc)
        assert info["key"] == key
        assert httpx.get(f"{info['url']}/v2/decisioning/models", headers=bearer(key)).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


# -- an organisation with several apps (alternating keys, issue 11) ----------

KARMA = "/v2/verification/karma/"


@pytest.fixture
def org() -> Iterator[AdjutorStandIn]:
    """Two apps with the same API services, and a third that lacks Karma."""
    with AdjutorStandIn(app="payments-blue", paths=[MODELS_PATH, KARMA]) as standin:
        standin.add_app("payments-green", paths=[MODELS_PATH, KARMA])
        standin.add_app("reports", paths=[MODELS_PATH])
        yield standin


def test_every_apps_current_key_works_and_says_which_app(org: AdjutorStandIn, client: httpx.Client) -> None:
    assert org.apps == ["payments-blue", "payments-green", "reports"]
    keys = {app: org.key_of(app) for app in ("payments-blue", "payments-green", "reports")}
    assert len(set(keys.values())) == 3
    assert org.current_key == keys["payments-blue"]  # the first app is the one current_key means
    for app, key in keys.items():
        body = client.get(org.models_url, headers=bearer(key)).json()
        assert body["status"] == "success" and body["meta"]["app"] == app
        assert body["meta"]["cost"] == 0  # the probe path costs nothing by default
    assert org.balance == 100_000.0


def test_resetting_one_app_revokes_only_its_key(org: AdjutorStandIn, client: httpx.Client) -> None:
    blue, green = org.key_of("payments-blue"), org.key_of("payments-green")
    new_green = org.reset("payments-green")
    assert new_green not in (blue, green) and org.key_of("payments-green") == new_green
    assert client.get(org.models_url, headers=bearer(green)).status_code == 401  # revoked at once
    assert client.get(org.models_url, headers=bearer(blue)).json()["meta"]["app"] == "payments-blue"
    assert client.get(org.models_url, headers=bearer(new_green)).json()["meta"]["app"] == "payments-green"
    stats = org.stats()
    assert stats["resets"] == 1
    assert stats["apps"]["payments-green"]["resets"] == 1 and stats["apps"]["payments-blue"]["resets"] == 0
    assert stats["apps"]["payments-green"]["key_fingerprint"] == fingerprint(new_green)
    assert blue not in json.dumps(stats) and new_green not in json.dumps(stats)


def test_an_app_lacking_a_service_answers_403_there(org: AdjutorStandIn, client: httpx.Client) -> None:
    karma = f"{org.url}{KARMA}0zspgifzbo.ga"
    assert client.get(karma, headers=bearer(org.key_of("payments-green"))).json()["meta"]["app"] == "payments-green"
    lacking = client.get(karma, headers=bearer(org.key_of("reports")))
    assert lacking.status_code == 403 and lacking.json()["status"] == 403
    assert client.get(org.models_url, headers=bearer(org.key_of("reports"))).status_code == 200
    assert client.get(karma, headers=bearer("sk_test_wrong")).status_code == 401  # a bad key is still 401
    assert client.get(f"{org.url}/v2/creditbureaus/crc/1", headers=bearer(org.current_key)).status_code == 404
    assert (org.forbidden, org.stats()["apps"]["reports"]["forbidden"]) == (1, 1)
    assert org.balance == 100_000.0


def test_apps_through_the_admin_endpoints(org: AdjutorStandIn, client: httpx.Client) -> None:
    admin = {ADMIN_HEADER: org.admin_token}
    green = org.key_of("payments-green")
    reset = client.post(f"{org.url}/_admin/reset", headers=admin, json={"app": "payments-green"}).json()
    assert reset["app"] == "payments-green" and reset["key"] == org.key_of("payments-green") != green
    assert client.post(f"{org.url}/_admin/reset", headers=admin, json={"app": "nope"}).status_code == 404
    made = client.post(f"{org.url}/_admin/apps", headers=admin, json={"name": "audit", "paths": [MODELS_PATH]})
    assert made.json() == {"app": "audit", "key": org.key_of("audit")}
    assert client.post(f"{org.url}/_admin/apps", headers=admin, json={"name": "audit"}).status_code == 400
    assert client.post(f"{org.url}/_admin/apps", json={"name": "x"}).status_code == 401
    with pytest.raises(ValueError):
        org.add_app("reports")


def test_a_single_app_stand_in_has_no_app_names(api: AdjutorStandIn, client: httpx.Client) -> None:
    assert api.apps == [None]
    assert "app" not in client.get(api.models_url, headers=bearer(api.current_key)).json()["meta"]
    assert "apps" not in api.stats()
    assert client.get(f"{api.models_url}/1", headers=bearer(api.current_key)).status_code == 404


def test_apps_as_a_process(tmp_path: Path) -> None:
    ready = tmp_path / "standin.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rotator.testing.adjutor",
            "--ready-file",
            str(ready),
            "--app",
            "blue",
            "--app",
            f"green={MODELS_PATH}",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        info = wait_for_file(ready, proc)
        assert set(info["apps"]) == {"blue", "green"} and info["apps"]["blue"] == info["key"]
        models = f"{info['url']}{MODELS_PATH}"
        with httpx.Client(timeout=5.0) as c:
            for app, key in info["apps"].items():
                assert c.get(models, headers=bearer(key)).json()["meta"]["app"] == app
            c.post(f"{info['url']}/_admin/reset", headers={ADMIN_HEADER: info["admin_token"]}, json={"app": "blue"})
            assert c.get(models, headers=bearer(info["apps"]["blue"])).status_code == 401
            assert c.get(models, headers=bearer(info["apps"]["green"])).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_the_dashboard_resets_one_app_of_an_organisation(org: AdjutorStandIn) -> None:
    from rotator.testing.dashboard import DashboardStandIn

    blue, green = org.key_of("payments-blue"), org.key_of("payments-green")
    with DashboardStandIn(org) as dash, httpx.Client(base_url=dash.url, timeout=5.0) as c:
        page = c.get("/business/apps").text  # sets the session cookie, as a browser would
        assert all(name in page for name in ("payments-blue", "payments-green", "reports"))
        answer = c.post("/api/apps/1/reset-key").json()
    assert answer["key"] == org.key_of("payments-green") != green
    assert org.key_of("payments-blue") == blue  # the other app's key still works
    assert [r[0] for r in dash.resets] == ["payments-green"]
