"""The two slots of an alternating plan as a primary backend stores them: which app's key
each holds, and the metadata written beside the values (fingerprints, never a key).

Part of the plugin interface (re-exported by `rotator.plugin`): a backend that can hold a
standby reads and writes these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rotator.secret import Secret


@dataclass(frozen=True)
class Slot:
    """What one slot of an alternating plan holds: which app's key, its fingerprint,
    and when rotator stored it (ISO 8601, UTC).  `app` is None when the stored
    metadata does not describe this key (someone changed the value outside rotator)."""

    app: str | None
    fingerprint: str
    set_at: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"app": self.app, "fp": self.fingerprint, "set_at": self.set_at}


@dataclass
class Slots:
    """The two slots of an alternating plan, as the primary stores them.

    ``active`` is the key every backend and consumer uses (what `Backend.read`
    returns); ``standby`` is the other app's key, kept only on the primary and
    never read by consumers.  `standby_secret` is there for the probe at arm and
    for a promote; `version` is what `write_standby` / `swap_slots` take as
    `expected_version`.  Either slot is None when empty.
    """

    active: Slot | None
    standby: Slot | None
    version: str | None = None
    standby_secret: Secret | None = field(default=None, repr=False)
    token: str | None = None  # the token of the slot write that set them (says which step last changed them)
    # The metadata as read: "ok", "missing" (no metadata stored) or "unreadable" (not rotator's JSON).
    record: str = "ok"
    # An incident's leaked key, recorded before anything moved: {"app", "fp", "incident", "at"}; None when none.
    leaked: dict[str, Any] | None = None


SLOTS_FORMAT = 1


def slots_metadata(
    active: Slot | None, standby: Slot | None, token: str, *, leaked: dict[str, Any] | None = None
) -> str:
    """The slot metadata a backend stores beside the two values: app names, fingerprints,
    times and the token of the write that set them, and an open incident's leaked key
    (app and fingerprint).  Never a key: a fingerprint is all a new machine with an empty
    journal needs to tell which app a value belongs to."""
    data: dict[str, Any] = {
        "format": SLOTS_FORMAT,
        "active": active.as_dict() if active else None,
        "standby": standby.as_dict() if standby else None,
        "token": token,
    }
    if leaked:
        data["leaked"] = leaked
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def parse_slots_metadata(text: str | None) -> dict[str, Any]:
    """Stored metadata as a dict (``{}`` when absent or unreadable: the slots are then unknown)."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) and data.get("format") == SLOTS_FORMAT else {}


def slot_of(secret: Secret | None, meta: Any) -> Slot | None:
    """The Slot for a stored value, with the metadata's app and time only if its
    fingerprint is this value's (metadata left behind by an edit describes nothing)."""
    if secret is None:
        return None
    if isinstance(meta, dict) and meta.get("fp") == secret.fingerprint:
        app, set_at = meta.get("app"), meta.get("set_at")
        return Slot(
            app if isinstance(app, str) else None, secret.fingerprint, set_at if isinstance(set_at, str) else None
        )
    return Slot(None, secret.fingerprint)
