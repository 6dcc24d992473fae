"""What the API said about a key: `works`, `refused` or `could not check`, the only three answers.

One vocabulary for `rotator status`, the service's slots and /metrics: a key is never
called broken when the API did not say so (no answer, a 5xx, no probe configured).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from rotator.probe import ProbeOutcome, ProbeResult

__all__ = ["KeyState", "verdict_of"]


class KeyState(StrEnum):
    WORKS = "works"
    REFUSED = "refused"
    UNCHECKED = "could not check"

    @property
    def label(self) -> str:
        """As a Prometheus label value (no spaces)."""
        return self.value.replace(" ", "_")

    @property
    def works(self) -> bool | None:
        """True / False / None (could not check), for JSON fields that predate the three words."""
        return {KeyState.WORKS: True, KeyState.REFUSED: False}.get(self)


def verdict_of(results: Iterable[ProbeResult]) -> KeyState:
    """Refused on any URL: refused; accepted on every one: works; else (no answer, 5xx, no probe): unchecked."""
    seen = list(results)
    if any(r.outcome is ProbeOutcome.REFUSED for r in seen):
        return KeyState.REFUSED
    if seen and all(r.outcome is ProbeOutcome.ACCEPTED for r in seen):
        return KeyState.WORKS
    return KeyState.UNCHECKED
