"""The doubles held to the official API documents: every request rotator's
``kubernetes``, ``kubernetes-rollout`` and ``vault`` plugins send (and kubectl's,
against the Kubernetes double), and every answer the doubles give, is checked
against Kubernetes' OpenAPI v3 documents (release 1.32) and Vault's OpenAPI
(vault-client-go's, generated from Vault 1.15), trimmed to the operations used.

Where the documents say nothing, the documented behaviour is checked instead,
with its source in `tests.api_specs`: a Kubernetes error is a ``Status`` whose
``code`` is the HTTP status; a Vault answer is the response envelope around the
operation's data, and a Vault error is ``{"errors": [...]}``.

The documents are data taken from other repositories, kept in the steering
repository's ``shared/specs`` (or ``$ROTATOR_API_SPECS``); see `tests.api_specs`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rotator_plugins.kubernetes import KubernetesSecretBackend
from rotator_plugins.kubernetes_rollout import KubernetesRolloutConsumer
from rotator_plugins.vault import VaultBackend

from rotator.plugin import Conflict, PluginContext, PluginError, RotationEvent
from rotator.secret import Secret
from rotator.testing import ROOT, VaultServer
from rotator.testing._http import Exchange
from rotator.testing.kube import KubeServer, Rule
from tests import api_specs
from tests.api_specs import Checked

NS = "billing"
OLD, NEW, NEWER = "sk_test_" + "o" * 40, "sk_test_" + "n" * 40, "sk_test_" + "w" * 40


@pytest.fixture(scope="module")
def specs() -> dict[str, api_specs.Spec]:
    where = api_specs.spec_dir()
    names = list(api_specs.SOURCES)
    missing = [n for n in names if not (where / n).is_file()]
    if missing:
        pytest.skip(
            f"the official API documents are not in {where} ({', '.join(missing)}): they are kept in the steering "
            "repository's shared/specs, made by `python -m tests.api_specs trim` from the sources in tests/api_specs.py"
        )
    return {n: api_specs.load(n) for n in names}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def as_spec_exchanges(exchanges: list[Exchange]) -> list[api_specs.Exchange]:
    return [api_specs.Exchange(e.method, e.path, e.request, e.status, e.response, e.content_type) for e in exchanges]


# -- Kubernetes -------------------------------------------------------------------------


def workload(kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "a", "image": "b:1"}]}},
    }
    if kind != "daemonsets":
        spec["replicas"] = 2
    if kind == "statefulsets":
        spec["serviceName"] = name  # required (apps/v1 1.32)
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec}


async def _kube_flows(kube: KubeServer, tmp_path: Path) -> None:
    """What rotator does against a cluster: arm, write, conflicts, refusals, rollouts."""
    ctx = PluginContext(max_threads=4)

    def backend(secret: str, config: str = "kubeconfig", **extra: Any) -> KubernetesSecretBackend:
        settings = {"name": "k8s", "namespace": NS, "secret": secret, "key": "K", "kubeconfig": str(tmp_path / config)}
        return KubernetesSecretBackend(KubernetesSecretBackend.Settings.model_validate(settings | extra), ctx)

    try:
        b = backend("adjutor-api")
        await b.open()
        assert (await b.preflight()).ok
        stored = await b.read()
        kube.put("secrets", kube.get("secrets", NS, "adjutor-api") | {"data": {"K": b64(OLD), "O": b64("o")}})
        with pytest.raises(Conflict):  # the PATCH's resourceVersion is stale: 409
            await b.write(Secret(NEWER), token="t", expected_version=stored.version)
        stored = await b.read()
        await b.write(Secret(NEW), token="t", expected_version=stored.version)  # PATCH with resourceVersion
        await b.close()
        made = backend("made-here", create=True)
        await made.open()
        assert (await made.preflight()).ok  # GET 404, then a review of create
        await made.write(Secret(NEW), token="t", expected_version="0")  # POST
        await made.close()
        frozen = backend("frozen")
        await frozen.open()
        with pytest.raises(PluginError, match="immutable"):  # 422
            await frozen.write(Secret(NEW), token="t", expected_version=None)
        await frozen.close()
        reader = backend("adjutor-api", config="reader.kubeconfig")
        await reader.open()
        assert not (await reader.preflight()).ok  # a review that says no
        with pytest.raises(PluginError, match="forbidden"):  # 403
            await reader.write(Secret(NEWER), token="t", expected_version=None)
        await reader.close()
        stranger = backend("adjutor-api", config="stranger.kubeconfig")
        await stranger.open()
        assert not (await stranger.preflight()).ok  # 401
        await stranger.close()
        loop = asyncio.get_running_loop()
        for kind, plural in (
            ("Deployment", "deployments"),
            ("StatefulSet", "statefulsets"),
            ("DaemonSet", "daemonsets"),
        ):
            kube.put(plural, workload(plural, f"w-{plural}"))
            c = KubernetesRolloutConsumer(
                KubernetesRolloutConsumer.Settings.model_validate(
                    {
                        "name": "c",
                        "kind": kind,
                        "namespace": NS,
                        "workload": f"w-{plural}",
                        "kubeconfig": str(tmp_path / "kubeconfig"),
                        "poll_interval": 0.02,
                    }
                ),
                ctx,
            )
            await c.open()
            assert (await c.preflight()).ok
            fp = Secret(NEW).fingerprint
            await c.signal(RotationEvent("adjutor", fp, "r", 0))
            assert (await c.confirm(fp, loop.time() + 20)).confirmed
            await c.close()
    finally:
        await ctx.aclose()


def _kubectl(tmp_path: Path, *args: str, ok: bool = True) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed on PATH"
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig"), "HOME": str(tmp_path)}
    r = subprocess.run(
        [kubectl, f"--cache-dir={tmp_path / 'kcache'}", *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert (r.returncode == 0) == ok, r.stderr


def test_kubernetes_double_and_plugins_follow_the_spec(specs: dict[str, api_specs.Spec], tmp_path: Path) -> None:
    with KubeServer(tick=0.01) as kube:
        kube.add_identity("admin")
        kube.add_identity("reader", "system:serviceaccount:billing:reader", [Rule(("get",), ("secrets",))])
        kube.put("secrets", {"metadata": {"name": "adjutor-api", "namespace": NS}, "data": {"K": b64(OLD)}})
        kube.put(
            "secrets", {"metadata": {"name": "frozen", "namespace": NS}, "data": {"K": b64(OLD)}, "immutable": True}
        )
        kube.kubeconfig(tmp_path / "kubeconfig", "admin", namespace=NS)
        kube.kubeconfig(tmp_path / "reader.kubeconfig", "reader", namespace=NS)
        kube.kubeconfig(tmp_path / "stranger.kubeconfig", "nobody", namespace=NS)
        kube.exchanges = []
        asyncio.run(_kube_flows(kube, tmp_path))
        # kubectl's own requests: discovery, lists, a create and a patch through apply, rollout status.
        manifest = tmp_path / "s.json"
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}, "data": {}}))
        _kubectl(tmp_path, "apply", "--validate=false", "-f", str(manifest))
        _kubectl(tmp_path, "get", "secrets,deployments,statefulsets,daemonsets", "-o", "json")
        _kubectl(tmp_path, "rollout", "status", "deployment/w-deployments", "--watch=false")
        _kubectl(tmp_path, "patch", "secret", "frozen", "--type=merge", "-p", '{"data":{"K":"eA=="}}', ok=False)  # 422
        exchanges = [e for e in kube.exchanges if not e.path.startswith(("/version", "/api/v1/namespaces/x"))]
        exchanges = [e for e in exchanges if e.path not in ("/api", "/apis")]  # documents of their own, not kept
        # kubectl sends its access review as protobuf (no JSON body to check); its answer is checked.
    checked = Checked()
    order = [specs["k8s-core-v1.json"], specs["k8s-apps-v1.json"], specs["k8s-authorization-v1.json"]]
    api_specs.check_kubernetes(order, as_spec_exchanges(exchanges), checked)
    print(f"{len(exchanges)} exchanges, {len(checked.operations)} operations:")
    print("\n".join(sorted(checked.operations)))
    assert checked.problems == [], "\n".join(checked.problems[:40])
    statuses = {e.status for e in exchanges}
    assert {200, 201, 401, 403, 404, 409, 422} <= statuses, statuses
    assert len(checked.operations) >= 15, checked.operations


# -- Vault ---------------------------------------------------------------------------------


def test_vault_double_and_plugin_follow_the_spec(
    specs: dict[str, api_specs.Spec], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPEC_VAULT_TOKEN", "root-token")
    with VaultServer(tokens={"root-token": ROOT}, mounts={"secret": 2, "kv": 1}) as vault:
        vault.add_token("reader", {"secret/data/apps/*": ["read"]})
        vault.add_approle("role-1", "secret-1", {"secret/data/apps/billing": ["read", "create", "update"]})
        vault.add_kubernetes_role("billing", "eyJhbGciOi.jwt.sig")
        vault.put("apps/billing", {"api_key": OLD, "other": "kept"})
        vault.put("apps/v1", {"api_key": OLD}, mount="kv")
        jwt = tmp_path / "jwt"
        jwt.write_text("eyJhbGciOi.jwt.sig")
        monkeypatch.setenv("SPEC_ROLE_ID", "role-1")
        monkeypatch.setenv("SPEC_SECRET_ID", "secret-1")
        monkeypatch.setenv("SPEC_READER", "reader")
        vault.exchanges = []
        base = {
            "name": "v",
            "type": "vault",
            "url": vault.url,
            "path": "apps/billing",
            "token": {"env": "SPEC_VAULT_TOKEN"},
        }

        async def go() -> None:
            ctx = PluginContext(max_threads=4)

            async def with_backend(extra: dict[str, Any], act: Any) -> None:
                b = VaultBackend(VaultBackend.Settings.model_validate(base | extra), ctx)
                await b.open()
                try:
                    await act(b)
                finally:
                    await b.close()

            async def rotate(b: VaultBackend) -> None:
                assert (await b.preflight()).ok
                stored = await b.read()
                vault.put("apps/billing", {"api_key": OLD, "other": "changed"})  # by someone else
                with pytest.raises(Conflict):  # check-and-set refused (400): the version moved
                    await b.write(Secret(NEWER), token="t2", expected_version=stored.version)
                stored = await b.read()
                await b.write(Secret(NEW), token="t", expected_version=stored.version)

            async def absent(b: VaultBackend) -> None:
                assert (await b.preflight()).ok  # 404 on read
                await b.write(Secret(NEW), token="t", expected_version="0")  # cas 0

            async def refused(b: VaultBackend) -> None:
                with pytest.raises(PluginError, match="permission denied"):
                    await b.write(Secret("sk_test_" + "r" * 40), token="t", expected_version="3")

            async def login(b: VaultBackend) -> None:
                assert (await b.preflight()).ok

            try:
                await with_backend({}, rotate)
                await with_backend({"path": "apps/new"}, absent)
                await with_backend({"token": {"env": "SPEC_READER"}}, refused)
                await with_backend({"mount": "kv", "path": "apps/v1", "kv_version": 1}, rotate_v1)
                await with_backend(
                    {
                        "auth": "approle",
                        "token": None,
                        "role_id": {"env": "SPEC_ROLE_ID"},
                        "secret_id": {"env": "SPEC_SECRET_ID"},
                    },
                    login,
                )
                await with_backend(
                    {
                        "auth": "kubernetes",
                        "token": None,
                        "kubernetes_role": "billing",
                        "kubernetes_jwt_path": str(jwt),
                    },
                    login,
                )
            finally:
                await ctx.aclose()

        async def rotate_v1(b: VaultBackend) -> None:
            assert (await b.preflight()).ok
            stored = await b.read()
            await b.write(Secret(NEW), token="t", expected_version=stored.version)

        asyncio.run(go())
        vault.sealed = True
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as sealed:
            urllib.request.urlopen(f"{vault.url}/v1/sys/health", timeout=10)
        assert sealed.value.code == 503
        exchanges = list(vault.exchanges)
    checked = Checked()
    api_specs.check_vault(specs["vault.json"], as_spec_exchanges(exchanges), checked)
    print(f"{len(exchanges)} exchanges, {len(checked.operations)} operations:")
    print("\n".join(sorted(checked.operations)))
    assert checked.problems == [], "\n".join(checked.problems[:40])
    statuses = {e.status for e in exchanges}
    assert {200, 204, 400, 403, 404, 503} <= statuses, statuses  # 400: check-and-set refused
    assert len(checked.operations) >= 9, checked.operations
