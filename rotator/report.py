"""What a rotation reports: live progress events, per-target results, the final report.

Plain data (dataclasses with `as_dict` for JSON); the journal, the terminal, the
service's event stream and `--json` all read the same shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: this module stays standard-library (the journal and the CLI import it)
    from rotator.plugin import Check
    from rotator.probe import ProbeResult


class TargetStatus(StrEnum):
    """Where one backend or consumer ended (`TargetResult.status`)."""

    PENDING = "pending"
    OK = "ok"
    UNCHANGED = "unchanged"  # already held the key (resume, sync), or the primary it came from
    FAILED = "failed"
    SKIPPED = "skipped"  # a consumer not signalled because what it reads from was not written
    UNCONFIRMED = "unconfirmed"  # signalled, but did not report the new fingerprint in time
    CONFLICT = "conflict"  # check-and-set: changed since arm
    DRIFT = "drift"  # sync --check: differs from the primary


GOOD = frozenset({TargetStatus.OK, TargetStatus.UNCHANGED})
BAD = frozenset(
    {TargetStatus.FAILED, TargetStatus.SKIPPED, TargetStatus.UNCONFIRMED, TargetStatus.CONFLICT, TargetStatus.DRIFT}
)


class RunState(StrEnum):
    """A rotation's (or sync's) state in the journal and its report.

    There is no "primary written" state: `fanning_out` is journaled the moment
    the primary's write is read back, so it is that state (one awaited journal
    write fewer in the window).  A run killed during the primary write is left
    `key_accepted`: only the primary can say whether the write landed.
    """

    ARMED = "armed"
    KEY_ACCEPTED = "key_accepted"  # write-ahead: the key's fingerprint, before any backend has it
    FANNING_OUT = "fanning_out"  # the primary holds the key
    DONE = "done"
    # An alternating promote is done and every target holds the promoted key; the re-key of the
    # retired app (the operator's reset) is left: `rotate` / `rekey` asks for it, `rollback` undoes it.
    REKEY_LEFT = "rekey_left"
    PARTIAL = "partial"  # the primary holds the key, some target does not
    REFUSED = "refused"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"  # the primary write failed (its answer may have been lost: it may have landed)
    CONFLICT = "conflict"
    ABORTED = "aborted"
    DRY_RUN = "dry_run"
    DRIFT = "drift"
    SKIPPED = "skipped"  # a sync that found the plan locked by a rotation (or another sync): nothing to do, no failure


# The run stopped: nothing more happens to it unless `rotator resume` picks it up.
FINISHED = frozenset(
    {
        RunState.DONE,
        RunState.REKEY_LEFT,  # nothing `resume` can do: the next alternating command asks for the reset
        RunState.PARTIAL,
        RunState.REFUSED,
        RunState.UNAVAILABLE,
        RunState.FAILED,
        RunState.SKIPPED,
        RunState.ABORTED,
        RunState.CONFLICT,
        RunState.DRY_RUN,
        RunState.DRIFT,
    }
)
# The primary holds (or may hold) the key and some target may not: `rotator resume`
# finishes it from the primary, `rotate` warns about it, `history` marks it.
RESUMABLE = frozenset({RunState.KEY_ACCEPTED, RunState.FANNING_OUT, RunState.PARTIAL, RunState.FAILED})
# What `resume` says of a `rekey_left` run (the CLI and the service), PLAN its plan's path.
REKEY_LEFT_LINE = (
    "its promote is done and every target holds the promoted key; its re-key is left (a reset only the operator "
    "can do, so `resume` cannot): `rotator rotate {plan}` (or `rotator rekey {plan}`) asks for it; "
    "`rotator rollback {plan}` undoes the promote"
)
# Resume cannot tell from the journal whether the primary write landed: the primary decides.
PRIMARY_UNSURE = frozenset({RunState.KEY_ACCEPTED, RunState.FAILED})


class Step(StrEnum):
    """The step a progress line or a journal event belongs to."""

    ARM = "arm"
    KEY = "key"
    PROBE = "probe"
    PRIMARY = "primary"
    WRITE = "write"
    SIGNAL = "signal"
    CONFIRM = "confirm"
    CONSUMER = "consumer"  # journal: where a consumer ended
    CHECK = "check"  # sync --check
    SLOTS = "slots"  # alternating: both slots read and probed at arm
    PROMOTE = "promote"  # alternating: the standby became the active key
    REKEY = "rekey"  # alternating: a new key in the standby slot
    ROLLBACK = "rollback"  # alternating: a promote undone
    REVOKED = "revoked"  # alternating: the previous standby key proven refused
    INCIDENT = "incident"  # `rotate --incident` (single-app): the leaked key and whether it is proven revoked
    SLOT_RECORD = "slot_record"  # alternating: a slot write's record (apps, fingerprints, leaked key), before it
    REPORT = "report"
    CLOSE = "close"  # journal: a close asked for (another replica, the page) or an armed session closed
    RESUME = "resume"  # journal: a resume started


class EmitStatus(StrEnum):
    """A progress line's status (`Progress.status`, `RotationState.emit`)."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    WARNING = "warning"
    SKIPPED = "skipped"

    @classmethod
    def of(cls, ok: bool) -> EmitStatus:
        """OK or FAILED: how a step that ran ended."""
        return cls.OK if ok else cls.FAILED


class KeyOutcome(StrEnum):
    """What became of one key the operator gave: handed to a session's flow (`Attempt`), or
    written to the standby (`rekey.StandbyRow.outcome`).  One vocabulary for every front end."""

    REJECTED = "rejected"  # the paste is not a key (empty, wrong shape): nothing probed
    REFUSED = "refused"  # the probe refused it or could not check it (or the wrong app's key): nothing written
    WRITTEN = "written"  # the rotation ran: see the report's state
    DRY_RUN = "dry_run"
    TAKEN = "taken"  # a flow took it and asks for the next reset
    FINISHED = "finished"  # the flow ended after it
    CLOSED = "closed"  # the session closed instead
    DONE = "done"  # the standby holds it, read back
    ACTIVE_RESET = "active_reset"  # the active key is refused: the active app was reset (nothing written)
    FAILED = "failed"  # the standby write failed (nothing, or the old standby, stays)


class RunKind(StrEnum):
    """A journal entry's kind: what ran (`RotationState.kind`).  An incident is journaled as a rotate."""

    ROTATE = "rotate"
    SYNC = "sync"
    CHECK = "check"  # sync --check
    PROMOTE = "promote"
    REKEY = "rekey"
    ROLLBACK = "rollback"
    REPAIR = "repair"  # alternating: the slot record stated by the operator (`rotator status --repair`)


def window_from(kind: str, alternating: dict[str, Any] | None = None) -> str:
    """What a run's window is counted from, in its own words: a key's arrival only when a key
    was received; a promote, roll back or sync counts from its own start."""
    if kind == RunKind.ROLLBACK:
        return "roll back start"
    if kind == RunKind.PROMOTE or (
        kind == RunKind.ROTATE and (alternating or {}).get("promote") and not (alternating or {}).get("mistaken_reset")
    ):
        return "promote start"
    if kind == RunKind.SYNC:
        return "sync start"
    return "key received"


@dataclass
class Progress:
    """One line of live progress: a step or a target changed state."""

    step: str  # a Step
    target: str
    status: str  # an EmitStatus
    detail: str = ""
    seconds: float | None = None


ProgressFn = Callable[[Progress], None]


@dataclass
class TargetResult:
    name: str
    kind: str  # backend | consumer
    type: str
    status: str = TargetStatus.PENDING
    detail: str = ""
    attempts: int = 0
    started: float | None = None  # seconds after the key was received
    finished: float | None = None
    version: str | None = None
    fingerprint: str | None = None  # read back (backend) or reported (consumer)
    primary: bool = False
    # The timeline's bars: phase (write, read_back, signal, confirm) -> [start, end], seconds after the key.
    phases: dict[str, list[float]] = field(default_factory=dict)

    def phase(self, name: str, start: float, end: float) -> None:
        self.phases[name] = [start, end]

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
            "phases": {k: [round(a, 4), round(b, 4)] for k, (a, b) in self.phases.items()},
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
    # backend -> what it records of its current value: version, changed_at, changed_by (`plugin.Stored`)
    changed: dict[str, dict[str, str | None]] = field(default_factory=dict)

    def problems(self) -> list[str]:
        return [f"{name}: {unlabelled(name, c.detail)}" for name, c in self.checks.items() if c.ok is False]


def unlabelled(name: str, detail: str) -> str:
    """`detail` without a plugin's own "TYPE NAME: " label, where rotator names the target
    already (no "vault: vault vault: sealed")."""
    import re

    return re.sub(rf"^[\w-]+ {re.escape(name)}: ", "", detail, count=1)


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
    alternating: dict[str, Any] | None = None  # alternating plans: the apps, the promote, the re-key, an incident
    # `rotate --incident` of a single-app plan: {leaked_fingerprint, revoked (true/false/null), detail}
    incident: dict[str, Any] | None = None
    # The outage the API's callers saw: reset detected -> last consumer confirmed = operator + window.
    outage: float | None = None
    # When the reset's time is only a bound (pipeline.outage): {at_least, at_most, reason}; `outage`
    # is then unset if the watch did not see the reset (never reported as the window).
    outage_bound: dict[str, Any] | None = None
    operator_share: float | None = None  # reset detected -> the accepted key received
    key_received_at: float | None = None  # wall clock
    reset: dict[str, Any] | None = None  # ResetDetected.as_dict (+ "inferred"), None: no reset seen
    watch: dict[str, Any] | None = None  # WatchResult.as_dict: how the old key was watched
    refused_keys: list[dict[str, Any]] = field(default_factory=list)  # pastes refused before the accepted key
    journal_written: bool = True  # False: the final record could not be written (the journal says unfinished)
    # A sync: each backend it repaired (backend, fingerprint before/after, what the backend records of the change)
    drift: list[dict[str, Any]] | None = None

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
            "old_key_check": old_key_check(self.revocation),
            "targets": [t.as_dict() for t in self.targets],
            "warnings": self.warnings,
            **({"alternating": self.alternating} if self.alternating is not None else {}),
            **({"incident": self.incident} if self.incident is not None else {}),
            "outage_seconds": _r(self.outage),
            "outage_bound": self.outage_bound,
            "operator_seconds": _r(self.operator_share),
            "key_received_at": self.key_received_at,
            "reset": self.reset,
            "watch": self.watch,
            "refused_keys": self.refused_keys,
            **({"journal_written": False} if not self.journal_written else {}),
            **({"drift": self.drift} if self.drift is not None else {}),
        }


def old_key_check(revocation: ProbeResult | None) -> dict[str, Any] | None:
    """The old-key check said as what it proves: `revoked` true (the old key was refused),
    false (it still works), null (could not tell); `outcome` the same in words."""
    if revocation is None:
        return None
    out = revocation.as_dict()
    revoked = {"accepted": True, "refused": False}.get(out["outcome"])
    out["revoked"] = revoked
    out["outcome"] = {True: "revoked", False: "not_revoked", None: "unknown"}[revoked]
    return out
