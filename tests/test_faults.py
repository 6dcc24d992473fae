"""Faults during the fan-out, injected into real loopback services while a real
`rotator rotate` runs: a target that hangs, one that fails twice then works, one
that keeps failing (partial, then `resume`), a write whose answer is lost, and a
consumer that never confirms.  Each fault is injected after arm, the way it
would strike after the operator pressed "Reset app key"."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rotator.exitcodes import Exit
from rotator.secret import fingerprint
from rotator.testing import ROOT, VaultServer, plans

try:
    from tests import leakcheck as lc
except ImportError:
    import leakcheck as lc  # type: ignore[no-redef]

TOKEN = "faults-vault-token"
OLD = "sk_test_" + "0ld" * 10

RELOAD = """
import os, pathlib, sys
name = sys.argv[1] if len(sys.argv) > 1 else "reloaded"
(pathlib.Path(__file__).parent / name).write_text(os.environ["ROTATOR_FINGERPRINT"])
"""


@dataclass
class Rig:
    tmp: Path
    slow: VaultServer
    fast: VaultServer
    hook: lc.Hook

    def plan(self, **overrides: Any) -> Path:
        values = {
            "deadline": 60,
            "slow_timeout": 5,
            "slow_retries": 3,
            "fast_retries": 3,
            "hook_timeout": 5,
            **overrides,
        }
        v = values
        reload = [sys.executable, self.tmp / "reload.py"]
        vault = functools.partial(plans.vault, path="apps/billing", token_env="FAULTS_VAULT_TOKEN")
        return plans.write_plan(
            self.tmp / "plan.toml",
            plans.plan(
                "faults",
                rotation={"deadline": v["deadline"]},
                backends=[
                    plans.envfile("store", self.tmp / "store.env", primary=True),
                    vault("slow", self.slow.url, timeout=v["slow_timeout"], retries=v["slow_retries"]),
                    vault("fast", self.fast.url, timeout=5, retries=v["fast_retries"]),
                    plans.envfile("app", self.tmp / "app.env"),
                ],
                consumers=[
                    plans.webhook(
                        "hook",
                        self.hook.url,
                        hmac_env="FAULTS_HOOK_KEY",
                        confirm_url=self.hook.confirm_url,
                        reads_from=["app"],
                        timeout=v["hook_timeout"],
                        retries=2,
                        confirm_timeout=1,
                    ),
                    plans.command("reloader", reload, reads_from=["app"], retries=0),
                    plans.command("uses-fast", [*reload, "fast"], reads_from=["fast"], retries=0),
                ],
            ),
        )

    def rotate(self, plan: Path, inject: Callable[[], None]) -> tuple[str, int, dict[str, Any], str]:
        """Arm, inject the fault, paste a new key; (key, exit code, report, stderr)."""
        new = lc.canary()
        run = lc.start("rotate", str(plan), "--key-stdin", "--json", logs=self.tmp / "logs")
        lc.wait_for("arm", lc.armed("faults"), proc=run)
        inject()
        run.send(new + "\n")
        code = run.wait(120)
        return new, code, json.loads(run.out), run.err

    def holders(self) -> dict[str, str | None]:
        def vault_fp(v: VaultServer) -> str | None:
            data = v.get("apps/billing") or {}
            return fingerprint(data["api_key"]) if data.get("api_key") else None

        def file_fp(name: str) -> str | None:
            p = self.tmp / name
            return p.read_text() if p.exists() else None

        return {
            "store": lc.env_fp(self.tmp / "store.env"),
            "slow": vault_fp(self.slow),
            "fast": vault_fp(self.fast),
            "app": lc.env_fp(self.tmp / "app.env"),
            "hook": self.hook.reports,
            "reloader": file_fp("reloaded"),
            "uses-fast": file_fp("fast"),
        }


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setenv("FAULTS_VAULT_TOKEN", TOKEN)
    monkeypatch.setenv("FAULTS_HOOK_KEY", "hook-signing-key-for-tests")
    for name in ("store.env", "app.env"):
        (tmp_path / name).write_text(f"ADJUTOR_API_KEY={OLD}\n")
    (tmp_path / "reload.py").write_text(RELOAD)
    with (
        VaultServer(tokens={TOKEN: ROOT}) as slow,
        VaultServer(tokens={TOKEN: ROOT}) as fast,
        lc.Hook(reports=fingerprint(OLD)) as hook,
    ):
        for v in (slow, fast):
            v.put("apps/billing", {"api_key": OLD})
        yield Rig(tmp_path, slow, fast, hook)


def targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in report["targets"]}


def test_hung_targets_do_not_delay_the_others(rig: Rig) -> None:
    """A Vault that answers after 30 s and a webhook that answers after 30 s, both with a 3 s
    timeout: they fail as "timed out" at their timeout (or the deadline); everything else is
    done long before."""
    timeout, deadline = 3.0, 4.5
    plan = rig.plan(slow_timeout=timeout, slow_retries=5, hook_timeout=timeout, deadline=deadline)

    def hang() -> None:
        rig.slow.latency = 30.0
        rig.hook.hang = 30.0

    new, code, report, err = rig.rotate(plan, hang)
    assert code == Exit.PARTIAL, err
    t = targets(report)
    assert t["slow"]["status"] == "failed" and t["slow"]["detail"] == "timed out"
    assert t["hook"]["status"] == "failed" and "timed out" in t["hook"]["detail"]
    # Retries stop at the overall deadline: the second attempt got only what was left of it.
    assert t["slow"]["attempts"] == 2
    assert timeout <= t["slow"]["finished"] < deadline + 0.5
    others = {n: r["finished"] for n, r in t.items() if n not in ("slow", "hook")}
    assert all(r["status"] == "ok" for n, r in t.items() if n not in ("slow", "hook")), t
    # Not held up by the hung ones: one that waited for them would end at the timeout or later.
    # (A command consumer is a process start: 0.79 s seen at load 6, so no tighter bound.)
    assert max(others.values()) < timeout - 0.5, others
    fp = fingerprint(new)
    assert {k: v for k, v in rig.holders().items() if k not in ("slow", "hook")} == dict.fromkeys(
        ("store", "fast", "app", "reloader", "uses-fast"), fp
    )
    line = err.strip().splitlines()
    assert any("slow (failed)" in x and "hook (failed)" in x for x in line), err

    # The fault goes away; resume finishes the two that failed.
    rig.slow.latency = rig.hook.hang = 0.0
    r = lc.cli("resume", report["id"], "--json")
    assert r.returncode == Exit.DONE, r.stderr
    assert rig.holders() == dict.fromkeys(rig.holders(), fp)


def test_flaky_targets_are_retried_and_end_ok(rig: Rig) -> None:
    """Vault answers 503 twice, then works; the webhook answers 500 twice, then works.  Another
    Vault performs the write but its answer is lost: the retry finds the key there and makes no
    second version."""

    def flaky() -> None:
        rig.fast.fail_next(2, 503, contains="data/apps/billing", method="POST")
        rig.hook.fail = 2
        rig.slow.fail_next(1, 500, contains="data/apps/billing", method="POST", after=True)

    new, code, report, err = rig.rotate(rig.plan(), flaky)
    assert code == Exit.DONE, err
    t = targets(report)
    assert (t["fast"]["status"], t["fast"]["attempts"]) == ("ok", 3)
    assert (t["hook"]["status"], t["hook"]["attempts"]) == ("ok", 3)
    assert (t["slow"]["status"], t["slow"]["attempts"]) == ("ok", 2)
    assert "already current" in t["slow"]["detail"]
    assert rig.slow.versions("apps/billing") == [1, 2] and rig.fast.versions("apps/billing") == [1, 2]
    assert rig.hook.posts == 3 and len(rig.hook.received) == 1
    assert rig.holders() == dict.fromkeys(rig.holders(), fingerprint(new))


def test_a_target_that_keeps_failing_is_partial_then_resumed(rig: Rig) -> None:
    def broken() -> None:
        rig.fast.fail_next(3, 503, contains="data/apps/billing", method="POST")  # every attempt (1 + 2 retries)

    new, code, report, err = rig.rotate(rig.plan(fast_retries=2), broken)
    assert code == Exit.PARTIAL, err
    assert report["state"] == "partial"
    t = targets(report)
    assert t["fast"]["status"] == "failed" and t["fast"]["attempts"] == 3
    assert t["fast"]["detail"] == "vault fast: unavailable (HTTP 503) on secret/apps/billing"
    # What reads from it is not told to reload a key it cannot have; everything else is done.
    assert t["uses-fast"]["status"] == "skipped" and "fast not written" in t["uses-fast"]["detail"]
    assert all(r["status"] == "ok" for n, r in t.items() if n not in ("store", "fast", "uses-fast"))
    # The operator sees which target, why, and what to run.
    assert "unavailable (HTTP 503)" in err and f"rotator resume {report['id']}" in err
    assert "fast (failed)" in report["message"] and "uses-fast (skipped)" in report["message"]

    r = lc.cli("resume", report["id"], "--json")
    assert r.returncode == Exit.DONE, r.stderr
    resumed = targets(json.loads(r.stdout))
    assert resumed["fast"]["status"] == "ok" and resumed["uses-fast"]["status"] == "ok"
    assert resumed["app"]["status"] == "unchanged"
    assert rig.holders() == dict.fromkeys(rig.holders(), fingerprint(new))


def test_a_consumer_that_never_confirms_is_reported_with_what_it_reports(rig: Rig) -> None:
    def stale() -> None:
        rig.hook.stale = True  # takes the webhook (204) but keeps running on the old key

    new, code, report, err = rig.rotate(rig.plan(), stale)
    assert code == Exit.PARTIAL, err
    hook = targets(report)["hook"]
    assert hook["status"] == "unconfirmed"
    assert hook["fingerprint"] == fingerprint(OLD)  # what it does report
    assert fingerprint(OLD) in hook["detail"] and fingerprint(new) in hook["detail"]
    assert "hook (unconfirmed)" in report["message"]
    assert all(t["status"] in ("ok", "unchanged") for t in report["targets"] if t["name"] != "hook")
