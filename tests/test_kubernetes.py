"""The ``kubernetes`` backend and ``kubernetes-rollout`` consumer, driven through
real lightkube over real HTTP against `rotator.testing.kube.KubeServer` (a
Kubernetes-API-shaped server on loopback with a rollout controller), never by
patching the client.  Then rotations as an operator runs them: `rotator rotate
--key-stdin` in its own process, Vault primary → Secret → rollout confirmed,
a stalled rollout (exit 5) finished by `rotator resume`, a conflict (exit 9),
and a plan that needs the extra in a process without lightkube (exit 2)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from rotator_plugins._kube import kube_said
from rotator_plugins.kubernetes import KubernetesSecretBackend
from rotator_plugins.kubernetes_rollout import KubernetesRolloutConsumer, WorkloadKind, rollout_status

from rotator.exitcodes import Exit
from rotator.plugin import Conflict, PluginContext, PluginError, RotationEvent
from rotator.secret import Secret, fingerprint
from rotator.testing import ROOT, VaultServer, plans
from rotator.testing.kube import KubeServer, Rule

try:
    from tests import forkserver
    from tests import leakcheck as lc
except ImportError:
    import forkserver  # type: ignore[no-redef]
    import leakcheck as lc  # type: ignore[no-redef]

T = TypeVar("T")
NS = "billing"
ADMIN = "admin-token"
READER = "reader-token"
OLD = "sk_test_" + "o" * 40
NEW = "sk_test_" + "n1" * 20
ANNOTATION = "rotator.io/fingerprint"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeServer]:
    with KubeServer(tick=0.01, lockstep=True) as server:
        server.add_identity(ADMIN)
        server.add_identity(
            READER,
            "system:serviceaccount:billing:reader",
            [Rule(("get",), ("secrets",)), Rule(("get",), ("deployments",), group="apps")],
        )
        server.put(
            "secrets",
            {
                "metadata": {"name": "adjutor-api", "namespace": NS},
                "type": "Opaque",
                "data": {"ADJUTOR_API_KEY": b64(OLD), "DB_PASSWORD": b64("keep-me")},
            },
        )
        server.put("deployments", deployment("billing-api", 5))
        server.kubeconfig(tmp_path / "kubeconfig", ADMIN, namespace=NS)
        server.kubeconfig(tmp_path / "reader.kubeconfig", READER, namespace=NS)
        yield server


def deployment(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "billing:1"}]},
            },
            **spec,
        },
    }


def settled(kube: KubeServer, plural: str, name: str) -> None:
    """Wait until the controller has observed the workload (it is rolled out)."""
    lc.wait_for(
        f"{name} observed",
        lambda: (
            (o := kube.get(plural, NS, name)) and o["status"].get("observedGeneration") == o["metadata"]["generation"]
        ),
        timeout=10,
    )


def run(fn: Callable[[PluginContext], Awaitable[T]]) -> T:
    async def go() -> T:
        ctx = PluginContext(max_threads=4)
        try:
            return await fn(ctx)
        finally:
            await ctx.aclose()

    return asyncio.run(go())


def backend(tmp_path: Path, ctx: PluginContext, **extra: Any) -> KubernetesSecretBackend:
    settings = KubernetesSecretBackend.Settings.model_validate(
        {
            "name": "k8s",
            "type": "kubernetes",
            "namespace": NS,
            "secret": "adjutor-api",
            "key": "ADJUTOR_API_KEY",
            "kubeconfig": str(tmp_path / "kubeconfig"),
            **extra,
        }
    )
    return KubernetesSecretBackend(settings, ctx)


def consumer(tmp_path: Path, ctx: PluginContext, **extra: Any) -> KubernetesRolloutConsumer:
    settings = KubernetesRolloutConsumer.Settings.model_validate(
        {
            "name": "billing-api",
            "type": "kubernetes-rollout",
            "kind": "Deployment",
            "namespace": NS,
            "workload": "billing-api",
            "kubeconfig": str(tmp_path / "kubeconfig"),
            "poll_interval": 0.02,
            **extra,
        }
    )
    return KubernetesRolloutConsumer(settings, ctx)


def event(fp: str) -> RotationEvent:
    return RotationEvent(secret_name="adjutor", fingerprint=fp, rotation_id="r1", timestamp=0)


# -- the Secret backend --------------------------------------------------------


def test_secret_write_is_check_and_set_and_keeps_other_keys(kube: KubeServer, tmp_path: Path) -> None:
    async def go(ctx: PluginContext) -> tuple[Any, ...]:
        b = backend(tmp_path, ctx)
        await b.open()
        try:
            check = await b.preflight()
            stored = await b.read()
            written = await b.write(Secret(NEW), token="t", expected_version=stored.version)
            again = await b.write(Secret(NEW), token="t", expected_version=None)
            back = await b.read()
            return check, stored, written, again, back
        finally:
            await b.close()

    writes_before = kube.writes()
    check, stored, written, again, back = run(go)
    assert check.ok is True and "get and patch allowed" in check.detail, check
    assert stored.secret is not None and stored.secret.reveal() == OLD
    assert written.version != stored.version and "1 other key kept" in written.detail
    assert kube.secret_data(NS, "adjutor-api") == {"ADJUTOR_API_KEY": NEW, "DB_PASSWORD": "keep-me"}
    # A retried write (its answer lost) finds the key there and writes nothing.
    assert again.version == written.version and "already current" in again.detail
    assert kube.writes() - writes_before == 1
    assert back.secret is not None and back.secret.fingerprint == fingerprint(NEW)


def test_secret_changed_since_arm_is_a_conflict(kube: KubeServer, tmp_path: Path) -> None:
    async def go(ctx: PluginContext) -> tuple[BaseException | None, BaseException | None, Any]:
        b = backend(tmp_path, ctx)
        await b.open()
        try:
            armed = await b.read()
            # A colleague edits the Secret between arm and write.
            obj = kube.get("secrets", NS, "adjutor-api")
            assert obj is not None
            obj["data"]["ADJUTOR_API_KEY"] = b64("sk_test_" + "c" * 40)
            kube.put("secrets", obj)
            as_primary = as_target = None
            try:
                await b.write(Secret(NEW), token="t", expected_version=armed.version)
            except PluginError as exc:
                as_primary = exc
            await b.read()  # arm's view again is stale after the next edit
            kube.put("secrets", kube.get("secrets", NS, "adjutor-api") or {})
            try:
                await b.write(Secret(NEW), token="t", expected_version=None)
            except PluginError as exc:
                as_target = exc
            retried = await b.write(Secret(NEW), token="t", expected_version=None)
            return as_primary, as_target, retried
        finally:
            await b.close()

    as_primary, as_target, retried = run(go)
    # The primary's expected version is arm's resourceVersion: a Conflict, nothing written.
    assert isinstance(as_primary, Conflict) and "changed since arm" in str(as_primary) and "--force" in str(as_primary)
    # A non-primary target: the API server's 409 on the stale resourceVersion; worth a retry, which lands.
    assert as_target is not None and not isinstance(as_target, Conflict) and as_target.retryable
    assert "changed during the write" in str(as_target)
    assert "resourceVersion" in retried.detail
    assert kube.secret_data(NS, "adjutor-api") == {"ADJUTOR_API_KEY": NEW, "DB_PASSWORD": "keep-me"}


def test_immutable_secret_is_refused_in_one_line(kube: KubeServer, tmp_path: Path) -> None:
    obj = kube.get("secrets", NS, "adjutor-api")
    assert obj is not None
    obj["immutable"] = True
    kube.put("secrets", obj)

    async def go(ctx: PluginContext) -> tuple[Any, BaseException | None]:
        b = backend(tmp_path, ctx)
        await b.open()
        try:
            check = await b.preflight()
            try:
                await b.write(Secret(NEW), token="t", expected_version=None)
            except PluginError as exc:
                return check, exc
            return check, None
        finally:
            await b.close()

    check, exc = run(go)
    assert check.ok is False and "\n" not in check.detail
    assert f"Secret {NS}/adjutor-api is immutable" in check.detail and "recreate" in check.detail
    assert isinstance(exc, PluginError) and not exc.retryable and "immutable" in str(exc)
    assert kube.secret_data(NS, "adjutor-api") == {"ADJUTOR_API_KEY": OLD, "DB_PASSWORD": "keep-me"}


def test_missing_rbac_permission_fails_preflight(kube: KubeServer, tmp_path: Path) -> None:
    async def go(ctx: PluginContext) -> tuple[Any, Any]:
        b = backend(tmp_path, ctx, kubeconfig=str(tmp_path / "reader.kubeconfig"))
        c = consumer(tmp_path, ctx, kubeconfig=str(tmp_path / "reader.kubeconfig"))
        await b.open()
        await c.open()
        try:
            return await b.preflight(), await c.preflight()
        finally:
            await b.close()
            await c.close()

    writes = kube.writes() + kube.writes("deployments")
    bcheck, ccheck = run(go)
    assert bcheck.ok is False and "may not patch" in bcheck.detail and "Role" in bcheck.detail, bcheck
    assert ccheck.ok is False and f"may not patch Deployment {NS}/billing-api" in ccheck.detail, ccheck
    assert kube.writes() + kube.writes("deployments") == writes  # preflight asked, wrote nothing
    assert any(r.path.endswith("/selfsubjectaccessreviews") for r in kube.records)


def test_absent_secret_needs_create(kube: KubeServer, tmp_path: Path) -> None:
    async def go(ctx: PluginContext) -> tuple[Any, Any, Any, Any]:
        plain = backend(tmp_path, ctx, secret="new-secret")
        creating = backend(tmp_path, ctx, secret="new-secret", create=True)
        await plain.open()
        await creating.open()
        try:
            refused = await plain.preflight()
            check = await creating.preflight()
            stored = await creating.read()
            written = await creating.write(Secret(NEW), token="t", expected_version="0")
            return refused, check, stored, written
        finally:
            await plain.close()
            await creating.close()

    refused, check, stored, written = run(go)
    assert refused.ok is False and "does not exist (create it, or set create = true)" in refused.detail
    assert check.ok is True and "will be created" in check.detail
    assert stored.secret is None and stored.version is None
    assert written.detail.startswith(f"created Secret {NS}/new-secret")
    obj = kube.get("secrets", NS, "new-secret")
    assert obj is not None and obj["type"] == "Opaque"
    assert obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "rotator"}
    assert kube.secret_data(NS, "new-secret") == {"ADJUTOR_API_KEY": NEW}


def test_an_api_error_echoing_the_key_is_scrubbed(kube: KubeServer, tmp_path: Path) -> None:
    """An API server that quotes the request (here: the patch body, base64 and all)
    in its error: the message reaches the report without the key in any form."""
    key = Secret(lc.canary())
    kube.echo_errors = True
    obj = kube.get("secrets", NS, "adjutor-api")
    assert obj is not None
    obj["immutable"] = True
    kube.put("secrets", obj)

    async def go(ctx: PluginContext) -> BaseException | None:
        b = backend(tmp_path, ctx)
        await b.open()
        try:
            b._seen = None  # as if arm had not seen it immutable: the API server refuses the patch
            stored = await b.read()
            assert b._seen is not None
            b._seen.immutable = False
            try:
                await b.write(key, token="t", expected_version=stored.version)
            except PluginError as exc:
                return exc
            return None
        finally:
            await b.close()

    exc = run(go)
    assert isinstance(exc, PluginError) and "immutable" in str(exc)
    assert not lc.find(str(exc), [key.reveal()], "error")
    said = kube_said(_api_error(kube, key))  # the API server's text, as shown for other refusals
    assert "[REDACTED]" in said and not lc.find(said, [key.reveal()], "said")


def _api_error(kube: KubeServer, key: Secret) -> Any:
    """An ApiError as lightkube makes it, from the server's echoing 422."""
    import httpx
    from lightkube.core.exceptions import ApiError

    body = {"data": {"ADJUTOR_API_KEY": b64(key.reveal())}}
    code, status = kube.handle(
        "PATCH",
        f"/api/v1/namespaces/{NS}/secrets/adjutor-api",
        {"authorization": f"Bearer {ADMIN}", "content-type": "application/merge-patch+json"},
        json.dumps(body).encode(),
    )
    assert code == 422 and b64(key.reveal()).rstrip("=") in status["message"]
    request = httpx.Request("PATCH", "http://k")
    return ApiError(request=request, response=httpx.Response(code, json=status, request=request))


# -- the rollout consumer ------------------------------------------------------


def test_rollout_is_restarted_and_confirmed_with_progress(kube: KubeServer, tmp_path: Path) -> None:
    settled(kube, "deployments", "billing-api")
    fp = fingerprint(NEW)

    async def go(ctx: PluginContext) -> tuple[Any, str, Any, list[str], str]:
        c = consumer(tmp_path, ctx)
        await c.open()
        try:
            check = await c.preflight()
            detail = await c.signal(event(fp))
            loop = asyncio.get_running_loop()
            conf = await c.confirm(fp, loop.time() + 20)
            again = await c.signal(event(fp))  # a resumed rotation: no second rollout
            return check, detail, conf, list(c.progress), again
        finally:
            await c.close()

    generation = kube.get("deployments", NS, "billing-api")["metadata"]["generation"]  # type: ignore[index]
    check, detail, conf, progress, again = run(go)
    assert check.ok is True and "5/5 pods updated and available" in check.detail, check
    assert detail.startswith(f"restarted Deployment {NS}/billing-api: {ANNOTATION}={fp}")
    assert conf.confirmed and conf.reported_fingerprint == fp, conf
    assert "3/5 pods updated" in progress and progress[-1] == "5/5 pods updated and available", progress
    assert "5 pods updated, 1 old pod terminating" in progress
    obj = kube.get("deployments", NS, "billing-api")
    assert obj is not None and obj["spec"]["template"]["metadata"]["annotations"] == {ANNOTATION: fp}
    assert obj["metadata"]["generation"] == generation + 1
    assert "already runs a template with" in again


def test_paused_deployment_is_refused(kube: KubeServer, tmp_path: Path) -> None:
    kube.put("deployments", deployment("billing-api", 5, paused=True))

    async def go(ctx: PluginContext) -> tuple[Any, BaseException | None]:
        c = consumer(tmp_path, ctx)
        await c.open()
        try:
            check = await c.preflight()
            try:
                await c.signal(event(fingerprint(NEW)))
            except PluginError as exc:
                return check, exc
            return check, None
        finally:
            await c.close()

    check, exc = run(go)
    assert check.ok is False and "\n" not in check.detail
    assert f"Deployment {NS}/billing-api is paused" in check.detail and "kubectl rollout resume" in check.detail
    assert isinstance(exc, PluginError) and not exc.retryable
    obj = kube.get("deployments", NS, "billing-api")
    assert obj is not None and "annotations" not in obj["spec"]["template"]["metadata"]


def test_stalled_rollout_is_unconfirmed_then_recovers(kube: KubeServer, tmp_path: Path) -> None:
    settled(kube, "deployments", "billing-api")
    kube.controller.stall("deployments", NS, "billing-api", at=3, deadline=0.1)
    fp = fingerprint(NEW)

    async def go(ctx: PluginContext) -> tuple[Any, Any]:
        c = consumer(tmp_path, ctx)
        await c.open()
        try:
            await c.signal(event(fp))
            loop = asyncio.get_running_loop()
            stalled = await c.confirm(fp, loop.time() + 20)
            kube.controller.recover("deployments", NS, "billing-api")
            recovered = await c.confirm(fp, loop.time() + 20)
            return stalled, recovered
        finally:
            await c.close()

    stalled, recovered = run(go)
    assert not stalled.confirmed
    assert "exceeded its progress deadline (ProgressDeadlineExceeded) at 3/5 pods updated" in stalled.detail
    assert "rotator resume" in stalled.detail
    assert recovered.confirmed, recovered


@pytest.mark.parametrize("kind", [WorkloadKind.STATEFULSET, WorkloadKind.DAEMONSET])
def test_statefulset_and_daemonset_roll_out(kube: KubeServer, tmp_path: Path, kind: WorkloadKind) -> None:
    plural = {WorkloadKind.STATEFULSET: "statefulsets", WorkloadKind.DAEMONSET: "daemonsets"}[kind]
    obj = deployment("worker", 3)
    obj["spec"]["updateStrategy"] = {"type": "RollingUpdate"}
    kube.put(plural, obj)
    settled(kube, plural, "worker")
    fp = fingerprint(NEW)

    async def go(ctx: PluginContext) -> tuple[Any, Any]:
        c = consumer(tmp_path, ctx, kind=kind.value.lower(), workload="worker")
        await c.open()
        try:
            check = await c.preflight()
            await c.signal(event(fp))
            return check, await c.confirm(fp, asyncio.get_running_loop().time() + 20)
        finally:
            await c.close()

    check, conf = run(go)
    assert check.ok is True, check
    assert conf.confirmed, conf


def test_on_delete_strategy_cannot_be_confirmed(kube: KubeServer, tmp_path: Path) -> None:
    obj = deployment("worker", 3)
    obj["spec"]["updateStrategy"] = {"type": "OnDelete"}
    kube.put("statefulsets", obj)
    settled(kube, "statefulsets", "worker")

    async def go(ctx: PluginContext) -> Any:
        c = consumer(tmp_path, ctx, kind="StatefulSet", workload="worker")
        await c.open()
        try:
            return await c.preflight()
        finally:
            await c.close()

    check = run(go)
    assert check.ok is False and "updateStrategy OnDelete" in check.detail


def test_rollout_status_follows_kubectl() -> None:
    """kubectl's order: generation observed, then the deadline, then the counters."""
    from lightkube.resources.apps_v1 import Deployment

    def dep(generation: int, status: dict[str, Any]) -> Any:
        return Deployment.from_dict(
            {
                "metadata": {"name": "d", "generation": generation},
                "spec": {**deployment("d", 5)["spec"]},
                "status": status,
            }
        )

    done = {"observedGeneration": 2, "replicas": 5, "updatedReplicas": 5, "availableReplicas": 5}
    assert rollout_status(WorkloadKind.DEPLOYMENT, dep(3, done)).line.startswith("waiting for the controller")
    assert rollout_status(WorkloadKind.DEPLOYMENT, dep(2, done)).done
    stalled = {**done, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}
    state = rollout_status(WorkloadKind.DEPLOYMENT, dep(2, stalled))
    assert not state.done and state.failed and "ProgressDeadlineExceeded" in state.failed
    assert rollout_status(WorkloadKind.DEPLOYMENT, dep(2, {**done, "updatedReplicas": 3})).line == "3/5 pods updated"
    assert rollout_status(WorkloadKind.DEPLOYMENT, dep(2, {**done, "replicas": 6})).line == (
        "5 pods updated, 1 old pod terminating"
    )
    assert rollout_status(WorkloadKind.DEPLOYMENT, dep(2, {**done, "availableReplicas": 4})).line == (
        "4/5 updated pods available"
    )


def test_settings_are_checked_without_network() -> None:
    bad = {"name": "c", "type": "kubernetes-rollout", "namespace": NS, "workload": "x", "kind": "CronJob"}
    with pytest.raises(ValueError, match="Deployment, StatefulSet or DaemonSet"):
        KubernetesRolloutConsumer.Settings.model_validate(bad)
    with pytest.raises(ValueError, match="namespace"):
        KubernetesSecretBackend.Settings.model_validate(
            {"name": "k", "type": "kubernetes", "namespace": "Not_A_Namespace", "secret": "s", "key": "K"}
        )


# -- rotations as an operator runs them ---------------------------------------

VAULT_TOKEN = "kube-e2e-vault-token"


@pytest.fixture
def world(tmp_path: Path, kube: KubeServer, standin: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    old = standin.current_key
    obj = kube.get("secrets", NS, "adjutor-api")
    assert obj is not None
    obj["data"]["ADJUTOR_API_KEY"] = b64(old)
    kube.put("secrets", obj)
    settled(kube, "deployments", "billing-api")
    vault = VaultServer(tokens={VAULT_TOKEN: ROOT}).start()
    vault.put("apps/billing", {"api_key": old})
    monkeypatch.setenv("KUBE_E2E_VAULT_TOKEN", VAULT_TOKEN)

    def plan(kube_primary: bool = False, kubeconfig: str = "kubeconfig") -> Path:
        """Vault and a Kubernetes Secret (either the primary), a Deployment that reads the Secret."""
        config = str(tmp_path / kubeconfig)
        k8s = {"name": "k8s", "type": "kubernetes", "primary": kube_primary, "namespace": NS}
        k8s |= {"secret": "adjutor-api", "key": "ADJUTOR_API_KEY", "kubeconfig": config}
        rollout = {"name": "billing-api", "type": "kubernetes-rollout", "kind": "Deployment", "namespace": NS}
        rollout |= {"workload": "billing-api", "kubeconfig": config, "reads_from": ["k8s"]}
        return plans.write_plan(
            tmp_path / f"plan-{kube_primary}-{kubeconfig}.toml",
            plans.plan(
                "adjutor-kube",
                probe=plans.adjutor_probe(standin.models_url, retries=1, backoff=0.01),
                rotation={"deadline": 60},
                backends=[
                    plans.vault(
                        "vault", vault.url, "apps/billing", token_env="KUBE_E2E_VAULT_TOKEN", primary=not kube_primary
                    ),
                    k8s,
                ],
                consumers=[{**rollout, "poll_interval": 0.02, "confirm_timeout": 30}],
            ),
        )

    class World:
        pass

    w = World()
    w.plan, w.old, w.vault, w.standin, w.kube, w.tmp = plan, old, vault, standin, kube, tmp_path  # type: ignore[attr-defined]
    try:
        yield w
    finally:
        vault.stop()


def rotate(
    plan: Path, key: str, *extra: str, between: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [*forkserver.command(), "-v", "rotate", str(plan), "--key-stdin", "--json", *extra],
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
            if "reading the key from stdin" in line:
                between()
                break
    try:
        out, err = proc.communicate(key + "\n", timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(head) + err)


def no_leak(key: str, *results: subprocess.CompletedProcess[str]) -> None:
    hits = []
    for r in results:
        hits += lc.find(r.stdout, [key], "stdout") + lc.find(r.stderr, [key], "stderr")
    hits += lc.scan_journal([key])
    assert not hits, hits


def test_rotation_vault_to_secret_to_rollout(world: Any) -> None:
    w = world
    new = w.standin.reset()
    r = rotate(w.plan(), new, "--reason", "kube e2e")
    assert r.returncode == Exit.DONE, r.stderr
    report = json.loads(r.stdout)
    targets = {t["name"]: t for t in report["targets"]}
    assert {n: t["status"] for n, t in targets.items()} == {"vault": "ok", "k8s": "ok", "billing-api": "ok"}
    fp = fingerprint(new)
    assert w.vault.get("apps/billing") == {"api_key": new}
    assert w.kube.secret_data(NS, "adjutor-api") == {"ADJUTOR_API_KEY": new, "DB_PASSWORD": "keep-me"}
    dep = w.kube.get("deployments", NS, "billing-api")
    assert dep["spec"]["template"]["metadata"]["annotations"] == {ANNOTATION: fp}
    assert targets["billing-api"]["fingerprint"] == fp
    assert targets["billing-api"]["detail"] == f"Deployment {NS}/billing-api rolled out: 5/5 pods updated and available"
    assert '"progress": "3/5 pods updated"' in r.stderr  # the progress lines, with -v
    no_leak(new, r)
    assert not lc.scan_tree(w.tmp, [new])  # plans, kubeconfigs: the key lives only in Vault and the Secret


def test_stalled_rollout_exits_5_and_resume_finishes(world: Any) -> None:
    w = world
    w.kube.controller.stall("deployments", NS, "billing-api", at=3, deadline=0.1)
    new = w.standin.reset()
    r = rotate(w.plan(), new)
    assert r.returncode == Exit.PARTIAL, r.stderr
    report = json.loads(r.stdout)
    consumer_result = next(t for t in report["targets"] if t["name"] == "billing-api")
    assert consumer_result["status"] == "unconfirmed"
    assert "ProgressDeadlineExceeded) at 3/5 pods updated" in consumer_result["detail"]
    assert w.kube.secret_data(NS, "adjutor-api")["ADJUTOR_API_KEY"] == new
    generation = w.kube.get("deployments", NS, "billing-api")["metadata"]["generation"]

    w.kube.controller.recover("deployments", NS, "billing-api")
    resumed = lc.cli("resume", report["id"], "--json")
    assert resumed.returncode == Exit.DONE, resumed.stderr
    again = {t["name"]: t for t in json.loads(resumed.stdout)["targets"]}
    assert again["billing-api"]["status"] == "ok", again
    # The same fingerprint again: no second rollout.
    assert w.kube.get("deployments", NS, "billing-api")["metadata"]["generation"] == generation
    no_leak(new, r, resumed)


def test_secret_as_primary_changed_since_arm_exits_9(world: Any) -> None:
    w = world
    new = w.standin.reset()

    def colleague_edits() -> None:
        obj = w.kube.get("secrets", NS, "adjutor-api")
        obj["data"]["DB_PASSWORD"] = b64("changed")
        w.kube.put("secrets", obj)

    r = rotate(w.plan(kube_primary=True), new, between=colleague_edits)
    assert r.returncode == Exit.CONFLICT, r.stderr
    assert "changed since arm" in r.stdout + r.stderr
    assert w.kube.secret_data(NS, "adjutor-api") == {"ADJUTOR_API_KEY": w.old, "DB_PASSWORD": "changed"}
    dep = w.kube.get("deployments", NS, "billing-api")
    assert "annotations" not in dep["spec"]["template"]["metadata"]
    no_leak(new, r)


def test_missing_permission_stops_at_arm(world: Any) -> None:
    w = world
    new = w.standin.reset()
    r = rotate(w.plan(kubeconfig="reader.kubeconfig"), new)
    assert r.returncode == Exit.PREFLIGHT_FAILED, r.stderr
    assert "this identity may not patch Secret billing/adjutor-api" in r.stdout + r.stderr
    assert w.vault.get("apps/billing") == {"api_key": w.old}  # nothing written, not even the primary
    no_leak(new, r)


def test_without_the_extra_a_plan_names_it(world: Any) -> None:
    """In a process where lightkube cannot be imported: one line, exit 2."""
    code = "import sys; sys.modules['lightkube'] = None; from rotator.cli import main; sys.argv[0] = 'rotator'; main()"
    r = subprocess.run(
        [sys.executable, "-c", code, "check", str(world.plan())], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == Exit.PLAN_INVALID, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert any("pip install 'rotator[kubernetes]'" in line for line in lines), r.stderr
    assert "Traceback" not in r.stderr


def test_example_plan_is_valid() -> None:
    r = lc.cli("check", str(Path(__file__).resolve().parent.parent / "config" / "kubernetes.example.toml"))
    assert r.returncode == 0, r.stderr
