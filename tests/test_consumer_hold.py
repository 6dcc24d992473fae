"""rotator.consumer for services that call Adjutor directly: hold a refused call across the
reset until the new key is in place, then retry it once.  Against the loopback stand-in.

The gap scenario is the real outage: the key is reset (the old one dies at once) and the
consumer's env file gets the new key 2 s later.  Consumers with the helper fail no call;
the same sequence without it fails many.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from dotenv import dotenv_values
from rotator_plugins.envfile import lookup, update_dotenv

from rotator import consumer, secret
from rotator.consumer import EnvFileKey, HoldStats, HoldTimeout, KeySourceError, RotatingKey, read_env_value
from rotator.consumer_http import HoldAndRetryAuth, RequestsHoldAndRetryAuth
from rotator.testing.adjutor import AdjutorStandIn
from tests.timing import scaled

ROOT = Path(__file__).resolve().parent.parent
VAR = "ADJUTOR_API_KEY"
GAP = 2.0  # reset -> the env file holds the new key


def write_env(path: Path, key: str) -> None:
    """Replace the env file atomically, as rotator's env-file backend does."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# written by rotator\nOTHER=1\n{VAR}={key}\n")
    os.replace(tmp, path)


@pytest.fixture
def env_file(tmp_path: Path, standin: AdjutorStandIn) -> Path:
    path = tmp_path / ".env"
    write_env(path, standin.current_key)
    return path


def leaks(text: str, *keys: str) -> list[str]:
    return [k[:12] + "…" for k in keys if k in text]


# --- the gap: a reset, and the reload 2 s later ------------------------------------------


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    outcomes: list[str] = field(default_factory=list)

    def record(self, outcome: str) -> None:
        self.outcomes.append(outcome)
        if outcome == "200":
            self.ok += 1
        else:
            self.failed += 1


@dataclass
class Gap:
    tallies: dict[str, Tally]
    stats: dict[str, HoldStats]
    refused_by_api: int


def _sync_caller(
    call: Callable[[], int], tally: Tally, stop: threading.Event, started: threading.Barrier
) -> threading.Thread:
    def loop() -> None:
        started.wait()
        while not stop.is_set():
            try:
                tally.record(str(call()))
            except Exception as exc:  # noqa: BLE001 -- any error is a failed call, counted
                tally.record(type(exc).__name__)
            time.sleep(0.02)

    return threading.Thread(target=loop, daemon=True)


def _async_callers(
    url: str, key: RotatingKey, tally: Tally, stop: threading.Event, started: threading.Barrier
) -> threading.Thread:
    async def loop(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                tally.record(str((await client.get(url)).status_code))
            except Exception as exc:  # noqa: BLE001 -- any error is a failed call, counted
                tally.record(type(exc).__name__)
            await asyncio.sleep(0.02)

    async def main() -> None:
        async with httpx.AsyncClient(auth=HoldAndRetryAuth(key), timeout=30) as client:
            started.wait()
            await asyncio.gather(loop(client), loop(client))  # two calls in flight on one loop

    return threading.Thread(target=asyncio.run, args=(main(),), daemon=True)


@pytest.fixture(scope="module")
def gap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gap]:
    """One reset with the reload GAP seconds later, seen by four consumers at once."""
    with AdjutorStandIn() as api:
        env = tmp_path_factory.mktemp("gap") / ".env"
        write_env(env, api.current_key)
        keys = {name: RotatingKey.from_env_file(env, VAR) for name in ("httpx", "httpx_async", "requests")}
        tallies = {name: Tally() for name in (*keys, "without")}
        stop = threading.Event()
        started = threading.Barrier(7, timeout=30)  # 6 caller threads and this one
        url = api.models_url

        sync_client = httpx.Client(auth=HoldAndRetryAuth(keys["httpx"]), timeout=30)
        session = requests.Session()
        session.auth = RequestsHoldAndRetryAuth(keys["requests"])
        naive = httpx.Client(timeout=30)
        fresh = EnvFileKey(env, VAR)  # the consumer without the helper re-reads the file before every call

        def without() -> int:
            return naive.get(url, headers={"Authorization": f"Bearer {fresh()}"}).status_code

        threads = [
            *(
                _sync_caller(lambda: sync_client.get(url).status_code, tallies["httpx"], stop, started)
                for _ in range(2)
            ),
            *(
                _sync_caller(lambda: session.get(url, timeout=30).status_code, tallies["requests"], stop, started)
                for _ in range(2)
            ),
            _sync_caller(without, tallies["without"], stop, started),
            _async_callers(url, keys["httpx_async"], tallies["httpx_async"], stop, started),
        ]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(0.3)
        new = api.reset()
        time.sleep(GAP)
        write_env(env, new)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=20)
        assert not any(t.is_alive() for t in threads)
        sync_client.close()
        session.close()
        naive.close()
        yield Gap(tallies, {n: k.stats() for n, k in keys.items()}, api.stats()["unauthorized"])


@pytest.mark.parametrize("client", ["httpx", "httpx_async", "requests"])
def test_a_consumer_with_the_helper_fails_no_call_across_the_gap(gap: Gap, client: str) -> None:
    tally, stats = gap.tallies[client], gap.stats[client]
    assert tally.failed == 0, tally.outcomes
    assert tally.ok >= 10
    # It did meet the reset: its calls were refused, held until the reload, and retried.
    assert stats.held >= 1
    assert stats.retries >= stats.held
    assert GAP / 2 <= stats.longest_hold < 10
    assert stats.timeouts == 0 and stats.not_replayable == 0


def test_the_same_sequence_without_the_helper_fails_calls(gap: Gap) -> None:
    tally = gap.tallies["without"]
    assert tally.failed >= 5, tally.outcomes
    assert set(tally.outcomes) == {"200", "401"}
    assert gap.refused_by_api >= tally.failed + sum(s.held for s in gap.stats.values())


# --- one retry, replayable bodies only, the key never shown -------------------------------


def test_a_refusal_after_the_reload_retries_at_once_with_the_new_key(env_file: Path, standin: AdjutorStandIn) -> None:
    key = RotatingKey.from_env_file(env_file, VAR)
    key.current()  # the old key is in use
    write_env(env_file, standin.reset())
    with httpx.Client(auth=HoldAndRetryAuth(key)) as client:
        response = client.get(standin.models_url)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert key.stats() == HoldStats(retries=1)


def test_the_retry_is_sent_once_even_if_refused_again(env_file: Path, standin: AdjutorStandIn) -> None:
    key = RotatingKey.from_env_file(env_file, VAR)
    key.current()
    write_env(env_file, "sk_test_" + "x" * 40)  # a new key, but not the one the API accepts
    standin.reset()
    with httpx.Client(auth=HoldAndRetryAuth(key)) as client:
        response = client.get(standin.models_url)
    assert response.status_code == 401
    assert len(response.history) == 1
    assert standin.stats()["unauthorized"] == 2
    assert key.stats().retries == 1


def _generator_body() -> Iterator[bytes]:
    yield b"{}"


@pytest.mark.parametrize("client", ["httpx", "requests"])
def test_a_body_that_cannot_be_sent_twice_is_not_retried(env_file: Path, standin: AdjutorStandIn, client: str) -> None:
    key = RotatingKey.from_env_file(env_file, VAR, hold=30)  # a hold would show as a 30 s HoldTimeout
    standin.reset()
    if client == "httpx":
        with httpx.Client(auth=HoldAndRetryAuth(key)) as c:
            status = c.request("GET", standin.models_url, content=_generator_body()).status_code
    else:
        with requests.Session() as s:
            status = s.get(standin.models_url, data=_generator_body(), auth=RequestsHoldAndRetryAuth(key)).status_code
    assert status == 401
    assert key.stats() == HoldStats(not_replayable=1)


@pytest.mark.parametrize("client", ["httpx", "httpx_async", "requests"])
def test_the_hold_times_out_with_a_clear_error_that_never_holds_the_key(
    env_file: Path, standin: AdjutorStandIn, client: str
) -> None:
    old = standin.current_key
    key = RotatingKey.from_env_file(env_file, VAR, hold=0.3)
    new = standin.reset()  # and the env file never gets it
    with pytest.raises(HoldTimeout) as caught:
        if client == "httpx":
            auth: Any = HoldAndRetryAuth(key)
            with httpx.Client(auth=auth) as c:
                c.get(standin.models_url)
        elif client == "httpx_async":
            auth = HoldAndRetryAuth(key)

            async def call() -> None:
                async with httpx.AsyncClient(auth=auth) as c:
                    await c.get(standin.models_url)

            asyncio.run(call())
        else:
            auth = RequestsHoldAndRetryAuth(key)
            requests.get(standin.models_url, auth=auth)
    exc = caught.value
    message = str(exc)
    assert f"refused key {consumer.fingerprint(old)} with 401" in message
    assert f"{VAR} in {env_file}" in message
    assert "reload the consumer's key" in message
    assert exc.status == 401 and exc.waited >= 0.3
    assert getattr(exc.response, "status_code", None) == 401
    assert key.stats().timeouts == 1 and key.stats().retries == 0
    shown = "\n".join(
        [message, repr(exc), "".join(traceback.format_exception(exc)), repr(auth), repr(key), repr(key.stats())]
    )
    assert leaks(shown, old, new) == []
    assert consumer.fingerprint(old) in repr(key)


def test_a_source_that_cannot_be_read_says_which_and_shows_no_value(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("ADJUTOR_API_KEY_OLD=sk_live_secretvalue123\n")
    with pytest.raises(KeySourceError) as caught:
        RotatingKey.from_env_file(path, VAR).current()
    assert str(caught.value) == f"{VAR} is not set in {path}"
    with pytest.raises(KeySourceError, match=r"cannot read .*: No such file or directory"):
        RotatingKey.from_env_file(tmp_path / "missing.env", VAR).current()

    def vault_read() -> str:
        raise RuntimeError("sk_live_secretvalue123")  # a source whose error text holds a value

    with pytest.raises(KeySourceError) as caught:
        RotatingKey(vault_read).current()
    assert "sk_live" not in str(caught.value) and "vault_read raised RuntimeError" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    partial_source = RotatingKey(functools.partial(str, "sk_live_secretvalue123"))
    partial_source.current()
    assert "sk_live" not in repr(partial_source)  # a callable is named in the repr, never repr'd


# --- the reload signal wakes a held call at once ----------------------------------------


def test_sighup_wakes_a_held_call_when_the_source_is_a_callable(standin: AdjutorStandIn) -> None:
    store = {"key": standin.current_key}  # e.g. a Vault read in the service
    key = RotatingKey(lambda: store["key"], poll=60)  # no poll would come in time: only the signal can wake it
    previous = signal.signal(signal.SIGHUP, lambda *_: key.notify())
    results: list[int] = []
    try:
        with httpx.Client(auth=HoldAndRetryAuth(key), timeout=30) as client:
            key.current()  # the old key is in use
            caller = threading.Thread(target=lambda: results.append(client.get(standin.models_url).status_code))
            store["key"] = standin.reset()  # the store already has the new key when the call is refused: no hold
            caller.start()
            caller.join(timeout=10)
            assert results == [200] and key.stats() == HoldStats(retries=1)

            new = standin.reset()
            caller = threading.Thread(target=lambda: results.append(client.get(standin.models_url).status_code))
            caller.start()
            while standin.stats()["unauthorized"] < 2:
                time.sleep(0.01)
            time.sleep(0.2)  # the call is now held
            assert results == [200]
            store["key"] = new
            os.kill(os.getpid(), signal.SIGHUP)  # a real signal; the handler runs in this (main) thread
            caller.join(timeout=10)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert results == [200, 200]
    stats = key.stats()
    assert stats.held == 1 and stats.retries == 2
    assert stats.longest_hold < 10  # woken by the signal, not by the 60 s poll


def test_notify_from_another_thread_wakes_a_held_async_call(standin: AdjutorStandIn) -> None:
    store = {"key": standin.current_key}
    key = RotatingKey(lambda: store["key"], poll=60)

    async def scenario() -> int:
        async with httpx.AsyncClient(auth=HoldAndRetryAuth(key), timeout=30) as client:
            await client.get(standin.models_url)
            new = standin.reset()

            def reload_later() -> None:  # the reload webhook's handler, on its server thread
                while standin.stats()["unauthorized"] < 1:
                    time.sleep(0.01)
                time.sleep(0.2)
                store["key"] = new
                key.notify()

            threading.Thread(target=reload_later, daemon=True).start()
            return (await asyncio.wait_for(client.get(standin.models_url), 10)).status_code

    assert asyncio.run(scenario()) == 200
    assert key.stats().held == 1 and key.stats().retries == 1


# --- the docs' Node version of the algorithm (docs/consumers-gap.md), run as it is -------

NODE_DRIVER = """
const { holdAndRetry } = require(process.argv[2]);
const call = holdAndRetry({ file: process.argv[3] });
const [url, until] = [process.argv[4], Date.now() + Number(process.argv[5])];
const tally = { ok: 0, failed: 0, longest: 0 };
(async () => {
  console.log("ready");
  while (Date.now() < until) {
    const t0 = Date.now();
    try { (await call(url)).status === 200 ? tally.ok++ : tally.failed++; } catch (e) { tally.failed++; }
    tally.longest = Math.max(tally.longest, Date.now() - t0);
    await new Promise((r) => setTimeout(r, 20));
  }
  console.log(JSON.stringify(tally));
})();
"""


def docs_node_block() -> str:
    text = (ROOT / "docs" / "consumers-gap.md").read_text()
    section = text[text.index("# Consumers that ride out the gap") :]
    return section[section.index("```js\n") + 6 : section.index("\n```", section.index("```js"))]


def test_the_docs_node_wrapper_fails_no_call_across_the_gap(
    tmp_path: Path, env_file: Path, standin: AdjutorStandIn
) -> None:
    node = shutil.which("node")
    assert node, "node is needed for this test: apt-get install nodejs (.ci/run does)"
    (tmp_path / "hold.js").write_text(docs_node_block())
    (tmp_path / "driver.js").write_text(NODE_DRIVER)
    before, after = scaled(0.3), scaled(0.7)  # calls on the old key, then on the new one (longer on a busy machine)
    run_ms = int((before + GAP + after) * 1000)
    proc = subprocess.Popen(
        [node, str(tmp_path / "driver.js"), str(tmp_path / "hold.js"), str(env_file), standin.models_url, str(run_ms)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        time.sleep(before)
        new = standin.reset()
        time.sleep(GAP)
        write_env(env_file, new)
        out, err = proc.communicate(timeout=scaled(30))
    finally:
        proc.kill()
        proc.wait()
    tally = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0, err
    # Calls before, across and after the gap (how many a busy machine lets node make varies).
    assert tally["failed"] == 0 and tally["ok"] >= 3, tally
    assert tally["longest"] >= GAP / 2 * 1000  # a call was held across the gap
    assert standin.stats()["unauthorized"] >= 1


# --- the module itself: standard library only, and agreeing with rotator ---------------


def test_the_fingerprint_prefix_agrees_with_rotator_secret() -> None:
    assert consumer.FINGERPRINT_PREFIX == secret.FINGERPRINT_PREFIX
    for key in ("sk_live_abc123", "sk_test_" + "Z" * 40, "é"):
        assert consumer.fingerprint(key) == secret.fingerprint(key)


def test_a_vendored_copy_runs_on_the_standard_library_alone(tmp_path: Path, standin: AdjutorStandIn) -> None:
    shutil.copy(ROOT / "rotator" / "consumer.py", tmp_path / "adjutor_consumer.py")
    (tmp_path / ".env").write_text(f"{VAR}='{standin.current_key}'\n")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import adjutor_consumer as c
        key = c.RotatingKey.from_env_file({str(tmp_path / ".env")!r}, {VAR!r})
        print(c.fingerprint(key.current()))
        ts = 1700000000
        assert c.verify_webhook(b"k", {{"X-Rotator-Timestamp": str(ts), "X-Rotator-Signature": c.sign(b"k", ts, b"{{}}")}}, b"{{}}", now=ts) == ts
        foreign = sorted(m for m in sys.modules if m.split(".")[0] not in sys.stdlib_module_names and m not in ("adjutor_consumer", "__main__"))
        print(foreign)
        """
    )
    # -S: no site-packages at all, so anything but the standard library fails to import.
    out = subprocess.run(
        [sys.executable, "-S", "-E", "-s", "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == [secret.fingerprint(standin.current_key), "[]"]


def test_importing_the_installed_module_loads_nothing_but_the_standard_library() -> None:
    script = (
        "import sys; before = set(sys.modules); import rotator.consumer; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "['rotator']"  # no pydantic, httpx, ... (rotator/__init__ imports lazily)
    import rotator

    assert [name for name in rotator.__all__ if not hasattr(rotator, name)] == []  # the lazy names all resolve


VALUES = ["sk_live_abc123", "sk_test_AbC9", "has space", "with#hash", "it's", 'dq"and\\back', "tab\there", "a=b"]


@pytest.mark.parametrize("value", VALUES)
def test_the_env_reader_agrees_with_rotator_s_writer_and_python_dotenv(value: str) -> None:
    text = update_dotenv(f"# c\nexport OTHER=1\n{VAR}=old # note\n", VAR, value)
    assert read_env_value(text, VAR) == value == lookup(text, VAR)
    assert dotenv_values(stream=io.StringIO(text))[VAR] == value
