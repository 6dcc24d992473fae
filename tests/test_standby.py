"""The standby slot of alternating plans, on each built-in backend against a real store:
Vault (the Vault-protocol server with real hvac), AWS (moto's server with real boto3)
and an env file.  One contract, run by all three: write the standby, read the slots,
swap, swap back, retried calls change nothing, a stale version is a Conflict, the
metadata never holds a key, and a backend that cannot hold a standby says so at arm."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from rotator_plugins._dotenv import parse_dotenv
from rotator_plugins.aws import AwsSecretsManagerBackend
from rotator_plugins.envfile import EnvFileBackend
from rotator_plugins.vault import VaultBackend

from rotator.plugin import Backend, Conflict, PluginError
from rotator.secret import Secret, fingerprint
from rotator.testing import VaultServer

try:
    from tests import leakcheck
    from tests.fixtures_backends import *  # noqa: F403
    from tests.fixtures_backends import AWS_REGION, ROOT_TOKEN, opened, run
except ImportError:  # pragma: no cover - run from inside tests/
    sys.path.insert(0, str(Path(__file__).parent))
    import leakcheck  # type: ignore[no-redef]
    from fixtures_backends import *  # type: ignore[no-redef]  # noqa: F403
    from fixtures_backends import AWS_REGION, ROOT_TOKEN, opened, run  # type: ignore[no-redef]

BLUE, GREEN = "payments-blue", "payments-green"


@dataclass
class Store:
    """One backend's real store, as the test sees it from outside rotator."""

    open: Callable[..., AbstractAsyncContextManager[Backend]]
    seed: Callable[[str], None]  # the active key, as a single-app plan left it
    fields: Callable[[], dict[str, str]]  # every stored value by name (the current version)
    slot_names: tuple[str, str, str]  # (active, standby, metadata)
    tamper: Callable[[], None]  # someone else changes the secret


@pytest.fixture
def vault_store(vault: VaultServer, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("TEST_VAULT_TOKEN", ROOT_TOKEN)
    base = {"name": "vault", "type": "vault", "primary": True, "url": vault.url, "path": "apps/billing"}

    def open_(**extra: Any) -> AbstractAsyncContextManager[Backend]:
        return opened(VaultBackend, **base, token={"env": "TEST_VAULT_TOKEN"}, **extra)

    def fields() -> dict[str, str]:
        return {k: str(v) for k, v in (vault.get("apps/billing") or {}).items()}

    def tamper() -> None:
        vault.put("apps/billing", {**fields(), "note": "edited by a colleague"})

    def seed(key: str) -> None:
        vault.put("apps/billing", {"api_key": key, "owner": "billing"})

    return Store(
        open_,
        seed,
        fields,
        ("api_key", "api_key_standby", "api_key_slots"),
        tamper,
    )


@pytest.fixture
def aws_store(aws_env: str, secretsmanager: Any) -> Store:
    sid = "prod/billing/adjutor"

    def open_(**extra: Any) -> AbstractAsyncContextManager[Backend]:
        return opened(
            AwsSecretsManagerBackend,
            name="aws",
            type="aws",
            primary=True,
            secret_id=sid,
            region=AWS_REGION,
            endpoint_url=aws_env,
            json_key="api_key",
            **extra,
        )

    def fields() -> dict[str, str]:
        obj = json.loads(secretsmanager.get_secret_value(SecretId=sid)["SecretString"])
        return {k: str(v) for k, v in obj.items()}

    def tamper() -> None:
        secretsmanager.put_secret_value(SecretId=sid, SecretString=json.dumps({**fields(), "note": "edited"}))

    def seed(key: str) -> None:
        secretsmanager.create_secret(Name=sid, SecretString=json.dumps({"api_key": key, "owner": "billing"}))

    return Store(
        open_,
        seed,
        fields,
        ("api_key", "api_key_standby", "api_key_slots"),
        tamper,
    )


@pytest.fixture
def envfile_store(tmp_path: Path) -> Store:
    env = tmp_path / ".env"

    def open_(**extra: Any) -> AbstractAsyncContextManager[Backend]:
        return opened(
            EnvFileBackend, name="env", type="envfile", primary=True, path=str(env), variable="ADJUTOR_API_KEY", **extra
        )

    def fields() -> dict[str, str]:
        return {b.key: b.value or "" for b in parse_dotenv(env.read_text()).bindings}

    def tamper() -> None:
        env.write_text(env.read_text().replace("ADJUTOR_API_KEY_STANDBY=", "ADJUTOR_API_KEY_STANDBY=sk_live_X", 1))

    def seed(key: str) -> None:
        env.write_text(f"# billing\nOWNER=billing\nADJUTOR_API_KEY={key}\n")

    return Store(
        open_,
        seed,
        fields,
        ("ADJUTOR_API_KEY", "ADJUTOR_API_KEY_STANDBY", "ADJUTOR_API_KEY_SLOTS"),
        tamper,
    )


@pytest.fixture(params=["vault", "aws", "envfile"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    yield request.getfixturevalue(f"{request.param}_store")


def no_key_outside_the_slots(store: Store, keys: list[str]) -> None:
    """Every stored value but the two slots (the metadata included) holds no key in any form."""
    active, standby, _ = store.slot_names
    hits = []
    for name, value in store.fields().items():
        if name not in (active, standby):
            hits += leakcheck.find(value, keys, name)
    assert hits == []


def test_write_standby_read_swap_and_swap_back(store: Store) -> None:
    blue, green = leakcheck.canary(), leakcheck.canary()
    store.seed(blue)
    active_name, standby_name, meta_name = store.slot_names

    async def scenario() -> None:
        async with store.open() as b:
            assert b.can_hold_standby
            check = await b.preflight_standby()
            assert check.ok is not False, check.detail
            empty = await b.read_slots()
            assert empty.active is not None and empty.active.fingerprint == fingerprint(blue)
            assert empty.active.app is None and empty.standby is None  # nothing recorded yet

            w = await b.write_standby(
                Secret(green), app=GREEN, token="rot-1:seed", expected_version=empty.version, active_app=BLUE
            )
            assert green not in w.detail and blue not in w.detail
            slots = await b.read_slots()
            assert slots.active is not None and slots.standby is not None
            assert (slots.active.app, slots.active.fingerprint) == (BLUE, fingerprint(blue))
            assert (slots.standby.app, slots.standby.fingerprint) == (GREEN, fingerprint(green))
            assert slots.standby.set_at is not None and datetime.fromisoformat(slots.standby.set_at)
            assert slots.standby_secret == Secret(green) and green not in repr(slots)
            assert (await b.read()).secret == Secret(blue)  # the active value is untouched
            assert store.fields()["owner" if "owner" in store.fields() else "OWNER"] == "billing"
            no_key_outside_the_slots(store, [blue, green])

            # A retried write with the same token makes no second write.
            before = store.fields()
            again = await b.write_standby(
                Secret(green), app=GREEN, token="rot-1:seed", expected_version=empty.version, active_app=BLUE
            )
            assert "already" in again.detail and store.fields() == before

            # Promote: active <-> standby in one write; consumers now read green.
            await b.swap_slots(token="rot-2:promote", expected_version=slots.version)
            promoted = await b.read_slots()
            assert promoted.active is not None and promoted.standby is not None
            assert (promoted.active.app, promoted.standby.app) == (GREEN, BLUE)
            assert promoted.active.set_at == slots.standby.set_at  # a key's age moves with it
            assert (await b.read()).secret == Secret(green)
            assert store.fields()[active_name] == green and store.fields()[standby_name] == blue
            no_key_outside_the_slots(store, [blue, green])

            # Retried promote (same token): not swapped back.
            before = store.fields()
            await b.swap_slots(token="rot-2:promote", expected_version=slots.version)
            assert store.fields() == before

            # Roll back: swap again, with its own token.
            await b.swap_slots(token="rot-2:rollback", expected_version=promoted.version)
            back = await b.read_slots()
            assert back.active is not None and back.standby is not None
            assert (back.active.app, back.active.fingerprint) == (BLUE, fingerprint(blue))
            assert (back.standby.app, back.standby.fingerprint) == (GREEN, fingerprint(green))
            no_key_outside_the_slots(store, [blue, green])
            assert meta_name in store.fields()

    run(scenario())


def test_a_new_machine_reads_the_state_from_the_store_alone(store: Store) -> None:
    """Slot metadata is in the primary: a second, fresh backend object sees what the first wrote."""
    blue, green = leakcheck.canary(), leakcheck.canary()
    store.seed(blue)

    async def scenario() -> None:
        async with store.open() as first:
            await first.write_standby(Secret(green), app=GREEN, token="t1", expected_version=None, active_app=BLUE)
        async with store.open() as fresh:
            slots = await fresh.read_slots()
            assert slots.active is not None and slots.standby is not None
            assert (slots.active.app, slots.standby.app) == (BLUE, GREEN)

    run(scenario())


def test_stale_version_is_a_conflict_and_writes_nothing(store: Store) -> None:
    blue, green, newer = leakcheck.canary(), leakcheck.canary(), leakcheck.canary()
    store.seed(blue)

    async def scenario() -> None:
        async with store.open() as b:
            await b.write_standby(Secret(green), app=GREEN, token="t1", expected_version=None, active_app=BLUE)
            armed = await b.read_slots()
            store.tamper()
            before = store.fields()
            with pytest.raises(Conflict) as swap:
                await b.swap_slots(token="t2", expected_version=armed.version)
            with pytest.raises(Conflict) as standby:
                await b.write_standby(Secret(newer), app=GREEN, token="t3", expected_version=armed.version)
            assert store.fields() == before
            for exc in (swap.value, standby.value):
                assert not exc.retryable and leakcheck.find(str(exc), [blue, green, newer, "sk_live_X"], "msg") == []

    run(scenario())


def test_the_standby_is_never_the_active_key(store: Store) -> None:
    blue = leakcheck.canary()
    store.seed(blue)

    async def scenario() -> None:
        async with store.open() as b:
            with pytest.raises(PluginError) as exc:
                await b.write_standby(Secret(blue), app=GREEN, token="t1", expected_version=None)
            assert "active key" in str(exc.value) and blue not in str(exc.value)

    run(scenario())


def test_swap_with_an_empty_standby_is_refused(store: Store) -> None:
    store.seed(leakcheck.canary())

    async def scenario() -> None:
        async with store.open() as b:
            with pytest.raises(PluginError, match="standby slot is empty"):
                await b.swap_slots(token="t1", expected_version=None)

    run(scenario())


def test_metadata_edited_outside_rotator_describes_nothing(store: Store) -> None:
    """A value changed by hand keeps no app name from metadata written for another value."""
    blue, green, other = leakcheck.canary(), leakcheck.canary(), leakcheck.canary()
    store.seed(blue)

    async def scenario() -> None:
        async with store.open() as b:
            await b.write_standby(Secret(green), app=GREEN, token="t1", expected_version=None, active_app=BLUE)
            await b.write(Secret(other), token="t2", expected_version=None)  # a single-app style write
            slots = await b.read_slots()
            assert slots.active is not None and slots.active.app is None
            assert slots.active.fingerprint == fingerprint(other)
            assert slots.standby is not None and slots.standby.app == GREEN

    run(scenario())


# --- where no standby can be held: arm fails, nothing changed --------------------------


def test_vault_kv_v1_cannot_hold_a_standby(vault: VaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VAULT_TOKEN", ROOT_TOKEN)

    async def scenario() -> None:
        async with opened(
            VaultBackend,
            name="vault",
            type="vault",
            url=vault.url,
            mount="kv",
            path="apps/billing",
            kv_version=1,
            token={"env": "TEST_VAULT_TOKEN"},
        ) as b:
            check = await b.preflight_standby()
            assert check.ok is False and "KV v2" in check.detail

    run(scenario())


def test_vault_token_that_cannot_write_fails_the_standby_check(
    vault: VaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.put("apps/billing", {"api_key": "sk_live_x1"})
    vault.add_token("read-only", {"secret/data/apps/billing": ["read"]})
    monkeypatch.setenv("TEST_VAULT_TOKEN", "read-only")

    async def scenario() -> None:
        async with opened(
            VaultBackend,
            name="vault",
            type="vault",
            url=vault.url,
            path="apps/billing",
            token={"env": "TEST_VAULT_TOKEN"},
        ) as b:
            check = await b.preflight_standby()
            assert check.ok is False and "update" in check.detail

    run(scenario())


def test_aws_without_json_key_cannot_hold_a_standby(aws_env: str, secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="plain", SecretString="sk_live_plain1")

    async def scenario() -> None:
        async with opened(
            AwsSecretsManagerBackend, name="aws", type="aws", secret_id="plain", region=AWS_REGION, endpoint_url=aws_env
        ) as b:
            check = await b.preflight_standby()
            assert check.ok is False and "json_key" in check.detail
            with pytest.raises(PluginError, match="json_key"):
                await b.swap_slots(token="t1", expected_version=None)

    run(scenario())
    assert secretsmanager.get_secret_value(SecretId="plain")["SecretString"] == "sk_live_plain1"


def test_envfile_in_a_read_only_directory_fails_the_standby_check(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        # root writes anywhere; a missing directory is the same arm failure
        env = tmp_path / "missing" / ".env"
    else:
        (tmp_path / "ro").mkdir()
        env = tmp_path / "ro" / ".env"
        env.write_text("ADJUTOR_API_KEY=sk_live_a1\n")
        (tmp_path / "ro").chmod(0o500)

    async def scenario() -> None:
        async with opened(EnvFileBackend, name="env", type="envfile", path=str(env), variable="ADJUTOR_API_KEY") as b:
            check = await b.preflight_standby()
            assert check.ok is False and "directory" in check.detail

    run(scenario())


def test_a_backend_without_slots_says_so() -> None:
    """The interface's defaults: a plugin that does not implement slots is refused, not guessed."""
    from rotator.plugin import BackendSettings, PluginContext, Stored, Written

    class Plain(Backend):
        async def preflight(self) -> Any:
            raise AssertionError

        async def read(self) -> Stored:
            return Stored(None)

        async def write(self, secret: Secret, *, token: str, expected_version: str | None) -> Written:
            return Written()

    assert (
        Plain.standby_problem(BackendSettings(name="p", type="plain")) == "a plain backend cannot hold a standby slot"
    )

    async def scenario() -> None:
        ctx = PluginContext(max_threads=1)
        b = Plain(BackendSettings(name="p", type="plain"), ctx)
        assert (await b.preflight_standby()).ok is False
        with pytest.raises(PluginError, match="cannot hold a standby"):
            await b.read_slots()
        await ctx.aclose()

    run(scenario())


def test_envfile_standby_line_that_cannot_be_parsed_fails_the_check(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("ADJUTOR_API_KEY=sk_live_a1\nADJUTOR_API_KEY_STANDBY='unterminated\n")

    async def scenario() -> None:
        async with opened(EnvFileBackend, name="env", type="envfile", path=str(env), variable="ADJUTOR_API_KEY") as b:
            check = await b.preflight_standby()
            assert check.ok is False and "line 2 assigns ADJUTOR_API_KEY_STANDBY" in check.detail

    run(scenario())


@pytest.mark.parametrize(
    ("cls", "extra"),
    [
        (EnvFileBackend, {"type": "envfile", "path": "/tmp/x.env", "variable": "K", "standby_variable": "K"}),
        (
            VaultBackend,
            {"type": "vault", "url": "http://v:1", "path": "p", "token": {"env": "T"}, "slots_field": "api_key"},
        ),
        (AwsSecretsManagerBackend, {"type": "aws", "secret_id": "s", "json_key": "k", "standby_json_key": "k"}),
    ],
)
def test_the_three_places_must_differ(cls: type[Backend], extra: dict[str, Any]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="three different names"):
        cls.Settings.model_validate({"name": "b", **extra})


def test_vault_swap_whose_answer_was_lost_is_not_swapped_back_by_its_retry(
    vault: VaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Vault did the swap and the answer was lost (502 after the write): the retry, with the
    same token, finds the swap done and writes nothing."""
    monkeypatch.setenv("TEST_VAULT_TOKEN", ROOT_TOKEN)
    blue, green = leakcheck.canary(), leakcheck.canary()
    vault.put("apps/billing", {"api_key": blue})

    async def scenario() -> None:
        async with opened(
            VaultBackend,
            name="vault",
            type="vault",
            url=vault.url,
            path="apps/billing",
            token={"env": "TEST_VAULT_TOKEN"},
        ) as b:
            await b.write_standby(Secret(green), app=GREEN, token="t1", expected_version=None, active_app=BLUE)
            armed = await b.read_slots()
            vault.fail_next(1, 502, contains="/data/", method="POST", after=True)
            with pytest.raises(PluginError) as lost:
                await b.swap_slots(token="t2", expected_version=armed.version)
            assert lost.value.retryable
            writes = vault.writes
            retried = await b.swap_slots(token="t2", expected_version=armed.version)
            assert "already done" in retried.detail and vault.writes == writes
            slots = await b.read_slots()
            assert slots.active is not None and slots.active.app == GREEN

    run(scenario())
    assert (vault.get("apps/billing") or {})["api_key"] == green
