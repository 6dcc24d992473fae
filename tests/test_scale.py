"""Two hundred webhook consumers, each its own origin in a real process: arm and rotate.

Regression for issue 15: every consumer's first request built its own TLS context
(the CA bundle loaded again, 70-110 ms of CPU each on a 2-core VM) on the event
loop, so 179 consumers' arm checks, all started at once, timed out together after
their 10 s.  Nothing here is timed: the arm must succeed within the consumers' own
(default) timeout, and the rotation must confirm every consumer.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator import pipeline
from rotator.journal import Journal
from rotator.pipeline import arm
from rotator.pipeline.state import RotationState
from rotator.plan import load_plan
from rotator.secret import Secret, fingerprint

N = 200
HOOK_ENV = "SCALE_HOOK_KEY"
OLD, NEW = "sk_live_scale_old_0123456789", "sk_live_scale_new_9876543210"

# N consumers on N ports of one asyncio process: POST /reload (HMAC-verified) switches
# the consumer to the notice's fingerprint; GET /fingerprint reports the one in use.
FARM = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from rotator.consumer import InvalidSignature, verify_webhook

    KEY = os.environ["SCALE_HOOK_KEY"].encode()

    async def serve(fps, i, reader, writer):
        try:
            while True:
                head = (await reader.readuntil(b"\\r\\n\\r\\n")).decode("latin-1").split("\\r\\n")
                method, target, _ = head[0].split(" ", 2)
                headers = {}
                for line in head[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length") or 0)
                body = await reader.readexactly(n) if n else b""
                status, payload = 200, {"ok": True}
                if method == "POST" and target == "/reload":
                    try:
                        verify_webhook(KEY, headers, body)
                        fps[i] = json.loads(body)["fingerprint"]
                    except (InvalidSignature, ValueError, KeyError):
                        status, payload = 401, {"ok": False}
                elif target == "/fingerprint":
                    payload = {"fingerprint": fps[i]}
                raw = json.dumps(payload).encode()
                out = (
                    f"HTTP/1.1 {status} OK\\r\\nContent-Type: application/json\\r\\n"
                    f"Content-Length: {len(raw)}\\r\\n\\r\\n"
                ).encode()
                writer.write(out if method == "HEAD" else out + raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        n, fp = int(sys.argv[1]), sys.argv[2]
        fps = [fp] * n
        ports = []
        for i in range(n):
            server = await asyncio.start_server(
                lambda r, w, i=i: serve(fps, i, r, w), "127.0.0.1", 0, backlog=256
            )
            ports.append(server.sockets[0].getsockname()[1])
        print(json.dumps(ports), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
    """
)


@pytest.fixture
def farm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    monkeypatch.setenv(HOOK_ENV, "whsec_scale_test_key")
    script = tmp_path / "farm.py"
    script.write_text(FARM)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(N), fingerprint(OLD)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, HOOK_ENV: "whsec_scale_test_key"},
    )
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


def test_two_hundred_webhook_consumers_arm_within_their_timeout_and_all_confirm(
    tmp_path: Path, farm: list[int]
) -> None:
    (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={OLD}\n")
    consumers = "".join(
        f"""
[[consumers]]
name = "svc-{i}"
type = "webhook"
url = "http://127.0.0.1:{port}/reload"
confirm_url = "http://127.0.0.1:{port}/fingerprint"
hmac_key = {{ env = "{HOOK_ENV}" }}
"""
        for i, port in enumerate(farm)
    )
    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(
        f"""
[secret]
name = "scale"

[[backends]]
name = "store"
type = "envfile"
primary = true
path = "{tmp_path}/store.env"
variable = "ADJUTOR_API_KEY"
{consumers}"""
    )
    plan = load_plan(plan_path)

    async def scenario() -> tuple[list[str], str, list[str]]:
        rot = RotationState(plan, Journal(), reason="test")
        try:
            armed = await arm.run(rot)
            problems = armed.problems()
            if not armed.ok:
                return problems, "not armed", []
            rot.key_arrived()
            report = await pipeline.rotate(rot, Secret(NEW))
            return problems, report.state, [f"{t.name}: {t.status}" for t in report.targets if t.status != "ok"]
        finally:
            await arm.disarm(rot)

    problems, state, not_ok = asyncio.run(scenario())
    assert problems == []
    assert state == "done", not_ok
    assert not_ok == []
    assert (tmp_path / "store.env").read_text() == f"ADJUTOR_API_KEY={NEW}\n"
