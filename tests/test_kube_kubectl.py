"""The Kubernetes double held to a real client: the machine's ``kubectl`` (1.32)
talks to `rotator.testing.kube.KubeServer` over TLS, with the CA the double
writes into its kubeconfig, through its discovery documents.

Then rotator's rollout verdict against kubectl's: the controller is stepped by
the test (``autostep=False``), and at every tick of a rollout (progressing,
stalled past its deadline, recovered; Deployment, StatefulSet, DaemonSet)
``kubectl rollout status --watch=false`` and the ``kubernetes-rollout``
consumer's own confirmation (a real lightkube client, one read) look at the same
stored object and must agree: rolled out, still going, or failed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rotator_plugins.kubernetes import KubernetesSecretBackend
from rotator_plugins.kubernetes_rollout import KubernetesRolloutConsumer

from rotator.plugin import Confirmation, PluginContext, RotationEvent
from rotator.secret import Secret
from rotator.testing.kube import KubeServer, Rule

NS = "billing"
ADMIN, READER = "admin-token", "reader-token"
KUBECTL = shutil.which("kubectl")
PLURAL = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeServer]:
    assert KUBECTL, "kubectl is needed on PATH (the test machines have 1.32 from google-cloud-sdk)"
    with KubeServer(autostep=False) as server:
        server.add_identity(ADMIN)
        server.add_identity(READER, "system:serviceaccount:billing:reader", [Rule(("get",), ("secrets",))])
        server.put(
            "secrets",
            {"metadata": {"name": "adjutor-api", "namespace": NS}, "data": {"K": b64("sk_test_old"), "O": b64("o")}},
        )
        server.kubeconfig(tmp_path / "kubeconfig", ADMIN, namespace=NS)
        server.kubeconfig(tmp_path / "reader.kubeconfig", READER, namespace=NS)
        yield server


def kubectl(tmp_path: Path, *args: str, config: str = "kubeconfig") -> subprocess.CompletedProcess[str]:
    assert KUBECTL
    env = {**os.environ, "KUBECONFIG": str(tmp_path / config), "HOME": str(tmp_path)}
    return subprocess.run(
        [KUBECTL, f"--cache-dir={tmp_path / 'kcache'}", "--request-timeout=20s", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def workload(kind: str, name: str, replicas: int = 3, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "billing:1"}]},
        },
        **spec,
    }
    if kind != "DaemonSet":
        body["replicas"] = replicas
    return {"metadata": {"name": name, "namespace": NS}, "spec": body}


# -- kubectl against the double ---------------------------------------------------


def test_kubectl_reads_the_secret_over_tls(kube: KubeServer, tmp_path: Path) -> None:
    assert kube.url.startswith("https://")
    version = kubectl(tmp_path, "version", "-o", "json")
    assert version.returncode == 0, version.stderr
    assert json.loads(version.stdout)["serverVersion"]["minor"] == "32"
    got = kubectl(tmp_path, "get", "secret", "adjutor-api", "-o", "json")
    assert got.returncode == 0, got.stderr
    obj = json.loads(got.stdout)
    assert obj["kind"] == "Secret" and obj["type"] == "Opaque"
    assert obj["metadata"]["resourceVersion"] == kube.get("secrets", NS, "adjutor-api")["metadata"]["resourceVersion"]
    listed = kubectl(tmp_path, "get", "secrets", "-o", "name")
    assert listed.stdout.split() == ["secret/adjutor-api"], listed.stderr


def test_kubectl_refuses_a_server_it_cannot_verify(kube: KubeServer, tmp_path: Path) -> None:
    """The CA is what makes it work: without it kubectl refuses the certificate."""
    conf = json.loads((tmp_path / "kubeconfig").read_text())
    del conf["clusters"][0]["cluster"]["certificate-authority-data"]
    (tmp_path / "noca.kubeconfig").write_text(json.dumps(conf))
    r = kubectl(tmp_path, "get", "secret", "adjutor-api", config="noca.kubeconfig")
    assert r.returncode != 0 and "certificate" in r.stderr, r.stderr


def test_kubectl_apply_and_patch_secrets_and_workloads(kube: KubeServer, tmp_path: Path) -> None:
    manifest = tmp_path / "objects.json"
    dep = workload("Deployment", "billing-api") | {"apiVersion": "apps/v1", "kind": "Deployment"}
    sec = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "other", "namespace": NS},
        "stringData": {"A": "a"},
    }
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [sec, dep]}))
    # --validate=false: the double serves no /openapi (see docs/testing/doubles.md)
    created = kubectl(tmp_path, "apply", "--validate=false", "-f", str(manifest))
    assert created.returncode == 0, created.stderr
    assert created.stdout.split("\n")[:2] == ["secret/other created", "deployment.apps/billing-api created"]
    assert kube.secret_data(NS, "other") == {"A": "a"}
    # A changed image through apply: a strategic merge patch of the container list, by name.
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "billing:2"
    manifest.write_text(json.dumps(dep))
    applied = kubectl(tmp_path, "apply", "--validate=false", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    stored = kube.get("deployments", NS, "billing-api")
    assert stored["spec"]["template"]["spec"]["containers"] == [{"name": "app", "image": "billing:2"}]
    assert stored["metadata"]["generation"] == 2
    # patch: a merge patch of one data key (what rotator sends), then a strategic one of the template.
    r = kubectl(
        tmp_path, "patch", "secret", "adjutor-api", "--type", "merge", "-p", json.dumps({"data": {"K": b64("x")}})
    )
    assert r.returncode == 0, r.stderr
    assert kube.secret_data(NS, "adjutor-api") == {"K": "x", "O": "o"}
    patch = {"spec": {"template": {"metadata": {"annotations": {"rotator.io/fingerprint": "sha256:abc"}}}}}
    r = kubectl(tmp_path, "patch", "deployment", "billing-api", "-p", json.dumps(patch))
    assert r.returncode == 0, r.stderr
    stored = kube.get("deployments", NS, "billing-api")
    assert stored["spec"]["template"]["metadata"]["annotations"] == {"rotator.io/fingerprint": "sha256:abc"}
    assert stored["spec"]["template"]["spec"]["containers"] == [{"name": "app", "image": "billing:2"}]
    # A stale resourceVersion is refused as the API server does (409 Conflict).
    stale = {"metadata": {"resourceVersion": "1"}, "data": {"K": b64("y")}}
    r = kubectl(tmp_path, "patch", "secret", "adjutor-api", "--type", "merge", "-p", json.dumps(stale))
    assert r.returncode == 1 and "the object has been modified" in r.stderr, r.stderr


def test_kubectl_auth_can_i_agrees_with_rotators_preflight(kube: KubeServer, tmp_path: Path) -> None:
    """`kubectl auth can-i` (a protobuf SelfSubjectAccessReview) and rotator's preflight (a JSON
    one, through lightkube) get the same answers from the double's RBAC rules."""
    asks = [("get", "secrets/adjutor-api"), ("patch", "secrets/adjutor-api"), ("patch", "deployments.apps/x")]
    admin = [kubectl(tmp_path, "auth", "can-i", v, r).stdout.strip() for v, r in asks]
    reader = [kubectl(tmp_path, "auth", "can-i", v, r, config="reader.kubeconfig").stdout.strip() for v, r in asks]
    assert admin == ["yes", "yes", "yes"]
    assert [a.split()[0] for a in reader] == ["yes", "no", "no"]

    async def preflight(config: str) -> Any:
        ctx = PluginContext(max_threads=2)
        settings = KubernetesSecretBackend.Settings.model_validate(
            {"name": "k8s", "namespace": NS, "secret": "adjutor-api", "key": "K", "kubeconfig": str(tmp_path / config)}
        )
        b = KubernetesSecretBackend(settings, ctx)
        try:
            await b.open()
            return await b.preflight()
        finally:
            await b.close()
            await ctx.aclose()

    assert asyncio.run(preflight("kubeconfig")).ok is True
    refused = asyncio.run(preflight("reader.kubeconfig"))
    assert refused.ok is False and "may not patch" in refused.detail


# -- rollout verdicts, tick by tick -------------------------------------------------


@dataclass
class Look:
    scenario: str
    tick: int
    kubectl_line: str
    kubectl: str
    rotator: str
    rotator_detail: str


def kubectl_verdict(r: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    line = (r.stdout or r.stderr).strip().splitlines()[-1] if (r.stdout or r.stderr).strip() else ""
    if r.returncode != 0:
        return "failed", line
    done = ("successfully rolled out", "roll out complete", "rolling update complete")
    return ("done" if any(d in r.stdout for d in done) else "progressing"), line


def rotator_verdict(c: Confirmation) -> str:
    if c.confirmed:
        return "done"
    if "not rolled out by the deadline" in c.detail:
        return "progressing"
    return "failed"


async def _walk(kube: KubeServer, tmp_path: Path, kind: str) -> list[Look]:
    name = f"app-{kind.lower()}"
    plural = PLURAL[kind]
    kube.put(plural, workload(kind, name, 3))
    kube.controller.step_all()  # the controller observes the new workload: rolled out
    ctx = PluginContext(max_threads=2)
    consumer = KubernetesRolloutConsumer(
        KubernetesRolloutConsumer.Settings.model_validate(
            {
                "name": "c",
                "kind": kind,
                "namespace": NS,
                "workload": name,
                "kubeconfig": str(tmp_path / "kubeconfig"),
            }
        ),
        ctx,
    )
    looks: list[Look] = []
    loop = asyncio.get_running_loop()

    async def look(scenario: str, tick: int, fp: str) -> Look:
        r = await asyncio.to_thread(kubectl, tmp_path, "rollout", "status", f"{kind.lower()}/{name}", "--watch=false")
        kv, line = kubectl_verdict(r)
        confirmation = await consumer.confirm(fp, loop.time())  # the deadline passed: one read
        seen = Look(scenario, tick, line, kv, rotator_verdict(confirmation), confirmation.detail)
        looks.append(seen)
        return seen

    async def roll(scenario: str, key: str, *, until: str, most: int = 16) -> None:
        fp = Secret(key).fingerprint
        await consumer.signal(RotationEvent("adjutor", fp, "r", 0))
        for tick in range(most):
            seen = await look(scenario, tick, fp)
            if seen.kubectl == until and seen.rotator == until:
                return
            kube.controller.step_all()
        raise AssertionError(f"{kind} {scenario}: never {until}: {looks[-3:]}")

    try:
        await consumer.open()
        await roll("progressing", "sk_test_" + "a" * 40, until="done")
        # Stalled at one pod updated; a Deployment past its deadline is failed (kubectl exits 1).
        kube.controller.stall(plural, NS, name, at=1, deadline=0.0)
        stalled_until = "failed" if kind == "Deployment" else "progressing"
        fp = Secret("sk_test_" + "b" * 40).fingerprint
        await consumer.signal(RotationEvent("adjutor", fp, "r", 0))
        for tick in range(6):
            await look("stalled", tick, fp)
            kube.controller.step_all()
        assert looks[-1].kubectl == stalled_until, looks[-6:]
        kube.controller.recover(plural, NS, name)
        for tick in range(16):
            seen = await look("recovered", tick, fp)
            if seen.kubectl == seen.rotator == "done":
                break
            kube.controller.step_all()
        if kind != "Deployment":  # OnDelete: neither tool can say a restart rolled out
            obj = kube.get(plural, NS, name)
            assert obj is not None
            obj["spec"]["updateStrategy"] = {"type": "OnDelete"}
            kube.put(plural, obj)
            kube.controller.step_all()
            await look("OnDelete strategy", 0, fp)
    finally:
        await consumer.close()
        await ctx.aclose()
    return looks


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet"])
def test_rollout_verdict_equals_kubectls_at_every_tick(kube: KubeServer, tmp_path: Path, kind: str) -> None:
    looks = asyncio.run(_walk(kube, tmp_path, kind))
    table = [
        f"{kind:11} {x.scenario:18} {x.tick:2} kubectl={x.kubectl:11} rotator={x.rotator:11} {x.kubectl_line}"
        for x in looks
    ]
    print("\n".join(table))
    assert [x for x in looks if x.kubectl != x.rotator] == [], "\n".join(table)
    verdicts = {(x.scenario, x.kubectl) for x in looks}
    assert {("progressing", "progressing"), ("progressing", "done"), ("recovered", "done")} <= verdicts
    if kind == "Deployment":
        assert ("stalled", "failed") in verdicts  # ProgressDeadlineExceeded
    else:
        assert ("stalled", "progressing") in verdicts and ("OnDelete strategy", "failed") in verdicts
