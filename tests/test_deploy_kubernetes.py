"""deploy/kubernetes/: every manifest is a valid object of its kind (a round trip
through lightkube's typed models keeps every field, so a misspelt or misplaced
field fails), the Deployment runs `rotator serve` as the issue asks, and the
Role holds exactly the verbs the plugins use: the plan in the ConfigMap arms and
rotates with it against `rotator.testing.kube`, and fails preflight without any
one of them.  (`kubectl apply --dry-run=client` needs a server; kubeconform is
not in a package registry.)"""

from __future__ import annotations

import asyncio
import base64
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import codecs
from rotator_plugins.kubernetes import KubernetesSecretBackend
from rotator_plugins.kubernetes_rollout import KubernetesRolloutConsumer

from rotator.plan import load_plan
from rotator.plugin import PluginContext, RotationEvent
from rotator.secret import Secret, fingerprint
from rotator.testing.kube import KubeServer, Rule

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"


def documents() -> list[dict[str, Any]]:
    """Every manifest the kustomization lists (kubectl kustomize's own output is tested below)."""
    docs = []
    for name in yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]:
        docs += [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]
    return docs


def one(kind: str) -> dict[str, Any]:
    found = [d for d in documents() if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def test_every_manifest_is_a_valid_object() -> None:
    docs = documents()
    assert {d["kind"] for d in docs} == {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "NetworkPolicy",
    }
    for doc in docs:
        model = type(codecs.from_dict(doc))  # the kind's typed model
        # lazy=False parses every nested model now (lazily, to_dict would hand back the input).
        assert model.from_dict(doc, lazy=False).to_dict() == doc, f"{doc['kind']} {doc['metadata']['name']}"


def test_the_round_trip_catches_a_misspelt_field() -> None:
    doc = one("Deployment")
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    model = type(codecs.from_dict(doc))
    assert model.from_dict(doc, lazy=False).to_dict() != doc


def test_the_deployment_runs_serve_locked_down() -> None:
    dep = one("Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"][:2] == ["rotator", "serve"] and "0.0.0.0" in c["args"]
    assert pod["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int) and pod["securityContext"]["runAsUser"] > 0
    # The image's user, so its data directory is writable; and the image has the extra.
    dockerfile = (DEPLOY.parent.parent / "Dockerfile").read_text()
    uid = re.search(r"--uid (\d+)", dockerfile)
    assert uid is not None and int(uid.group(1)) == pod["securityContext"]["runAsUser"]
    extras = re.search(r"'\.\[([a-z,]+)\]'", dockerfile)
    assert extras is not None and "kubernetes" in extras.group(1).split(",")
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    port = c["ports"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["ROTATOR_PORT"] == str(port["containerPort"])
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["plans"]["mountPath"] == "/etc/rotator" and mounts["plans"]["readOnly"]
    assert volumes["plans"]["configMap"]["name"] == one("ConfigMap")["metadata"]["name"]
    # The API token from a Secret, as a file (never an env value in the manifest).
    assert env["ROTATOR_API_TOKEN_FILE"].startswith(mounts["api-token"]["mountPath"] + "/")
    assert "secretName" in volumes["api-token"]["secret"] and "ROTATOR_API_TOKEN" not in env
    # With a read-only root, everything written has a volume.
    assert {mounts[n]["mountPath"] for n in ("data", "tmp")} == {env["ROTATOR_DATA_DIR"], "/tmp"}
    svc = one("Service")
    assert svc["spec"]["selector"] == dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["ports"][0]["targetPort"] == port["name"]
    binding = one("RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rotator", "namespace": "rotator"}]
    assert binding["roleRef"]["name"] == one("Role")["metadata"]["name"]


def plan_file(tmp_path: Path) -> Path:
    ((name, text),) = one("ConfigMap")["data"].items()
    path = tmp_path / name
    path.write_text(text)
    return path


def role_rules(skip: tuple[int, str] | None = None) -> list[Rule]:
    role = one("Role")
    rules = []
    for i, r in enumerate(role["rules"]):
        verbs = tuple(v for v in r["verbs"] if (i, v) != skip)
        (group,) = r["apiGroups"]
        rules.append(
            Rule(
                verbs,
                tuple(r["resources"]),
                group=group,
                namespace=role["metadata"]["namespace"],
                names=tuple(r.get("resourceNames", ())),
            )
        )
    return rules


def preflight_and_rotate(tmp_path: Path, rules: list[Rule], *, rotate: bool) -> list[Any]:
    """Arm the ConfigMap's plan with `rules` as the identity's RBAC; rotate if asked."""
    plan = load_plan(plan_file(tmp_path))
    (b_settings,) = plan.backends
    (c_settings,) = plan.consumers
    with KubeServer(tick=0.01) as kube:
        kube.add_identity("sa-token", "system:serviceaccount:rotator:rotator", rules)
        kube.put(
            "secrets",
            {
                "metadata": {"name": b_settings.secret, "namespace": b_settings.namespace},
                "data": {b_settings.key: base64.b64encode(b"sk_test_old").decode()},
            },
        )
        kube.put(
            "deployments",
            {
                "metadata": {"name": c_settings.workload, "namespace": c_settings.namespace},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "b"}},
                    "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": []}},
                },
            },
        )
        kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig", "sa-token")
        b_settings.kubeconfig = c_settings.kubeconfig = kubeconfig
        c_settings.poll_interval = 0.02

        async def go() -> list[Any]:
            ctx = PluginContext(max_threads=4)
            b, c = KubernetesSecretBackend(b_settings, ctx), KubernetesRolloutConsumer(c_settings, ctx)
            try:
                await b.open()
                await c.open()
                out: list[Any] = [await b.preflight(), await c.preflight()]
                if rotate:
                    key = Secret("sk_test_" + "r" * 40)
                    stored = await b.read()
                    out.append(await b.write(key, token="t", expected_version=stored.version))
                    await c.signal(RotationEvent("adjutor", key.fingerprint, "r", 0))
                    loop = asyncio.get_running_loop()
                    out.append(await c.confirm(key.fingerprint, loop.time() + 20))
                return out
            finally:
                await b.close()
                await c.close()
                await ctx.aclose()

        return asyncio.run(go())


def test_the_configmap_plan_is_valid(tmp_path: Path) -> None:
    plan = load_plan(plan_file(tmp_path))
    assert [b.type for b in plan.backends] == ["kubernetes"] and [c.type for c in plan.consumers] == [
        "kubernetes-rollout"
    ]
    assert tomllib.loads(plan_file(tmp_path).read_text())["backends"][0]["primary"] is True


def test_the_role_is_enough_to_rotate(tmp_path: Path) -> None:
    bcheck, ccheck, written, confirmed = preflight_and_rotate(tmp_path, role_rules(), rotate=True)
    assert bcheck.ok is True and ccheck.ok is True, (bcheck, ccheck)
    assert "resourceVersion" in written.detail
    assert confirmed.confirmed and confirmed.reported_fingerprint == fingerprint("sk_test_" + "r" * 40)


@pytest.mark.parametrize("skip", [(0, "get"), (0, "patch"), (1, "get"), (1, "patch")])
def test_each_verb_of_the_role_is_needed(tmp_path: Path, skip: tuple[int, str]) -> None:
    """Secrets (rule 0) and deployments (rule 1), get and patch each: no more, and none less."""
    role = one("Role")
    assert [(r["resources"], r["verbs"]) for r in role["rules"]] == [
        (["secrets"], ["get", "patch"]),
        (["deployments"], ["get", "patch"]),
    ]
    bcheck, ccheck = preflight_and_rotate(tmp_path, role_rules(skip), rotate=False)
    assert bcheck.ok is False or ccheck.ok is False, (skip, bcheck, ccheck)


# -- the kustomization, as `kubectl kustomize` renders it ------------------------
def kustomize(path: Path) -> list[dict[str, Any]]:
    import os
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        why = "kubectl not found: apt-get install kubernetes-client"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (required in CI; .ci/run installs it)")
        pytest.skip(why)
    run = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def journal_of(docs: list[dict[str, Any]]) -> str:
    """Where the rendered Deployment keeps its journal: 'postgres (Secret NAME)' or 'pvc NAME'."""
    (dep,) = by_kind(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c.get("env", [])}
    if "ROTATOR_DB" in env:
        assert "value" not in env["ROTATOR_DB"], "the database URL holds a password: from a Secret, never inline"
        ref = env["ROTATOR_DB"]["valueFrom"]["secretKeyRef"]
        return f"postgres (Secret {ref['name']})"
    data_dir = env["ROTATOR_DATA_DIR"]["value"]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == data_dir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert "emptyDir" not in volume, "the journal on an emptyDir: every restart forgets every age, lock and job"
    return f"pvc {volume['persistentVolumeClaim']['claimName']}"


def test_the_kustomization_renders_valid_objects_that_keep_their_memory() -> None:
    docs = kustomize(DEPLOY)
    for doc in docs:
        model = type(codecs.from_dict(doc))
        assert model.from_dict(doc, lazy=False).to_dict() == doc, f"{doc['kind']} {doc['metadata']['name']}"
    listed = set(yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}  # nothing left out
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"  # one SQLite writer
    (pvc,) = by_kind(docs, "PersistentVolumeClaim")
    assert journal_of(docs) == f"pvc {pvc['metadata']['name']}"
    # The application image by digest (a placeholder: nothing is published from here).
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert re.fullmatch(r"[\w./-]+/rotator@sha256:[0-9a-f]{64}", c["image"]), c["image"]
    # Every namespaced object in rotator's namespace, but the Role/RoleBinding in the workload's.
    for d in docs:
        if d["kind"] not in ("Namespace", "Role", "RoleBinding"):
            assert d["metadata"]["namespace"] == "rotator", d["kind"]


def test_the_network_policy_lets_in_only_the_page_and_out_only_what_plans_use() -> None:
    docs = kustomize(DEPLOY)
    (np,) = by_kind(docs, "NetworkPolicy")
    (dep,) = by_kind(docs, "Deployment")
    spec = np["spec"]
    assert spec["podSelector"]["matchLabels"] == dep["spec"]["template"]["metadata"]["labels"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}] and rule["from"]  # never from anywhere
    egress_ports = {(p["protocol"], p["port"]) for r in spec["egress"] for p in r["ports"]}
    assert {("UDP", 53), ("TCP", 443)} <= egress_ports
    assert all(r.get("ports") for r in spec["egress"])  # no rule opens every port


def test_the_postgres_variant_runs_replicas_on_a_shared_journal() -> None:
    docs = kustomize(DEPLOY.parent / "kubernetes-postgres")
    for doc in docs:
        model = type(codecs.from_dict(doc))
        assert model.from_dict(doc, lazy=False).to_dict() == doc, f"{doc['kind']} {doc['metadata']['name']}"
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] >= 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert journal_of(docs) == "postgres (Secret rotator-db)"
    assert by_kind(docs, "PersistentVolumeClaim") == []  # nothing on a volume one replica could hold
    assert by_kind(docs, "NetworkPolicy")  # the same policy
