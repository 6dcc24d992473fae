"""The demo consumer as an operator meets it: a real service on the key, which breaks
at the reset and recovers when told to reload (SIGHUP or rotator's signed webhook)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from rotator.consumer import SIGNATURE_HEADER, TIMESTAMP_HEADER, fingerprint, sign
from rotator.demo.consumer_app import read_env_value
from rotator.testing.adjutor import ADMIN_HEADER

REPO = Path(__file__).resolve().parents[1]
HOOK_KEY = "demo-hook-key-for-tests"
T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def start(
    args: list[str], ready: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", *args, "--ready-file", str(ready)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def ready_info() -> dict[str, Any] | None:
        if proc.poll() is not None:
            raise AssertionError(
                f"{args[0]} exited early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}"
            )
        return json.loads(ready.read_text()) if ready.exists() else None

    return proc, wait_until(ready_info, what=f"{args[0]} ready file")


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, expect a clean exit, return everything it printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("did not stop on SIGTERM") from None
    assert proc.returncode == 0, err
    return out + err


@dataclass
class Demo:
    api_url: str
    admin_token: str
    key: str
    env_file: Path
    pidfile: Path
    consumer_url: str
    consumer: subprocess.Popen[str]
    http: httpx.Client

    def reset_key(self) -> str:
        response = self.http.post(f"{self.api_url}/_admin/reset", headers={ADMIN_HEADER: self.admin_token})
        response.raise_for_status()
        key: str = response.json()["key"]
        return key

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.http.get(f"{self.consumer_url}/stats").json()
        return stats

    def reported_fingerprint(self) -> str:
        fp: str = self.http.get(f"{self.consumer_url}/fingerprint").json()["fingerprint"]
        return fp

    def write_env(self, key: str) -> None:
        tmp = self.env_file.with_suffix(".tmp")
        tmp.write_text(f'# demo\nOTHER=1\nexport ADJUTOR_API_KEY="{key}"\n')
        tmp.replace(self.env_file)

    def post_reload(self, body: bytes, hook_key: str = HOOK_KEY, timestamp: int | None = None) -> httpx.Response:
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            SIGNATURE_HEADER: sign(hook_key.encode(), ts, body),
            TIMESTAMP_HEADER: str(ts),
            "Content-Type": "application/json",
        }
        return self.http.post(f"{self.consumer_url}/reload", content=body, headers=headers)


@pytest.fixture
def demo(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Demo]:
    extra: list[str] = getattr(request, "param", [])
    api_proc, api = start(["rotator.testing.adjutor", "--port", "0"], tmp_path / "standin.json")
    env_file = tmp_path / "service.env"
    env_file.write_text(f"ADJUTOR_API_KEY={api['key']}\n")
    pidfile = tmp_path / "consumer.pid"
    consumer, info = start(
        [
            "rotator.demo.consumer_app",
            "--env-file", str(env_file),
            "--variable", "ADJUTOR_API_KEY",
            "--api", api["url"],
            "--port", "0",
            "--hmac-key-env", "DEMO_HOOK_KEY",
            "--pidfile", str(pidfile),
            "--interval", "0.01",
            *extra,
        ],
        tmp_path / "consumer.json",
        env={"DEMO_HOOK_KEY": HOOK_KEY},
    )  # fmt: skip
    client = httpx.Client(timeout=10.0)
    d = Demo(api["url"], api["admin_token"], api["key"], env_file, pidfile, info["url"], consumer, client)
    try:
        assert info["pid"] == consumer.pid
        yield d
    finally:
        client.close()
        for proc in (consumer, api_proc):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_reset_breaks_the_consumer_and_sighup_brings_it_back(demo: Demo) -> None:
    assert demo.pidfile.read_text().strip() == str(demo.consumer.pid)
    assert demo.reported_fingerprint() == fingerprint(demo.key)
    wait_until(lambda: demo.stats()["ok"] >= 3, what="calls that work")

    new_key = demo.reset_key()
    failing = wait_until(lambda: (s := demo.stats())["failed"] >= 5 and s, what="failures after the reset")
    assert failing["in_outage"] and failing["last_error"] == 401
    assert failing["first_failure_at"] is not None and failing["recovered_at"] is None

    demo.write_env(new_key)
    os.kill(demo.consumer.pid, signal.SIGHUP)

    wait_until(lambda: demo.reported_fingerprint() == fingerprint(new_key), what="the new fingerprint")
    recovered = wait_until(lambda: (s := demo.stats())["recovered_at"] and s, what="a call that works again")
    assert recovered["in_outage"] is False
    assert recovered["recovered_at"] > recovered["first_failure_at"]
    assert recovered["failures_since_reset"] >= 5 and recovered["failed_by_status"]["401"] >= 5
    assert recovered["outages"] == 1 and recovered["reloads"] == 1
    assert recovered["last_reload"]["source"] == "sighup" and recovered["last_reload"]["changed"] is True
    ok_then = recovered["ok"]
    wait_until(lambda: demo.stats()["ok"] > ok_then + 3, what="calls keep working")
    assert demo.stats()["failed"] == recovered["failed"]

    output = stop(demo.consumer)
    assert not demo.pidfile.exists()
    assert demo.key not in output and new_key not in output


def test_signed_webhook_reloads_and_a_bad_signature_is_refused(demo: Demo) -> None:
    new_key = demo.reset_key()
    wait_until(lambda: demo.stats()["failed"] >= 1, what="failures after the reset")
    demo.write_env(new_key)
    body = json.dumps({"secret": "ADJUTOR_API_KEY", "fingerprint": fingerprint(new_key)}).encode()

    forged = demo.post_reload(body, hook_key="not-the-key")
    assert forged.status_code == 401
    stale = demo.post_reload(body, timestamp=int(time.time()) - 3600)
    assert stale.status_code == 401
    unsigned = demo.http.post(f"{demo.consumer_url}/reload", content=body)
    assert unsigned.status_code == 401
    assert demo.reported_fingerprint() == fingerprint(demo.key)  # none of them reloaded
    assert demo.stats()["webhooks_rejected"] == 3

    answer = demo.post_reload(body)
    assert answer.status_code == 200
    assert answer.json() == {
        "reloaded": True,
        "fingerprint": fingerprint(new_key),
        "expected": fingerprint(new_key),
        "matches": True,
        "changed": True,
    }
    assert demo.reported_fingerprint() == fingerprint(new_key)
    stats = wait_until(lambda: (s := demo.stats())["recovered_at"] and s, what="recovery")
    assert stats["last_reload"]["source"] == "webhook"
    assert new_key not in json.dumps(stats)
    stop(demo.consumer)


def test_webhook_reports_a_fingerprint_mismatch(demo: Demo) -> None:
    new_key = demo.reset_key()  # the env file still holds the old key
    body = json.dumps({"fingerprint": fingerprint(new_key)}).encode()
    answer = demo.post_reload(body)
    assert answer.status_code == 409
    assert answer.json()["matches"] is False and answer.json()["fingerprint"] == fingerprint(demo.key)
    stop(demo.consumer)


@pytest.mark.parametrize("demo", [["--reload-delay", "0.3"]], indirect=True)
def test_reload_delay_slows_the_reload(demo: Demo) -> None:
    new_key = demo.reset_key()
    demo.write_env(new_key)
    started = time.monotonic()
    answer = demo.post_reload(json.dumps({"fingerprint": fingerprint(new_key)}).encode())
    assert answer.status_code == 200 and time.monotonic() - started >= 0.3
    stop(demo.consumer)


def test_read_env_value_understands_common_dotenv_forms(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# comment\n"
        "A=plain # trailing comment\n"
        "export B='single quoted'\n"
        'C="double # not a comment"\n'
        "D=first\n"
        "D=second\n"
        "E=\n"
    )
    assert read_env_value(env, "A") == "plain"
    assert read_env_value(env, "B") == "single quoted"
    assert read_env_value(env, "C") == "double # not a comment"
    assert read_env_value(env, "D") == "second"
    assert read_env_value(env, "E") == ""
    assert read_env_value(env, "MISSING") is None


def test_consumer_refuses_to_start_without_its_key(tmp_path: Path) -> None:
    env = tmp_path / "empty.env"
    env.write_text("OTHER=1\n")
    result = subprocess.run(
        [sys.executable, "-m", "rotator.demo.consumer_app", "--env-file", str(env), "--api", "http://127.0.0.1:9"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "ADJUTOR_API_KEY is not set" in result.stderr
