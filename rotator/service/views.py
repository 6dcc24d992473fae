"""The JSON shapes the API answers with (a refusal's, `{"error": ...}`, is `routes.api`'s).

Every shape passes through `rotator.secret.scrub_data` on its way out (in
`routes.json` and the event streams): reports and events carry fingerprints,
never keys; that net catches a plugin detail that echoes one by mistake.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rotator.exitcodes import Exit
from rotator.history_fold import repaired
from rotator.key_age import KeyAge, key_age
from rotator.report import BAD, KeyOutcome, RunState
from rotator.secret import scrub_data

if TYPE_CHECKING:
    from rotator.journal import Journal, RotationRow
    from rotator.pipeline.state import RotationState
    from rotator.plan import Plan
    from rotator.report import Report


def preflight(state: RotationState) -> list[dict[str, Any]]:
    """One entry per backend and consumer: ok (true/false/null = unverified), detail."""
    if state.armed is None:
        return []
    out = []
    kinds = {b.name: ("backend", b.type, b.primary) for b in state.plan.backends}
    kinds.update({c.name: ("consumer", c.type, False) for c in state.plan.consumers})
    for name, check in state.armed.checks.items():
        kind, type_, primary = kinds.get(name, ("?", "?", False))
        out.append(
            {
                "target": name,
                "kind": kind,
                "type": type_,
                "primary": primary,
                "ok": check.ok,
                "detail": check.detail,
                "warnings": list(check.warnings),
                "fingerprint": state.armed.current.get(name),
            }
        )
    if state.probe_check is not None:  # the API the new key is tried against: down means no reset yet
        c = state.probe_check
        out.append(
            {
                "target": "probe",
                "kind": "probe",
                "type": "api",
                "primary": False,
                "ok": c.ok,
                "detail": c.detail,
                "warnings": list(c.warnings),
                "fingerprint": None,
            }
        )
    order = {"probe": -1} | {b.name: i for i, b in enumerate(state.plan.backends)}
    order.update({c.name: 1000 + i for i, c in enumerate(state.plan.consumers)})
    return sorted(out, key=lambda e: order.get(e["target"], 10_000))


def key_answer(rotation: dict[str, Any], outcome: str, message: str, report: Report | None) -> dict[str, Any]:
    """The answer to a key, the same shape for every flow: its outcome and line, the rotation
    and the report so far; `error` too when the key was rejected (the line) or the rotation
    lost its plan's lock (another rotation holds the plan now)."""
    body: dict[str, Any] = {
        "outcome": outcome,
        "message": message,
        "rotation": rotation,
        "report": scrub_data(report.as_dict()) if report is not None else None,
    }
    if outcome == KeyOutcome.REJECTED:
        return {"error": message, **body}
    if report is not None and report.exit_code == Exit.LOCK_LOST:
        return {"error": report.message, **body}
    return body


def row_dict(row: RotationRow, with_report: bool = False) -> dict[str, Any]:
    d = {k: v for k, v in row.__dict__.items() if k != "report"}
    if row.kind == "sync":  # the page folds no-op syncs and shows what each repairing one repaired
        d["repaired"] = repaired(row)
    if with_report:
        d["report"] = row.report
    return d


def brief(row: RotationRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "id": row.id,
        "state": row.state,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
        "window_seconds": row.window_s,
        "fingerprint": row.new_fp or row.old_fp,
        "operator": row.operator,
    }


def plan_state(journal: Journal, plan: Plan, armed_rotation: str | None, age: KeyAge | None = None) -> dict[str, Any]:
    """A plan as the page shows it: targets, schedules, key age (`agejob.age_now`: the journal
    only when not given), last rotation and sync, drift, lock."""
    age = key_age(journal, plan) if age is None else age
    rows = journal.history(plan.name, 50)
    last_rot = next((r for r in rows if r.kind == "rotate" and r.state != RunState.ABORTED), None)
    last_sync = next((r for r in rows if r.kind == "sync" and r.state != RunState.SKIPPED), None)
    last_check = next((r for r in rows if r.kind == "check"), None)  # a drift check (writes nothing)
    ended = (RunState.DONE, RunState.PARTIAL, RunState.DRIFT)
    fp, fp_from = None, None
    for r in rows:
        if r.state in ended and (r.new_fp or r.old_fp):
            fp, fp_from = (r.new_fp or r.old_fp), r.id
            break
    drift: dict[str, bool] = {}
    for r in rows:
        if r.state in ended and r.report and r.report.get("targets"):
            for t in r.report["targets"]:
                if t.get("kind") == "backend" and not t.get("primary"):
                    drift[t["name"]] = t.get("status") in BAD
            break
    return {
        "name": plan.name,
        "description": plan.secret.description,
        "path": str(plan.path),
        "primary": plan.primary.name,
        "backends": [{"name": b.name, "type": b.type, "primary": b.primary} for b in plan.backends],
        "consumers": [{"name": c.name, "type": c.type} for c in plan.consumers],
        "schedules": [
            {"job": s.job, "cron": s.cron, "every": s.every, "when": s.when, "notify": s.notify is not None}
            for s in plan.schedules
        ],
        "fingerprint": fp,
        "fingerprint_from": fp_from,
        "key_age": age.as_dict(),
        "last_rotation": brief(last_rot),
        "last_sync": brief(last_sync),
        "last_check": brief(last_check),
        "drift": drift,
        "drifted": sorted(n for n, d in drift.items() if d),
        "armed_rotation": armed_rotation,
        "lock": journal.lock_info(plan.name),  # held by any replica: who, since when
        "probe": plan.probe.enabled,
        # alternating: the page reads the slots from /api/plans/NAME/slots (they need the backends)
        "strategy": "alternating" if plan.alternating else "single",
        "apps": list(plan.secret.apps) if plan.alternating else [],
    }
