"""The contract every built-in backend (and the third-party memory backend) keeps.

One parametrised scenario, against real servers: envfile on disk, vault against
rotator.testing's Vault-protocol server with real hvac, aws against moto's
server with real boto3, kubernetes against rotator.testing's Kubernetes-API
server with real lightkube.

read -> write -> read back (by a fresh instance); a retried write with the same
token makes no second version; a write whose expected version is stale raises
`Conflict` in the one wording (`rotator.backend_rules.stale_key`) and writes nothing.
Every one of them, the third-party one included, takes those rules from
`rotator.backend_rules.key_change`.  For envfile a version is ``fp:<fingerprint>`` or
``absent`` (see `version_of` in plugins/envfile.py).
"""

from __future__ import annotations

import base64
import importlib.util
import re
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import pytest
from rotator_plugins.aws import AwsSecretsManagerBackend
from rotator_plugins.envfile import EnvFileBackend
from rotator_plugins.kubernetes import KubernetesSecretBackend
from rotator_plugins.vault import VaultBackend

from rotator import Backend, Conflict, Secret
from rotator.testing.kube import KubeServer

try:
    from tests.fixtures_backends import *  # noqa: F403
    from tests.fixtures_backends import ROOT_TOKEN, opened, run
except ImportError:
    from fixtures_backends import *  # type: ignore[no-redef]  # noqa: F403
    from fixtures_backends import ROOT_TOKEN, opened, run  # type: ignore[no-redef]


def _memory_plugin() -> types.ModuleType:
    """The third-party package's module itself (tests/third_party_plugin), loaded from its
    file without touching sys.path (test_third_party installs it its own way)."""
    path = Path(__file__).resolve().parent / "third_party_plugin" / "rotator_memory_demo" / "__init__.py"
    spec = importlib.util.spec_from_file_location("contract_memory_plugin", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rotator_memory_demo = _memory_plugin()

OLD = Secret("sk_test_" + "0" * 40)
NEW = Secret("sk_test_" + "N" * 40)
NEWER = Secret("sk_test_" + "W" * 40)
TOKEN = "20261201-120000-0123abcd:store"


@dataclass
class Subject:
    cls: type[Backend]
    settings: dict[str, Any]
    versions: Callable[[], object]  # what a second stored version would change


@pytest.fixture
def envfile_subject(tmp_path: Path) -> Subject:
    path = tmp_path / "app.env"
    path.write_text(f"# kept\nPORT=8080\nADJUTOR_API_KEY={OLD.reveal()}\n")
    path.chmod(0o600)

    def versions() -> object:
        st = path.stat()
        return st.st_ino, st.st_mtime_ns  # an atomic rewrite is a new inode

    return Subject(
        EnvFileBackend, {"name": "store", "type": "envfile", "path": str(path), "variable": "ADJUTOR_API_KEY"}, versions
    )


@pytest.fixture
def vault_subject(vault: Any, monkeypatch: pytest.MonkeyPatch) -> Subject:
    vault.put("apps/billing", {"api_key": OLD.reveal(), "db_password": "kept"})
    monkeypatch.setenv("CONTRACT_VAULT_TOKEN", ROOT_TOKEN)
    client = hvac.Client(url=vault.url, token=ROOT_TOKEN)

    def versions() -> object:
        meta = client.secrets.kv.v2.read_secret_metadata(path="apps/billing", mount_point="secret")["data"]
        return meta["current_version"], len(meta["versions"])

    settings = {
        "name": "store",
        "type": "vault",
        "url": vault.url,
        "path": "apps/billing",
        "token": {"env": "CONTRACT_VAULT_TOKEN"},
    }
    return Subject(VaultBackend, settings, versions)


def _aws_subject(secretsmanager: Any, aws_env: str, json_key: str | None) -> Subject:
    text = f'{{"api_key": "{OLD.reveal()}", "db": "kept"}}' if json_key else OLD.reveal()
    secretsmanager.create_secret(Name="prod/billing", SecretString=text)

    def versions() -> object:
        return len(secretsmanager.list_secret_version_ids(SecretId="prod/billing")["Versions"])

    settings = {"name": "store", "type": "aws", "secret_id": "prod/billing", "endpoint_url": aws_env}
    if json_key:
        settings["json_key"] = json_key
    return Subject(AwsSecretsManagerBackend, settings, versions)


@pytest.fixture
def aws_subject(secretsmanager: Any, aws_env: str) -> Subject:
    return _aws_subject(secretsmanager, aws_env, None)


@pytest.fixture
def aws_json_subject(secretsmanager: Any, aws_env: str) -> Subject:
    return _aws_subject(secretsmanager, aws_env, "api_key")


@pytest.fixture
def kubernetes_subject(tmp_path: Path) -> Iterator[Subject]:
    with KubeServer() as kube:
        kube.add_identity("contract-admin")
        data = {"ADJUTOR_API_KEY": base64.b64encode(OLD.reveal().encode()).decode()}
        kube.put("secrets", {"metadata": {"name": "adjutor-api", "namespace": "billing"}, "data": data})
        config = kube.kubeconfig(tmp_path / "kubeconfig", "contract-admin", namespace="billing")

        def versions() -> object:
            secret = kube.get("secrets", "billing", "adjutor-api")
            assert secret is not None
            return secret["metadata"]["resourceVersion"]

        settings = {"name": "store", "type": "kubernetes", "namespace": "billing", "secret": "adjutor-api"}
        settings |= {"key": "ADJUTOR_API_KEY", "kubeconfig": str(config)}
        yield Subject(KubernetesSecretBackend, settings, versions)


@pytest.fixture
def memory_subject() -> Iterator[Subject]:
    rotator_memory_demo.STORE["contract"] = (1, OLD.reveal())
    yield Subject(
        rotator_memory_demo.MemoryBackend,
        {"name": "store", "type": "memory", "slot": "contract"},
        lambda: rotator_memory_demo.STORE["contract"][0],
    )
    rotator_memory_demo.STORE.pop("contract", None)


SUBJECTS = [
    "envfile_subject",
    "vault_subject",
    "aws_subject",
    "aws_json_subject",
    "kubernetes_subject",
    "memory_subject",
]


@pytest.mark.parametrize("subject_name", SUBJECTS)
def test_backend_contract(subject_name: str, request: pytest.FixtureRequest) -> None:
    subject: Subject = request.getfixturevalue(subject_name)

    async def read_back() -> tuple[Secret | None, str | None]:
        async with opened(subject.cls, **subject.settings) as fresh:  # not this writer's cache
            stored = await fresh.read()
        return stored.secret, stored.version

    async def scenario() -> None:
        async with opened(subject.cls, **subject.settings) as backend:
            arm = await backend.read()
            assert arm.secret == OLD and arm.version is not None

            await backend.write(NEW, token=TOKEN, expected_version=arm.version)
            secret, written_version = await read_back()
            assert secret == NEW and written_version != arm.version
            after_write = subject.versions()

            # The same write again (its answer was lost): same token, the version arm read.
            await backend.write(NEW, token=TOKEN, expected_version=arm.version)
            assert await read_back() == (NEW, written_version)
            assert subject.versions() == after_write  # no second version

            # Another rotation that read before this one wrote: its expected version is stale.
            with pytest.raises(Conflict) as stale:
                await backend.write(NEWER, token=TOKEN.replace("0123abcd", "4567cdef"), expected_version=arm.version)
            assert re.fullmatch(
                rf".+: .+ changed since arm \(version {re.escape(str(written_version))}, expected {re.escape(arm.version)}\); rerun, or --force",
                str(stale.value),
            ), str(stale.value)
            assert await read_back() == (NEW, written_version)
            assert subject.versions() == after_write  # nothing written

    run(scenario())
