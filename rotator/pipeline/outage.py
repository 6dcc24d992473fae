"""The outage the API's callers saw, beside the window rotator can shorten.

    reset detected ──operator's share──▶ key received ──window──▶ last consumer confirmed
    └──────────────────────────── outage ──────────────────────────────────────┘

The reset is the old key's first refusal seen by the session's `ResetWatch`.  A
key that arrives before the watch saw one (the clipboard takes it ~10 ms after the
click, the watch looks every 0.5 s) is followed by one more look at the old key:
refused, the reset happened between the last look it passed and the key's arrival.
Then the reset's time is only a bound and so is the outage: it is at least the
window (the reset at the latest, the key's arrival) and at most the window plus
the time since the watch's last pass (`outage_bound`); `outage` (a figure the
consumers would recognise) is left unset, never reported as the window.  Accepted,
the old key still worked when the new one came, which the report says plainly.

A reset the watch did see is known to within one watch interval (the refusal came
between two looks); when that uncertainty is over `EXACT_WITHIN`, `outage_bound`
gives the same two ends beside `outage` (which counts from the refusal seen, the
lower end).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from rotator.probe import ProbeOutcome

if TYPE_CHECKING:
    from rotator.pipeline.state import RotationState
    from rotator.report import Report

EXACT_WITHIN = 0.05  # an outage known to within this is given as one figure only
LOOK_WAIT = 2.0  # at most this long after the window for the look at the old key (loopback: ~2 ms)
OLD_KEY_WORKS = (
    "the old key still worked when the new key arrived: the reset did not happen (yet), or another app"
    " was reset; no outage measured"
)


async def settle(state: RotationState) -> None:
    """Wait (briefly) for the look at the old key that started as the key arrived."""
    look = state.old_key_look
    if look is not None and not look.done():
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(look), LOOK_WAIT)


def measure(state: RotationState, report: Report) -> None:
    """Fill the report's outage, operator's share, reset, watch and refused keys."""
    report.key_received_at = state.key_received_wall
    report.refused_keys = list(state.refused_keys)
    watch = state.watch
    report.watch = watch.as_dict() if watch is not None else None
    reset: dict[str, Any] | None = None
    share: float | None = None
    if state.reset is not None and state.key_received is not None:
        reset = {**state.reset.as_dict(), "inferred": False}
        share = max(state.key_received - state.reset.perf, 0.0)
    elif state.old_key_look is not None and state.old_key_look.done() and not state.old_key_look.cancelled():
        look = state.old_key_look.result()
        if look.outcome is ProbeOutcome.REFUSED and state.key_received_wall is not None:
            # Refused once the key came: the reset was after the last look it passed, by the key's arrival.
            after = watch.last_ok_wall if watch is not None else None
            reset = {
                "at": state.key_received_wall,
                "after": after,
                "uncertainty": None if after is None else round(state.key_received_wall - after, 4),
                "status": look.status,
                "detail": look.detail,
                "inferred": True,
                "bound": True,  # `at` is the latest the reset can have been, not when it was
            }
        elif look.outcome is ProbeOutcome.ACCEPTED:
            report.warnings.append(OLD_KEY_WORKS)
    report.reset = reset
    if share is not None:
        report.operator_share = share
        if report.window is not None:
            report.outage = share + report.window
    if reset is not None and report.window is not None:
        report.outage_bound = _bound(reset, report.window, share)
    for r in report.refused_keys:
        if reset is not None:
            r["after_reset"] = round(r["at"] - reset["at"], 4)


def _bound(reset: dict[str, Any], window: float, share: float | None) -> dict[str, Any] | None:
    """The outage's two ends when the reset's time is a bound, None when it is known to within EXACT_WITHIN.

    `at_least`: from the latest moment the reset can have been (the refusal seen, or the key's
    arrival); `at_most`: from the last look the old key passed (None: it never passed one)."""
    unc = reset.get("uncertainty")
    if not reset["inferred"] and unc is not None and unc <= EXACT_WITHIN:
        return None
    low = (share or 0.0) + window
    return {
        "at_least": round(low, 4),
        "at_most": None if unc is None else round(low + unc, 4),
        "reason": "reset not seen before the key arrived" if reset["inferred"] else "reset seen between two looks",
    }
