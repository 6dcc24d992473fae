"""Percentiles and summaries of the measured windows, and the report's milliseconds."""

from __future__ import annotations

import os
from typing import Any


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": pct(values, 0.5),
        "p10": pct(values, 0.1),
        "p90": pct(values, 0.9),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def cpu_medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median CPU seconds per process over `runs`, and `all_over_cores`: their sum spread
    over every core, the least time this machine needs for that work whatever the order."""
    keys = runs[0]["cpu"].keys()
    out = {k: pct([r["cpu"][k] for r in runs], 0.5) for k in keys}
    out["all_over_cores"] = (out["rotator"] + out["backends"] + out["consumers"]) / (os.cpu_count() or 1)
    return out
