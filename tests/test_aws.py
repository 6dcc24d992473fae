"""The aws backend against moto's server mode, with real boto3 over HTTP (no patching)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from rotator_plugins.aws import AwsSecretsManagerBackend, request_token

from rotator.plan import PlanError, load_plan
from rotator.plugin import Conflict, PluginError
from rotator.secret import Secret

try:
    from tests.fixtures_backends import *  # noqa: F403
    from tests.fixtures_backends import AWS_REGION, opened, run
except ImportError:
    from fixtures_backends import *  # type: ignore[no-redef]  # noqa: F403
    from fixtures_backends import AWS_REGION, opened, run  # type: ignore[no-redef]

OLD = "sk_live_OLDoldOLDold111"
NEW = "sk_live_NEWnewNEWnew222"
NEWER = "sk_live_NEWERnewer333"
KEYS = (OLD, NEW, NEWER)
TOKEN = "rot-20240501-0001:aws"  # what a rotation passes; too short for AWS, so derived


def settings(endpoint: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": "aws",
        "type": "aws",
        "secret_id": "prod/billing/adjutor",
        "region": AWS_REGION,
        "endpoint_url": endpoint,
    }
    out.update(extra)
    return out


def stages(sm: Any, secret_id: str = "prod/billing/adjutor") -> dict[str, list[str]]:
    versions = sm.list_secret_version_ids(SecretId=secret_id, IncludeDeprecated=True)["Versions"]
    return {v["VersionId"]: sorted(v.get("VersionStages", [])) for v in versions}


def assert_clean(message: str) -> None:
    assert "\n" not in message
    for key in KEYS:
        assert key not in message


def test_request_token_is_stable_and_fits() -> None:
    derived = request_token(TOKEN)
    assert derived == request_token(TOKEN) and 32 <= len(derived) <= 64
    assert request_token("x" * 40) == "x" * 40
    assert request_token("a" * 65) != "a" * 65 and len(request_token("a" * 65)) == 36


def test_read_write_moves_awscurrent_and_keeps_awsprevious(aws_env: str, secretsmanager: Any) -> None:
    old_version = secretsmanager.create_secret(Name="prod/billing/adjutor", SecretString=OLD)["VersionId"]

    async def go() -> str:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env)) as b:
            check = await b.preflight()
            assert check.ok is True, check.detail
            assert check.warnings == []
            stored = await b.read()
            assert stored.secret == Secret(OLD) and stored.version == old_version
            written = await b.write(Secret(NEW), token=TOKEN, expected_version=stored.version)
            assert written.version == request_token(TOKEN)
            assert written.detail == f"{written.version} is AWSCURRENT (previous {old_version} kept as AWSPREVIOUS)"
            back = await b.read()
            assert back.secret == Secret(NEW) and back.version == written.version
            return str(written.version)

    new_version = run(go())
    assert stages(secretsmanager) == {old_version: ["AWSPREVIOUS"], new_version: ["AWSCURRENT"]}
    assert secretsmanager.get_secret_value(SecretId="prod/billing/adjutor")["SecretString"] == NEW
    previous = secretsmanager.get_secret_value(SecretId="prod/billing/adjutor", VersionStage="AWSPREVIOUS")
    assert previous["SecretString"] == OLD


def test_retried_write_with_the_same_token_makes_one_version(aws_env: str, secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="prod/billing/adjutor", SecretString=OLD)

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env)) as b:
            first = await b.write(Secret(NEW), token=TOKEN, expected_version=None)
            second = await b.write(Secret(NEW), token=TOKEN, expected_version=None)
            assert first.version == second.version

    run(go())
    assert len(stages(secretsmanager)) == 2


def test_a_32_to_64_character_token_is_the_version_id(aws_env: str, secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="prod/billing/adjutor", SecretString=OLD)
    token = "0f8c2a8e4b6d4f1e9a3c5b7d9e1f3a5c-aws"

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env)) as b:
            assert (await b.write(Secret(NEW), token=token, expected_version=None)).version == token

    run(go())


def test_reusing_a_token_for_another_key_is_refused(aws_env: str, secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="prod/billing/adjutor", SecretString=OLD)

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env)) as b:
            await b.write(Secret(NEW), token=TOKEN, expected_version=None)
            with pytest.raises(PluginError) as err:
                await b.write(Secret(NEWER), token=TOKEN, expected_version=None)
            assert "request token is already used by a different value" in str(err.value)
            assert not err.value.retryable
            assert_clean(str(err.value))

    run(go())


def test_json_key_keeps_other_fields(aws_env: str, secretsmanager: Any) -> None:
    blob = {"api_key": OLD, "db_password": "hunter2", "port": 5432}
    secretsmanager.create_secret(Name="prod/billing/adjutor", SecretString=json.dumps(blob))

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env, json_key="api_key")) as b:
            assert (await b.preflight()).ok
            stored = await b.read()
            assert stored.secret == Secret(OLD)
            written = await b.write(Secret(NEW), token=TOKEN, expected_version=stored.version)
            # A retry after the answer was lost: the version is already current.
            again = await b.write(Secret(NEW), token=TOKEN, expected_version=stored.version)
            assert again.version == written.version
            assert (await b.read()).secret == Secret(NEW)

    run(go())
    value = json.loads(secretsmanager.get_secret_value(SecretId="prod/billing/adjutor")["SecretString"])
    assert value == {"api_key": NEW, "db_password": "hunter2", "port": 5432}
    assert len(stages(secretsmanager)) == 2


def test_json_key_field_not_set_yet(aws_env: str, secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="prod/billing/adjutor", SecretString='{"other": "x"}')

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env, json_key="api_key")) as b:
            check = await b.preflight()
            assert check.ok is True and "field api_key not set yet" in check.detail
            assert (await b.read()).secret is None
            await b.write(Secret(NEW), token=TOKEN, expected_version=None)

    run(go())
    assert json.loads(secretsmanager.get_secret_value(SecretId="prod/billing/adjutor")["SecretString"]) == {
        "other": "x",
        "api_key": NEW,
    }


def test_json_key_conflict_when_changed_since_arm(aws_env: str, secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="prod/billing/adjutor", SecretString=json.dumps({"api_key": OLD}))

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env, json_key="api_key")) as b:
            stored = await b.read()
            changed = secretsmanager.put_secret_value(
                SecretId="prod/billing/adjutor", SecretString=json.dumps({"api_key": OLD, "new": "field"})
            )["VersionId"]
            with pytest.raises(Conflict) as err:
                await b.write(Secret(NEW), token=TOKEN, expected_version=stored.version)
            assert str(err.value) == (
                f"aws aws: prod/billing/adjutor changed since arm (version {changed}, expected {stored.version}); "
                "rerun, or --force"
            )

    run(go())


def test_json_key_on_a_plain_string_fails_preflight_without_showing_it(aws_env: str, secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="prod/billing/adjutor", SecretString=OLD)

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env, json_key="api_key")) as b:
            check = await b.preflight()
            assert check.ok is False
            assert check.detail == (
                "aws aws: prod/billing/adjutor SecretString is not a JSON object, but json_key = 'api_key' is set"
            )

    run(go())


def test_not_found(aws_env: str) -> None:
    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env)) as b:
            check = await b.preflight()
            assert check.ok is False
            expected = "aws aws: secret prod/billing/adjutor not found in us-east-1 (create it, or set create = true)"
            assert check.detail == expected
            with pytest.raises(PluginError) as err:
                await b.write(Secret(NEW), token=TOKEN, expected_version=None)
            assert str(err.value) == expected and not err.value.retryable

    run(go())


def test_create_true_creates_the_secret(aws_env: str, secretsmanager: Any) -> None:
    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env, create=True)) as b:
            check = await b.preflight()
            assert check.ok is True and "will be created" in check.detail
            written = await b.write(Secret(NEW), token=TOKEN, expected_version=None)
            assert written.detail.startswith("created prod/billing/adjutor")
            assert (await b.read()).secret == Secret(NEW)

    run(go())
    assert secretsmanager.get_secret_value(SecretId="prod/billing/adjutor")["SecretString"] == NEW


def test_scheduled_for_deletion(aws_env: str, secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="prod/billing/adjutor", SecretString=OLD)
    secretsmanager.delete_secret(SecretId="prod/billing/adjutor", RecoveryWindowInDays=7)
    when = secretsmanager.describe_secret(SecretId="prod/billing/adjutor")["DeletedDate"]

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env)) as b:
            check = await b.preflight()
            assert check.ok is False
            assert check.detail == (
                f"aws aws: prod/billing/adjutor is scheduled for deletion on {when:%Y-%m-%d}; restore it first "
                "(aws secretsmanager restore-secret --secret-id prod/billing/adjutor)"
            )
            # (AWS also refuses PutSecretValue on such a secret; moto does not, so that is not tested here.)

    run(go())


def test_aws_managed_rotation_is_a_warning(aws_env: str, secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="prod/billing/adjutor", SecretString=OLD)
    secretsmanager.rotate_secret(
        SecretId="prod/billing/adjutor", RotationRules={"AutomaticallyAfterDays": 30}, RotateImmediately=False
    )
    assert secretsmanager.describe_secret(SecretId="prod/billing/adjutor")["RotationEnabled"] is True

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env)) as b:
            check = await b.preflight()
            assert check.ok is True
            assert len(check.warnings) == 1 and "AWS-managed rotation is on" in check.warnings[0]

    run(go())


def test_secret_without_a_current_value(aws_env: str, secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="prod/billing/adjutor")

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env)) as b:
            check = await b.preflight()
            assert check.ok is True and "no AWSCURRENT value yet" in check.detail
            stored = await b.read()
            assert stored.secret is None and stored.version is None
            await b.write(Secret(NEW), token=TOKEN, expected_version=None)
            assert (await b.read()).secret == Secret(NEW)

    run(go())


def test_unreachable_endpoint_is_retryable(aws_env: str) -> None:
    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings("http://127.0.0.1:9", timeout=2)) as b:
            check = await b.preflight()
            assert check.ok is False
            assert check.detail == "aws aws: cannot reach Secrets Manager at http://127.0.0.1:9"
            with pytest.raises(PluginError) as err:
                await b.write(Secret(NEW), token=TOKEN, expected_version=None)
            assert err.value.retryable
            assert_clean(str(err.value))

    run(go())


def test_no_credentials(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env)):
            pass

    with pytest.raises(PluginError) as err:
        run(go())
    assert str(err.value) == "aws aws: no AWS credentials found (environment, profile, SSO or instance role)"


def test_assume_role(aws_env: str, secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="prod/billing/adjutor", SecretString=OLD)
    role_arn = "arn:aws:iam::123456789012:role/rotator-writer"

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env, role_arn=role_arn)) as b:
            assert (await b.preflight()).ok
            await b.write(Secret(NEW), token=TOKEN, expected_version=None)

    run(go())
    assert secretsmanager.get_secret_value(SecretId="prod/billing/adjutor")["SecretString"] == NEW


@pytest.fixture
def iam_enforced(aws_env: str) -> Iterator[str]:
    """moto checks IAM policies from the 5th request on (the first 4 set things up)."""
    requests.post(f"{aws_env}/moto-api/reset-auth", data=b"4", timeout=5).raise_for_status()
    try:
        yield aws_env
    finally:
        requests.post(f"{aws_env}/moto-api/reset-auth", data=b"inf", timeout=5).raise_for_status()


def test_access_denied(iam_enforced: str, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = iam_enforced
    sm = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=AWS_REGION)
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=AWS_REGION)
    sm.create_secret(Name="prod/billing/adjutor", SecretString=OLD)  # 1
    iam.create_user(UserName="reader")  # 2
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["secretsmanager:DescribeSecret"], "Resource": "*"}],
    }
    iam.put_user_policy(UserName="reader", PolicyName="describe-only", PolicyDocument=json.dumps(policy))  # 3
    key = iam.create_access_key(UserName="reader")["AccessKey"]  # 4
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(endpoint)) as b:
            check = await b.preflight()
            assert check.ok is False
            assert check.detail == (
                "aws aws: access denied: GetSecretValue on prod/billing/adjutor "
                "(check the IAM policy for secretsmanager:GetSecretValue)"
            )
            with pytest.raises(PluginError) as err:
                await b.write(Secret(NEW), token=TOKEN, expected_version=None)
            assert str(err.value) == (
                "aws aws: access denied: PutSecretValue on prod/billing/adjutor "
                "(check the IAM policy for secretsmanager:PutSecretValue)"
            )
            assert not err.value.retryable

    run(go())


def test_no_error_message_holds_a_key(aws_env: str, secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="prod/billing/adjutor", SecretString=json.dumps({"api_key": OLD}))
    messages: list[str] = []

    async def go() -> None:
        async with opened(AwsSecretsManagerBackend, **settings(aws_env, json_key="api_key")) as b:
            stored = await b.read()
            secretsmanager.put_secret_value(
                SecretId="prod/billing/adjutor", SecretString=json.dumps({"api_key": NEWER})
            )
            for attempt in range(2):
                try:
                    await b.write(Secret(NEW), token=TOKEN, expected_version=stored.version)
                except PluginError as exc:
                    messages.extend([str(exc), repr(exc)])
            await b.write(Secret(NEW), token=TOKEN, expected_version=None)
            try:
                await b.write(Secret(NEWER), token=TOKEN, expected_version=None)
            except PluginError as exc:
                messages.extend([str(exc), repr(exc)])
        secretsmanager.put_secret_value(SecretId="prod/billing/adjutor", SecretString=OLD)
        async with opened(AwsSecretsManagerBackend, **settings(aws_env, json_key="api_key")) as b:
            messages.append((await b.preflight()).detail)

    run(go())
    assert len(messages) == 7
    for m in messages:
        assert_clean(m)


def _plan(tmp_path: Path, backend: str) -> Path:
    p = tmp_path / "plan.toml"
    p.write_text(f'[secret]\nname = "x"\n\n[[backends]]\nname = "a"\ntype = "aws"\nprimary = true\n{backend}\n')
    return p


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("", "backends[0].secret_id: required"),
        ('secret_id = "x"\nregion = "Ireland"', "backends[0].region"),
        ('secret_id = "x"\nendpoint_url = "localhost:5000"', "backends[0].endpoint_url: must start with http"),
        ('secret_id = "x"\nrole_arn = "rotator"', "backends[0].role_arn"),
        ('secret_id = "x"\naccess_key = "AKIA"', "backends[0].access_key: unknown key"),
    ],
)
def test_plan_validation(tmp_path: Path, body: str, problem: str) -> None:
    with pytest.raises(PlanError) as err:
        load_plan(_plan(tmp_path, body))
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_plan_loads(tmp_path: Path) -> None:
    plan = load_plan(_plan(tmp_path, 'secret_id = "prod/x"\nregion = "eu-west-1"\njson_key = "api_key"'))
    b = plan.primary
    assert (b.secret_id, b.region, b.json_key, b.create) == ("prod/x", "eu-west-1", "api_key", False)  # type: ignore[attr-defined]
