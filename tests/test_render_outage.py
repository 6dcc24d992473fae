"""The outage line for every shape a report's reset can take (a crash in one ended a rotation as exit 1).

A reset the watch saw at its first look has no last good pass, so its `uncertainty` is None: the
outage is a bound with no upper end, and the line says so instead of failing on the missing figure.
"""

from __future__ import annotations

from typing import Any

import pytest

from rotator.render import outage_lines

WINDOW = 0.0169


def report(reset: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    return {"window_seconds": WINDOW, "reset": reset, **extra}


def test_a_reset_seen_at_the_watchs_first_look_is_a_bound_with_no_upper_end() -> None:
    d = report(
        {"at": 1000.0, "uncertainty": None, "inferred": False},
        outage_bound={"at_least": 2.0169, "at_most": None},
        operator_seconds=2.0,
        outage_seconds=2.0169,
    )
    (line,) = outage_lines(d)
    assert line.startswith("outage: at least 2016.9 ms (a bound: the watch saw the old key refused at its first look")
    assert "at most" not in line and "window 16.9 ms" in line


@pytest.mark.parametrize("share", [None, 0.5])
def test_an_outage_without_an_operators_share_still_has_its_line(share: float | None) -> None:
    d = report({"at": 1000.0, "uncertainty": 0.01, "inferred": False}, outage_seconds=0.52, operator_seconds=share)
    (line,) = outage_lines(d)
    assert line.startswith("outage: 520.0 ms (reset seen by the watch, to within 10 ms")
    assert ("operator's share 500.0 ms" in line) is (share is not None)
    assert line.endswith("window 16.9 ms")


def test_a_bound_from_two_looks_gives_both_ends() -> None:
    d = report(
        {"at": 1000.0, "uncertainty": 0.3, "inferred": False},
        outage_bound={"at_least": 0.1, "at_most": 0.4},
        operator_seconds=0.0831,
    )
    (line,) = outage_lines(d)
    assert "at least 100.0 ms, at most 400.0 ms" in line and "refused 300 ms after its last pass" in line
