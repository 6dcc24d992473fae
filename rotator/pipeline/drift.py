"""`sync --check`: which backends differ from the primary, from what arm read; writes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotator.exitcodes import Exit
from rotator.pipeline import finish
from rotator.report import EmitStatus, Report, RunState, Step, TargetResult, TargetStatus

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.secret import Secret


async def run(state: RotationState, secret: Secret) -> Report:
    assert state.armed is not None
    primary = state.plan.primary.name
    targets = []
    for name, fp in state.armed.current.items():
        if name == primary:
            continue
        b = state.backends[name]
        drift = fp != secret.fingerprint
        detail = f"holds {fp or 'nothing'}, primary holds {secret.fingerprint}" if drift else "in sync"
        status = TargetStatus.DRIFT if drift else TargetStatus.UNCHANGED
        targets.append(TargetResult(name, "backend", b.settings.type, status, detail, fingerprint=fp))
        state.emit(Step.CHECK, name, EmitStatus.FAILED if drift else EmitStatus.OK, detail)
    drifted = [t.name for t in targets if t.status == TargetStatus.DRIFT]
    report = Report(
        id=state.id,
        kind=state.kind,
        plan=state.plan.name,
        state=RunState.DRIFT if drifted else RunState.DONE,
        exit_code=int(Exit.DRIFT if drifted else Exit.DONE),
        old_fingerprint=secret.fingerprint,
        new_fingerprint=secret.fingerprint,
        targets=targets,
        message=f"drift in {', '.join(drifted)}" if drifted else "every backend matches the primary",
    )
    return await finish.close_journal(state, report)
