"""What a rotation reports: live progress events, per-target results, the final report.

Plain data (dataclasses with `as_dict` for JSON); the journal, the terminal, the
service's event stream and `--json` all read the same shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rotator.plugin import Check
from rotator.probe import ProbeResult


@dataclass
class Progress:
    """One line of live progress: a step or a target changed state."""

    step: str  # arm | key | probe | primary | write | signal | confirm | revoked | report
    target: str
    status: str  # running | ok | failed | skipped | warning
    detail: str = ""
    seconds: float | None = None


ProgressFn = Callable[[Progress], None]


@dataclass
class TargetResult:
    name: str
    kind: str  # backend | consumer
    type: str
    status: str = "pending"  # ok | failed | skipped | unconfirmed | unchanged
    detail: str = ""
    attempts: int = 0
    started: float | None = None  # seconds after the key was received
    finished: float | None = None
    version: str | None = None
    fingerprint: str | None = None  # read back (backend) or reported (consumer)
    primary: bool = False

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "type": self.type,
            "primary": self.primary,
            "status": self.status,
            "detail": self.detail,
            "attempts": self.attempts,
            "started": _r(self.started),
            "finished": _r(self.finished),
            "seconds": _r(self.seconds),
            "version": self.version,
            "fingerprint": self.fingerprint,
        }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


@dataclass
class ArmResult:
    ok: bool
    checks: dict[str, Check]
    old_fingerprint: str | None
    old_version: str | None
    seconds: float
    current: dict[str, str | None] = field(default_factory=dict)  # backend -> fingerprint now

    def problems(self) -> list[str]:
        return [f"{name}: {c.detail}" for name, c in self.checks.items() if c.ok is False]


@dataclass
class Report:
    id: str
    kind: str
    plan: str
    state: str
    exit_code: int
    reason: str = ""
    operator: str = ""
    old_fingerprint: str | None = None
    new_fingerprint: str | None = None
    window: float | None = None
    steps: dict[str, float] = field(default_factory=dict)
    probe: ProbeResult | None = None
    revocation: ProbeResult | None = None
    targets: list[TargetResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "plan": self.plan,
            "state": self.state,
            "exit_code": self.exit_code,
            "message": self.message,
            "reason": self.reason,
            "operator": self.operator,
            "old_fingerprint": self.old_fingerprint,
            "new_fingerprint": self.new_fingerprint,
            "window_seconds": _r(self.window),
            "steps": {k: _r(v) for k, v in self.steps.items()},
            "probe": self.probe.as_dict() if self.probe else None,
            "old_key_check": self.revocation.as_dict() if self.revocation else None,
            "targets": [t.as_dict() for t in self.targets],
            "warnings": self.warnings,
        }
