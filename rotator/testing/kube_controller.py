"""The workload controllers of the Kubernetes double (`rotator.testing.kube`):
Deployments, StatefulSets and DaemonSets advance one step per tick after a change
of their pod template, as the real controllers report it in ``status``.

After a patch of the template: observedGeneration first, then one pod updated per
tick, old pods gone, updated pods available.  A rollout can be stalled at N pods
(a Deployment is then marked ``ProgressDeadlineExceeded`` after its deadline) and
recovered.  ``autostep=False`` on the server leaves the ticking to the test
(`RolloutController.step_all`), so each state can be looked at as long as needed.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["APPS", "Rollout", "RolloutController"]

APPS = ("deployments", "statefulsets", "daemonsets")


class _Store(Protocol):
    """What the controller needs of the server (`KubeServer`)."""

    _lock: Any
    read_since_step: set[tuple[str, str, str]]

    def objects(self, plural: str) -> list[dict[str, Any]]: ...

    def update_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None: ...


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Rollout:
    """How the controller treats one workload: stall at `stall_at` updated pods
    (None: never) and mark it stalled `deadline` seconds after its last progress."""

    stall_at: int | None = None
    deadline: float = 0.2
    nodes: int = 3  # DaemonSet: the nodes it runs on
    last_progress: float = field(default_factory=time.monotonic)
    template: str = ""


class RolloutController:
    """Advances the status of Deployments, StatefulSets and DaemonSets, one step per tick."""

    def __init__(self, server: _Store, *, tick: float = 0.02, lockstep: bool = False) -> None:
        self.server = server
        self.tick = tick
        # lockstep: a rollout advances only after its workload was read since the last
        # step, so a poller sees every step (tests of progress lines need no timing).
        self.lockstep = lockstep
        self.rollouts: dict[tuple[str, str, str], Rollout] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def rollout(self, plural: str, namespace: str, name: str) -> Rollout:
        with self.server._lock:
            return self.rollouts.setdefault((plural, namespace, name), Rollout())

    def stall(self, plural: str, namespace: str, name: str, *, at: int, deadline: float = 0.2) -> None:
        r = self.rollout(plural, namespace, name)
        r.stall_at, r.deadline = at, deadline

    def recover(self, plural: str, namespace: str, name: str) -> None:
        """The cause is fixed (a quota raised, an image pushed): progress resumes, and
        the Progressing condition leaves ProgressDeadlineExceeded as the controller does."""
        r = self.rollout(plural, namespace, name)
        r.stall_at = None
        r.last_progress = time.monotonic()
        if plural == "deployments":
            self.server.update_status(
                plural, namespace, name, {"conditions": [_progressing("True", "ReplicaSetUpdated")]}
            )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kube-controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self.step_all()

    def step_all(self) -> None:
        """One tick of every workload controller."""
        with self.server._lock:
            for plural in APPS:
                for obj in self.server.objects(plural):
                    self.step(plural, obj)

    def step(self, plural: str, obj: dict[str, Any]) -> None:
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        ns, name = meta["namespace"], meta["name"]
        r = self.rollout(plural, ns, name)
        template = _hash(spec.get("template"))
        generation = meta.get("generation", 1)
        n = int(spec.get("replicas", 1)) if plural != "daemonsets" else r.nodes
        new: dict[str, Any] = {}
        if status.get("observedGeneration", 0) < generation:
            if spec.get("paused"):
                self.server.update_status(plural, ns, name, {"observedGeneration": generation})
                return
            new["observedGeneration"] = generation
            if template != r.template:
                first = not r.template
                r.template, r.last_progress = template, time.monotonic()
                done = n if first else 0  # a new workload starts on its first template
                new.update(self._counts(plural, name, n, done, n, n, template, first))
                if plural == "deployments":
                    reason = "NewReplicaSetAvailable" if first else "ReplicaSetUpdated"
                    new["conditions"] = [_progressing("True", reason)]
            self.server.update_status(plural, ns, name, new)
            return
        if spec.get("paused"):
            return
        if self.lockstep and (plural, ns, name) not in self.server.read_since_step:
            return
        updated = self._updated(plural, status)
        total = self._total(plural, status, n)
        available = self._available(plural, status, n)
        if updated >= n and total <= n and available >= n:
            return  # rolled out
        if r.stall_at is not None and updated >= r.stall_at:
            if plural == "deployments" and time.monotonic() - r.last_progress > r.deadline:
                conds = status.get("conditions") or []
                if not any(c.get("reason") == "ProgressDeadlineExceeded" for c in conds):
                    rs = f"{name}-{template[:8]}"
                    cond = _progressing(
                        "False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs}" has timed out progressing.'
                    )
                    self.server.update_status(plural, ns, name, {"conditions": [cond]})
            return
        r.last_progress = time.monotonic()
        self.server.read_since_step.discard((plural, ns, name))
        if updated < n:
            new.update(self._counts(plural, name, n, updated + 1, n + 1, n, template, False))
        elif total > n:
            new.update(self._counts(plural, name, n, n, n, max(n - 1, 0), template, False))
        else:
            new.update(self._counts(plural, name, n, n, n, n, template, True))
        if plural == "deployments":
            done = updated >= n and total <= n
            new["conditions"] = [_progressing("True", "NewReplicaSetAvailable" if done else "ReplicaSetUpdated")]
        self.server.update_status(plural, ns, name, new)

    @staticmethod
    def _counts(
        plural: str, name: str, n: int, updated: int, total: int, available: int, template: str, finished: bool
    ) -> dict[str, Any]:
        if plural == "deployments":
            return {
                "replicas": total,
                "updatedReplicas": updated,
                "readyReplicas": available,
                "availableReplicas": available,
            }
        if plural == "statefulsets":
            rev = f"{name}-{template[:8]}"
            out: dict[str, Any] = {
                "replicas": n,
                "readyReplicas": available if total <= n else n,
                "updatedReplicas": updated,
                "updateRevision": rev,
            }
            if finished:
                out.update(currentRevision=rev, currentReplicas=n)
            return out
        return {
            "desiredNumberScheduled": n,
            "currentNumberScheduled": n,
            "numberMisscheduled": 0,
            "updatedNumberScheduled": updated,
            "numberAvailable": available if total <= n else n - 1 if updated < n else available,
            "numberReady": available,
        }

    @staticmethod
    def _updated(plural: str, status: dict[str, Any]) -> int:
        key = "updatedNumberScheduled" if plural == "daemonsets" else "updatedReplicas"
        return int(status.get(key, 0))

    @staticmethod
    def _total(plural: str, status: dict[str, Any], n: int) -> int:
        return int(status.get("replicas", n)) if plural == "deployments" else n

    @staticmethod
    def _available(plural: str, status: dict[str, Any], n: int) -> int:
        if plural == "deployments":
            return int(status.get("availableReplicas", 0))
        if plural == "daemonsets":
            return int(status.get("numberAvailable", 0))
        return n if status.get("currentRevision") == status.get("updateRevision") else 0


def _progressing(state: str, reason: str, message: str = "") -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "type": "Progressing",
        "status": state,
        "reason": reason,
        "message": message or reason,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    }
