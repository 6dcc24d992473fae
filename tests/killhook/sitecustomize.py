"""Test-only: SIGKILL this very process at a journal boundary (issue 23's crash matrix).

Put this directory on PYTHONPATH and set ROTATOR_TEST_KILL_AT="STEP:STATUS:WHEN" (WHEN: before |
after; STATUS "*" matches any; STEP "state" matches a rotation row's state update to STATUS):
the process kills itself with SIGKILL right before or right after that journal write commits, as a
crash or an OOM kill would, with no `finally` run.  Nothing else is changed.
"""

from __future__ import annotations

import os
import signal
from typing import Any

_SPEC = os.environ.get("ROTATOR_TEST_KILL_AT", "")

if _SPEC:
    _step, _status, _when = [*_SPEC.split(":"), "", "", ""][:3]

    def _hit(rows: Any, values: dict[str, Any]) -> bool:
        if _step == "state":
            return values.get("state") == _status
        return any(r.get("step") == _step and _status in ("*", r.get("status")) for r in rows)

    def _die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def _install() -> None:
        from rotator.journal import store

        record_many, update = store.Journal.record_many, store.Journal.update

        def killing_record_many(self: Any, rows: list[dict[str, Any]]) -> None:
            hit = _hit(rows, {})
            if hit and _when == "before":
                _die()
            record_many(self, rows)
            if hit and _when == "after":
                _die()

        def killing_update(self: Any, rid: str, *, with_events: Any = (), **values: Any) -> None:
            hit = _hit(list(with_events), values)
            if hit and _when == "before":
                _die()
            update(self, rid, with_events=with_events, **values)
            if hit and _when == "after":
                _die()

        store.Journal.record_many = killing_record_many  # type: ignore[method-assign]
        store.Journal.update = killing_update  # type: ignore[method-assign]

    try:
        _install()
    except ImportError:  # not a rotator process
        pass
