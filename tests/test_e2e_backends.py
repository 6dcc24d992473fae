"""A rotation over Vault (primary), AWS Secrets Manager and an env file, with a
consumer, as an operator runs it: `rotator rotate PLAN --key-stdin` in its own
process against the Vault-protocol server, moto's server and the Adjutor
stand-in, all on loopback.  Then each way it can fail: one line, and nothing
written past a primary that was not written."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rotator.exitcodes import Exit
from rotator.secret import fingerprint
from rotator.testing import ROOT, VaultServer, plans
from rotator.testing.adjutor import AdjutorStandIn

try:
    from tests import forkserver
    from tests.fixtures_backends import *  # noqa: F403
    from tests.fixtures_backends import AWS_REGION
except ImportError:
    import forkserver  # type: ignore[no-redef]
    from fixtures_backends import *  # type: ignore[no-redef]  # noqa: F403
    from fixtures_backends import AWS_REGION  # type: ignore[no-redef]

VAULT_TOKEN = "e2e-vault-token"
SECRET_ID = "prod/billing/adjutor"

RELOAD = """
import os, pathlib
(pathlib.Path(__file__).parent / "reloaded").write_text(os.environ["ROTATOR_FINGERPRINT"])
"""

ARMED = "reading the key from stdin"


@pytest.fixture
def world(
    tmp_path: Path, standin: AdjutorStandIn, aws_env: str, secretsmanager: Any, monkeypatch: pytest.MonkeyPatch
) -> Any:
    old = standin.current_key
    server = VaultServer(tokens={VAULT_TOKEN: ROOT}).start()
    server.put("apps/billing", {"api_key": old, "db_password": "hunter2"})
    secretsmanager.create_secret(Name=SECRET_ID, SecretString=json.dumps({"api_key": old, "region": "eu"}))
    (tmp_path / "app.env").write_text(f"PORT=8080\nADJUTOR_API_KEY={old}\n")
    (tmp_path / "reload.py").write_text(RELOAD)
    plan = plans.write_plan(
        tmp_path / "plan.toml",
        plans.plan(
            "adjutor-backends",
            probe=plans.adjutor_probe(standin.models_url, retries=1, backoff=0.01),
            backends=[
                plans.vault("vault", server.url, "apps/billing", token_env="E2E_VAULT_TOKEN", primary=True),
                plans.aws("aws", SECRET_ID, region=AWS_REGION, endpoint_url=aws_env, json_key="api_key"),
                plans.envfile("app", tmp_path / "app.env"),
            ],
            consumers=[plans.command("reloader", [sys.executable, tmp_path / "reload.py"], retries=0)],
        ),
    )
    monkeypatch.setenv("E2E_VAULT_TOKEN", VAULT_TOKEN)
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")

    class World:
        pass

    w = World()
    w.plan, w.tmp, w.old, w.vault, w.sm, w.standin = plan, tmp_path, old, server, secretsmanager, standin  # type: ignore[attr-defined]
    try:
        yield w
    finally:
        server.stop()


def rotate(
    plan: Path, key: str, *extra: str, between: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI; `between` runs after arm, before the key is pasted."""
    proc = subprocess.Popen(
        [*forkserver.command(), "rotate", str(plan), "--key-stdin", "--json", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    head: list[str] = []
    if between is not None:
        for line in proc.stderr:
            head.append(line)
            if ARMED in line:
                between()
                break
    try:
        out, err = proc.communicate(key + "\n", timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(head) + err)


def aws_value(sm: Any, stage: str = "AWSCURRENT") -> dict[str, str]:
    return json.loads(sm.get_secret_value(SecretId=SECRET_ID, VersionStage=stage)["SecretString"])  # type: ignore[no-any-return]


def untouched(w: Any) -> None:
    """Nothing past the primary was written: AWS, the env file and the consumer are as before."""
    assert aws_value(w.sm) == {"api_key": w.old, "region": "eu"}
    assert len(w.sm.list_secret_version_ids(SecretId=SECRET_ID)["Versions"]) == 1
    assert (w.tmp / "app.env").read_text() == f"PORT=8080\nADJUTOR_API_KEY={w.old}\n"
    assert not (w.tmp / "reloaded").exists()


def clean(key: str, r: subprocess.CompletedProcess[str]) -> None:
    assert key not in r.stdout and key not in r.stderr


def test_rotation_over_vault_aws_and_envfile(world: Any) -> None:
    w = world
    new = w.standin.reset()  # Adjutor revokes the old key now
    r = rotate(w.plan, new, "--reason", "e2e")
    assert r.returncode == Exit.DONE, r.stderr
    report = json.loads(r.stdout)
    assert report["state"] == "done"
    targets = {t["name"]: t for t in report["targets"]}
    assert {n: t["status"] for n, t in targets.items()} == {"vault": "ok", "aws": "ok", "app": "ok", "reloader": "ok"}
    fp = fingerprint(new)
    assert report["new_fingerprint"] == fp
    # Vault: a new version; the previous one kept and readable; other fields kept.
    assert targets["vault"]["version"] == "2"
    assert targets["vault"]["detail"] == "v2 (previous v1 kept)"
    assert w.vault.get("apps/billing") == {"api_key": new, "db_password": "hunter2"}
    assert w.vault.get("apps/billing", version=1) == {"api_key": w.old, "db_password": "hunter2"}
    assert w.vault.writes == 1
    # AWS: AWSCURRENT is the new value, AWSPREVIOUS the old; other JSON fields kept; one new version.
    assert aws_value(w.sm) == {"api_key": new, "region": "eu"}
    assert aws_value(w.sm, "AWSPREVIOUS") == {"api_key": w.old, "region": "eu"}
    assert len(w.sm.list_secret_version_ids(SecretId=SECRET_ID)["Versions"]) == 2
    assert targets["aws"]["version"] in targets["aws"]["detail"]
    # The env file and the consumer.
    assert (w.tmp / "app.env").read_text() == f"PORT=8080\nADJUTOR_API_KEY={new}\n"
    assert (w.tmp / "reloaded").read_text() == fp
    clean(new, r)


def test_vault_sealed(world: Any) -> None:
    w = world
    w.vault.sealed = True
    new = w.standin.reset()
    r = rotate(w.plan, new)
    assert r.returncode == Exit.PREFLIGHT_FAILED, r.stderr
    assert "vault vault: sealed" in r.stderr
    w.vault.sealed = False
    assert w.vault.get("apps/billing") == {"api_key": w.old, "db_password": "hunter2"}
    untouched(w)
    clean(new, r)


def test_vault_bad_token(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    monkeypatch.setenv("E2E_VAULT_TOKEN", "wrong-token")
    new = w.standin.reset()
    r = rotate(w.plan, new)
    assert r.returncode == Exit.PREFLIGHT_FAILED, r.stderr
    assert "vault vault: the token is not valid (permission denied on auth/token/lookup-self)" in r.stderr
    assert w.vault.current_version("apps/billing") == 1
    untouched(w)
    clean(new, r)


def test_vault_cas_conflict_then_force(world: Any) -> None:
    w = world
    new = w.standin.reset()

    def someone_edits() -> None:
        w.vault.put("apps/billing", {"api_key": w.old, "db_password": "changed"})

    r = rotate(w.plan, new, between=someone_edits)
    assert r.returncode == Exit.CONFLICT, r.stderr
    report = json.loads(r.stdout)
    assert report["state"] == "conflict"
    assert (
        "the primary (vault) was not written: secret/apps/billing changed since arm (version 2, expected 1); "
        "rerun, or --force" in (report["message"])
    )
    assert "nothing else was written" in report["message"]
    assert w.vault.get("apps/billing") == {"api_key": w.old, "db_password": "changed"}
    untouched(w)
    clean(new, r)

    # --force writes over it (keeping the field the other writer changed).
    r = rotate(w.plan, new, "--force")
    assert r.returncode == Exit.DONE, r.stderr
    assert w.vault.get("apps/billing") == {"api_key": new, "db_password": "changed"}
    assert aws_value(w.sm)["api_key"] == new


def test_vault_access_lost_between_arm_and_write(world: Any) -> None:
    """The primary write itself is refused (403): one line, nothing else written."""
    w = world
    new = w.standin.reset()

    def policy_changes() -> None:
        w.vault.add_token(VAULT_TOKEN, {"secret/data/apps/billing": ["read"]})

    r = rotate(w.plan, new, between=policy_changes)
    assert r.returncode == Exit.PRIMARY_FAILED, r.stderr
    report = json.loads(r.stdout)
    assert report["message"] == (
        "the primary (vault) was not written: permission denied on secret/apps/billing "
        "(check the token's policy); nothing else was written; "
        "fix vault and run `rotator rotate` again with the same new key"
    )
    untouched(w)
    clean(new, r)


def test_vault_missing_capability(world: Any) -> None:
    w = world
    w.vault.add_token(VAULT_TOKEN, {"secret/data/apps/*": ["read"]})
    new = w.standin.reset()
    r = rotate(w.plan, new)
    assert r.returncode == Exit.PREFLIGHT_FAILED, r.stderr
    assert "vault vault: the token lacks the update capability on secret/data/apps/billing" in r.stderr
    untouched(w)


def test_aws_secret_missing(world: Any) -> None:
    w = world
    w.sm.delete_secret(SecretId=SECRET_ID, ForceDeleteWithoutRecovery=True)
    new = w.standin.reset()
    r = rotate(w.plan, new)
    assert r.returncode == Exit.PREFLIGHT_FAILED, r.stderr
    assert f"aws aws: secret {SECRET_ID} not found in {AWS_REGION} (create it, or set create = true)" in r.stderr
    assert w.vault.current_version("apps/billing") == 1
    clean(new, r)


def test_aws_scheduled_for_deletion(world: Any) -> None:
    w = world
    w.sm.delete_secret(SecretId=SECRET_ID, RecoveryWindowInDays=7)
    new = w.standin.reset()
    r = rotate(w.plan, new)
    assert r.returncode == Exit.PREFLIGHT_FAILED, r.stderr
    assert f"aws aws: {SECRET_ID} is scheduled for deletion on " in r.stderr
    assert "restore it first" in r.stderr
    assert w.vault.current_version("apps/billing") == 1
    clean(new, r)


def test_aws_access_denied(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    import requests

    w = world
    endpoint = w.sm.meta.endpoint_url
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=AWS_REGION)
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"3", timeout=5).raise_for_status()
    try:
        iam.create_user(UserName="reader")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["secretsmanager:DescribeSecret"], "Resource": "*"}],
        }
        iam.put_user_policy(UserName="reader", PolicyName="describe-only", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        new = w.standin.reset()
        r = rotate(w.plan, new)
    finally:
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=5).raise_for_status()
    assert r.returncode == Exit.PREFLIGHT_FAILED, r.stderr
    assert (
        f"aws aws: access denied: GetSecretValue on {SECRET_ID} (check the IAM policy for "
        "secretsmanager:GetSecretValue)"
    ) in r.stderr
    assert w.vault.current_version("apps/billing") == 1
    clean(new, r)
