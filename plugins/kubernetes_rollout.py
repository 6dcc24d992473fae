"""The ``kubernetes-rollout`` consumer: restart a Deployment, StatefulSet or
DaemonSet so its pods load the new key, and confirm the rollout finished.

Pods that read the key from an environment variable or a ``subPath`` mount
never see a changed Secret until they restart; a plain volume mount changes
only after the kubelet's sync period (a minute or more).  So the consumer does
what ``kubectl rollout restart`` does, patching the pod template's annotations,
but with the new key's fingerprint (``rotator.io/fingerprint``) instead of a
timestamp: each ReplicaSet then says which key its pods run on, and patching
the same fingerprint twice (a resumed rotation) starts no second rollout.

Confirmation is ``kubectl rollout status``'s logic, polled every
`poll_interval`: the controller has observed the patched generation; for a
Deployment, no ``ProgressDeadlineExceeded``, every replica updated, no old
replica left, every updated replica available (StatefulSet and DaemonSet by
their own counters).  Each change of progress is logged at info level
(``rotator -v``), e.g. ``3/5 pods updated``.  A stalled rollout leaves the
consumer unconfirmed (exit 5); ``rotator resume ID`` confirms it once the
rollout recovers.  A paused Deployment is refused: its restart would not roll.

A plan entry::

    [[consumers]]
    name = "billing-api"
    type = "kubernetes-rollout"
    kind = "Deployment"
    namespace = "billing"
    workload = "billing-api"
    reads_from = ["k8s"]
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from rotator.logs import get_logger
from rotator.plugin import Check, Confirmation, Consumer, ConsumerSettings, PluginError, RotationEvent

from ._http_confirm import as_fingerprint
from ._kube import (
    DNS_SUBDOMAIN,
    DaemonSet,
    Deployment,
    KubeTarget,
    PatchType,
    StatefulSet,
    access_problems,
    api_call,
    open_client,
    rbac_check,
    server_of,
)

__all__ = ["KubernetesRolloutConsumer", "RolloutState", "WorkloadKind", "rollout_status"]

log = get_logger("rotator.kubernetes")

DEFAULT_ANNOTATION = "rotator.io/fingerprint"
TIMED_OUT = "ProgressDeadlineExceeded"  # the Progressing condition's reason when a rollout stalls
_QUALIFIED = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


class WorkloadKind(StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"
    DAEMONSET = "DaemonSet"


_RESOURCE: dict[WorkloadKind, tuple[Any, str]] = {
    WorkloadKind.DEPLOYMENT: (Deployment, "deployments"),
    WorkloadKind.STATEFULSET: (StatefulSet, "statefulsets"),
    WorkloadKind.DAEMONSET: (DaemonSet, "daemonsets"),
}


@dataclass(frozen=True)
class RolloutState:
    """One look at a workload: finished, a progress line, or why it cannot finish."""

    done: bool
    line: str
    failed: str | None = None


def _n(value: int | None) -> int:
    return int(value or 0)


def rollout_status(kind: WorkloadKind, obj: Any) -> RolloutState:
    """``kubectl rollout status``'s decision for one object (kubectl's
    polymorphichelpers/rollout_status.go, one status viewer a kind), with shorter progress lines."""
    generation = _n(obj.metadata.generation if obj.metadata else None)
    status = obj.status
    observed = _n(status.observedGeneration if status else None)
    spec = obj.spec
    waiting = RolloutState(False, f"waiting for the controller to observe generation {generation}")
    if kind is WorkloadKind.DEPLOYMENT:
        return waiting if status is None or generation > observed else _deployment(status, spec)
    strategy = spec.updateStrategy.type if spec.updateStrategy is not None else None
    if strategy not in (None, "RollingUpdate"):
        return RolloutState(
            True, "", failed=f"has updateStrategy {strategy}: its pods restart only when deleted (use RollingUpdate)"
        )
    if kind is WorkloadKind.DAEMONSET:
        return waiting if status is None or generation > observed else _daemonset(status)
    if status is None or observed == 0 or generation > observed:
        return waiting
    return _statefulset(status, spec)


def _deployment(status: Any, spec: Any) -> RolloutState:
    """A Deployment whose controller has observed its generation (DeploymentStatusViewer)."""
    timed_out = any(c.type == "Progressing" and c.reason == TIMED_OUT for c in status.conditions or [])
    updated, available, total = _n(status.updatedReplicas), _n(status.availableReplicas), _n(status.replicas)
    if spec.replicas is not None and updated < spec.replicas:
        state = RolloutState(False, f"{updated}/{spec.replicas} pods updated")
    elif total > updated:
        old = total - updated
        state = RolloutState(False, f"{updated} pods updated, {old} old pod{'s' if old != 1 else ''} terminating")
    elif available < updated:
        state = RolloutState(False, f"{available}/{updated} updated pods available")
    else:
        state = RolloutState(True, f"{updated}/{updated} pods updated and available")
    if timed_out:  # kubectl checks this first: a stalled rollout is an error, whatever the counts
        return RolloutState(False, state.line, failed="exceeded its progress deadline (ProgressDeadlineExceeded)")
    return state


def _daemonset(status: Any) -> RolloutState:
    """A DaemonSet whose controller has observed its generation (DaemonSetStatusViewer)."""
    desired = _n(status.desiredNumberScheduled)
    if _n(status.updatedNumberScheduled) < desired:
        return RolloutState(False, f"{_n(status.updatedNumberScheduled)}/{desired} pods updated")
    if _n(status.numberAvailable) < desired:
        return RolloutState(False, f"{_n(status.numberAvailable)}/{desired} updated pods available")
    return RolloutState(True, f"{desired}/{desired} pods updated and available")


def _statefulset(status: Any, spec: Any) -> RolloutState:
    """A StatefulSet whose controller has observed its generation (StatefulSetStatusViewer)."""
    replicas = spec.replicas
    if replicas is not None and _n(status.readyReplicas) < replicas:
        return RolloutState(False, f"{_n(status.readyReplicas)}/{replicas} pods ready")
    rolling = spec.updateStrategy.rollingUpdate if spec.updateStrategy is not None else None
    if rolling is not None:
        if replicas is not None and rolling.partition is not None:
            want = replicas - rolling.partition
            if _n(status.updatedReplicas) < want:
                return RolloutState(False, f"{_n(status.updatedReplicas)}/{want} pods updated (partition)")
        return RolloutState(True, f"{_n(status.updatedReplicas)} pods updated")
    if status.updateRevision != status.currentRevision:
        return RolloutState(False, f"{_n(status.updatedReplicas)} pods at revision {status.updateRevision}")
    return RolloutState(True, f"{_n(status.currentReplicas)} pods at revision {status.currentRevision}")


class KubernetesRolloutConsumer(Consumer):
    """Patches the pod template's fingerprint annotation; confirms as kubectl rollout status does."""

    class Settings(ConsumerSettings, KubeTarget):
        type: str = "kubernetes-rollout"
        kind: WorkloadKind = Field(description="Deployment, StatefulSet or DaemonSet")
        workload: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description="the workload's name")
        annotation: str = Field(
            default=DEFAULT_ANNOTATION, max_length=316, description="pod-template annotation set to the fingerprint"
        )
        poll_interval: float = Field(default=0.5, ge=0.02, le=30, description="seconds between status reads")
        confirm_timeout: float = Field(
            default=300.0, gt=0, le=3600, description="seconds to wait for the rollout (also capped by the deadline)"
        )

        @field_validator("kind", mode="before")
        @classmethod
        def _kind(cls, v: Any) -> Any:
            if isinstance(v, str):
                for k in WorkloadKind:
                    if v.strip().lower() == k.value.lower():
                        return k
                raise ValueError("must be Deployment, StatefulSet or DaemonSet")
            return v

        @field_validator("annotation")
        @classmethod
        def _annotation(cls, v: str) -> str:
            if not _QUALIFIED.match(v) or len(v.rsplit("/", 1)[-1]) > 63:
                raise ValueError("must be an annotation name like rotator.io/fingerprint")
            return v

    settings: Settings

    def __init__(self, settings: Any, ctx: Any) -> None:
        super().__init__(settings, ctx)
        self._client: Any = None
        self._server = "the API server"
        self.progress: list[str] = []  # every distinct progress line of the last confirm, in order

    @property
    def can_confirm(self) -> bool:
        return True

    @property
    def _label(self) -> str:
        return f"kubernetes-rollout {self.name}"

    @property
    def _where(self) -> str:
        s = self.settings
        return f"{s.kind.value} {s.namespace}/{s.workload}"

    @property
    def _resource(self) -> Any:
        return _RESOURCE[self.settings.kind][0]

    def describe(self) -> str:
        return f"rollout of {self._where} at {self._server}"

    @property
    def client(self) -> Any:
        if self._client is None:
            raise PluginError(f"{self._label}: not open", retryable=False)
        return self._client

    async def open(self) -> None:
        try:
            self._client = await open_client(self.settings, self.settings.timeout, self.ctx.run_blocking)
        except PluginError as exc:
            raise PluginError(f"{self._label}: {exc}", retryable=False) from None
        self._server = server_of(self._client)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _get(self) -> Any:
        s = self.settings
        return await api_call(
            self._label,
            f"get {self._where}",
            self._server,
            self.client.get(self._resource, s.workload, namespace=s.namespace),
        )

    def _annotation_of(self, obj: Any) -> str | None:
        meta = obj.spec.template.metadata if obj.spec is not None and obj.spec.template is not None else None
        return (meta.annotations or {}).get(self.settings.annotation) if meta is not None else None

    def _paused(self, obj: Any) -> PluginError | None:
        if self.settings.kind is WorkloadKind.DEPLOYMENT and obj.spec is not None and obj.spec.paused:
            s = self.settings
            return PluginError(
                f"{self._label}: {self._where} is paused, so a restart would not roll out; resume it "
                f"(kubectl rollout resume deployment/{s.workload} -n {s.namespace}) or remove this consumer",
                retryable=False,
            )
        return None

    async def preflight(self) -> Check:
        try:
            obj = await self._get()
        except PluginError as exc:
            return Check(False, str(exc))
        paused = self._paused(obj)
        if paused is not None:
            return Check(False, str(paused))
        state = rollout_status(self.settings.kind, obj)
        if state.failed and state.done:  # a strategy that cannot roll out, whatever happens next
            return Check(False, f"{self._label}: {self._where} {state.failed}")
        s = self.settings
        try:
            denied = await access_problems(
                self.client,
                self._label,
                self._server,
                namespace=s.namespace,
                group="apps",
                resource=_RESOURCE[s.kind][1],
                name=s.workload,
                verbs=["get", "patch"],
            )
        except PluginError as exc:
            return Check(False, str(exc))
        if denied:
            return rbac_check(
                self._label, self._where, denied, f'apiGroups ["apps"], resources ["{_RESOURCE[s.kind][1]}"]'
            )
        warnings = []
        if state.failed:
            warnings.append(f"{self._label}: {self._where} {state.failed} now; its rollout may not finish")
        current = as_fingerprint(self._annotation_of(obj)) or "not set"
        return Check(
            True, f"{self._where} at {self._server}: {state.line}; {s.annotation} {current}", warnings=warnings
        )

    async def signal(self, event: RotationEvent) -> str:
        obj = await self._get()
        paused = self._paused(obj)
        if paused is not None:
            raise paused
        s = self.settings
        if self._annotation_of(obj) == event.fingerprint:
            generation = obj.metadata.generation if obj.metadata else None
            return f"{self._where} already runs a template with {event.fingerprint} (generation {generation})"
        patch = {"spec": {"template": {"metadata": {"annotations": {s.annotation: event.fingerprint}}}}}
        patched = await api_call(
            self._label,
            f"patch {self._where}",
            self._server,
            self.client.patch(self._resource, s.workload, patch, namespace=s.namespace, patch_type=PatchType.MERGE),
        )
        generation = patched.metadata.generation if patched.metadata else None
        return f"restarted {self._where}: {s.annotation}={event.fingerprint} (generation {generation})"

    async def confirm(self, fingerprint: str, deadline: float) -> Confirmation:
        loop = asyncio.get_running_loop()
        interval = self.settings.poll_interval
        self.progress = []
        last = "no answer yet"
        while True:
            try:
                obj = await self._get()
            except PluginError as exc:
                if not exc.retryable:
                    return Confirmation(False, detail=str(exc))
                last = str(exc)  # an API server restarting: keep looking until the deadline
            else:
                reported = self._annotation_of(obj)
                if reported != fingerprint:
                    # Echo it only if it is a fingerprint: an annotation can hold anything.
                    shown = as_fingerprint(reported) or ("another value" if reported else "unset")
                    return Confirmation(
                        False,
                        as_fingerprint(reported),
                        f"{self._where}'s template now has {self.settings.annotation} {shown}, "
                        f"not {fingerprint} (changed by someone else?)",
                    )
                paused = self._paused(obj)
                if paused is not None:
                    return Confirmation(False, fingerprint, str(paused))
                state = rollout_status(self.settings.kind, obj)
                if state.line and state.line != last:
                    last = state.line
                    self.progress.append(last)
                    log.info("rollout progress", target=self.name, workload=self._where, progress=last)
                if state.failed:
                    return Confirmation(
                        False,
                        fingerprint,
                        f"{self._where} {state.failed}"
                        + (f" at {state.line}" if state.line else "")
                        + "; fix the rollout, then `rotator resume ID` confirms it",
                    )
                if state.done:
                    return Confirmation(True, fingerprint, f"{self._where} rolled out: {state.line}")
            left = deadline - loop.time()
            if left <= 0:
                return Confirmation(False, fingerprint, f"{self._where} not rolled out by the deadline: {last}")
            await asyncio.sleep(min(interval, left))
