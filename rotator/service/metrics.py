"""Prometheus metrics of the service, on a registry of its own.

Own registry (not the process-global default) so that two services in one
process (tests) never collide, and `/metrics` shows only rotator's series.
Everything is labelled by plan name and, where it applies, backend or step;
never by anything derived from a key.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from rotator.key_state import KeyState
from rotator.report import BAD

if TYPE_CHECKING:
    from rotator.journal import Journal
    from rotator.plan import Plan
    from rotator.report import Report

VALIDITY_STATES = tuple(s.label for s in KeyState)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The window is tens of milliseconds when all is well, seconds when a consumer is slow.
WINDOW_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.window = Histogram(
            "rotator_rotation_window_seconds",
            "Seconds from the key's arrival until the last target holds it (or gave up)",
            ["plan"],
            buckets=WINDOW_BUCKETS,
            registry=r,
        )
        self.outage = Histogram(
            "rotator_rotation_outage_seconds",
            "Seconds from the old key's first refusal seen while armed (the reset) until the last target holds"
            " the new key: what the API's callers saw; only rotations whose reset was seen",
            ["plan"],
            buckets=WINDOW_BUCKETS,
            registry=r,
        )
        self.step = Histogram(
            "rotator_step_duration_seconds",
            "Seconds each step of a rotation or sync took (arm, probe, primary, fan_out)",
            ["plan", "kind", "step"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.runs = Counter(
            "rotator_runs_total", "Rotations and syncs finished, by final state", ["plan", "kind", "state"], registry=r
        )
        self.last_rotation = Gauge(
            "rotator_last_successful_rotation_timestamp_seconds",
            "Unix time of the last rotation of the plan that finished with every target done",
            ["plan"],
            registry=r,
        )
        self.last_sync = Gauge(
            "rotator_last_successful_sync_timestamp_seconds",
            "Unix time of the last sync of the plan that finished with every backend in line",
            ["plan"],
            registry=r,
        )
        self.drift = Gauge(
            "rotator_backend_drift",
            "1 when the backend does not hold the primary's key (as last seen by a sync or rotation), else 0",
            ["plan", "backend"],
            registry=r,
        )
        self.key_age = Gauge(
            "rotator_key_age_seconds",
            "Seconds since the plan's key was set: its last rotation or adoption in the journal, else the "
            "primary's own record (absent when none says)",
            ["plan"],
            registry=r,
        )
        self.key_max_age = Gauge(
            "rotator_key_max_age_seconds",
            "The plan's max_age_days, in seconds (absent when the plan sets none)",
            ["plan"],
            registry=r,
        )
        self.key_age_warning = Gauge(
            "rotator_key_age_warning",
            "1 when the key is older than max_age_days or within reminder_lead_days of it, "
            "or its age is unknown; else 0",
            ["plan"],
            registry=r,
        )
        self.last_drift = Gauge(
            "rotator_last_drift_repaired_timestamp_seconds",
            "Unix time a sync last found the backend out of line with the primary and repaired it",
            ["plan", "backend"],
            registry=r,
        )
        self.key_validity = Gauge(
            "rotator_key_validity",
            "1 for the state of the plan's key at its last check on the probe endpoint (works, refused, "
            "could_not_check), 0 for the others; checked every --validity-every seconds (default 600)",
            ["plan", "state"],
            registry=r,
        )
        self._validity_at: dict[str, float] = {}
        self.key_validity_checked = Gauge(
            "rotator_key_validity_checked_timestamp_seconds",
            "Unix time of this replica's last check of the plan's key",
            ["plan"],
            registry=r,
        )
        self.armed = Gauge("rotator_armed_rotations", "Rotations armed and waiting for a key", registry=r)
        self.skipped = Counter(
            "rotator_sync_skipped_total",
            "Syncs (and drift checks) skipped because the plan was locked by a rotation or another sync",
            ["plan", "kind"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- updates ---------------------------------------------------------
    def observe_arm(self, plan: str, kind: str, seconds: float) -> None:
        self.step.labels(plan, kind, "arm").observe(seconds)

    def observe_report(self, report: Report, finished_at: float | None = None) -> None:
        finished_at = finished_at or time.time()
        plan, kind = report.plan, report.kind
        self.runs.labels(plan, kind, report.state).inc()
        for step, secs in report.steps.items():
            if secs is not None:
                self.step.labels(plan, kind, step).observe(secs)
        wrote = report.state in ("done", "partial")
        if kind == "rotate" and wrote and report.window is not None:
            self.window.labels(plan).observe(report.window)
            if report.outage is not None:
                self.outage.labels(plan).observe(report.outage)
        for t in report.targets:
            if t.kind == "backend":
                self.drift.labels(plan, t.name).set(1 if t.status in BAD else 0)
        for d in report.drift or []:
            self.last_drift.labels(plan, str(d.get("backend"))).set(finished_at)
        if report.state == "done":
            if kind == "rotate":
                self.last_rotation.labels(plan).set(finished_at)
                self.key_age.labels(plan).set(0)
            elif kind == "sync":
                self.last_sync.labels(plan).set(finished_at)

    def observe_skipped(self, plan: str, kind: str) -> None:
        self.skipped.labels(plan, kind).inc()
        self.runs.labels(plan, kind, "skipped").inc()

    def set_validity(self, plan: str, state: str, checked_at: float) -> None:
        for s in VALIDITY_STATES:
            self.key_validity.labels(plan, s).set(1 if s == state else 0)
        self.key_validity_checked.labels(plan).set(checked_at)
        self._validity_at[plan] = checked_at

    def forget_validity_older_than(self, plan: str, cutoff: float) -> None:
        """Drop this replica's answer for `plan` once it is stale (another replica has a fresh one)."""
        checked = self._validity_at.get(plan)
        if checked is not None and checked < cutoff:
            del self._validity_at[plan]
            for s in VALIDITY_STATES:
                with contextlib.suppress(KeyError):
                    self.key_validity.remove(plan, s)
            with contextlib.suppress(KeyError):
                self.key_validity_checked.remove(plan)

    def set_key_age(self, plan: str, age: float | None, warning: bool, max_age_days: int | None = None) -> None:
        if max_age_days is not None:
            self.key_max_age.labels(plan).set(max_age_days * 86400.0)
        if age is None:
            try:
                self.key_age.remove(plan)
            except KeyError:
                pass
        else:
            self.key_age.labels(plan).set(age)
        self.key_age_warning.labels(plan).set(1 if warning else 0)

    def load(self, journal: Journal, plans: list[Plan]) -> None:
        """Seed the timestamps from the journal, so a restart does not look like 'never'."""
        for plan in plans:
            rot = journal.last_success(plan.name, "rotate")
            if rot is not None and rot.finished_at:
                self.last_rotation.labels(plan.name).set(rot.finished_at)
            sync = journal.last_success(plan.name, "sync")
            if sync is not None and sync.finished_at:
                self.last_sync.labels(plan.name).set(sync.finished_at)
