"""What the page's key buttons say at each step, said by the service.

The page shows these words as given: what the paste button does with the key
(rotate everywhere, or store it as the standby only) and what Cancel does to
what has already happened (nothing written yet; the old key already dead; a
promote that stays).  Said here, beside the flows, so that the words follow
what the code does rather than the page's guess of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Buttons", "alternating", "single"]

REKEY_LATER = "“Re-key the standby” finishes it later; “Roll back the last promote” undoes the promote."
# After an incident's promote, rolling back would make the leaked key active again: not offered.
REKEY_LEAKED = "“Re-key the standby” finishes it later and kills the leaked key."


@dataclass(frozen=True)
class Buttons:
    """The paste button's label, Cancel's label, and one line on what Cancel leaves behind."""

    paste: str
    cancel: str
    cancel_effect: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def single(*, reset_seen: bool) -> Buttons:
    """A single-app rotation, armed: before the reset, and once the old key is seen refused."""
    paste = "Rotate: probe this key, then write it everywhere"
    if not reset_seen:
        return Buttons(
            paste,
            "Cancel (close this armed rotation; nothing is written)",
            "Cancel closes the armed rotation: nothing has been written and the current key stays everywhere. "
            "Do not reset the key in the dashboard after cancelling.",
        )
    return Buttons(
        paste,
        "Cancel (writes nothing: consumers keep failing on the old key)",
        "The old key is already reset, so every consumer fails until the new key is written. Cancel writes "
        "nothing and the outage goes on; to end it, paste the new key here (or arm again and paste it).",
    )


def alternating(*, flow: str, app: str, slot: str, promoted: bool, active_app: str) -> Buttons:
    """An alternating flow waiting for `app`'s new key (for `slot`).  `promoted`: the slots
    record a promote not followed by a re-key (this flow's, or an earlier one's), which
    Cancel keeps; `active_app` is the app active now."""
    incident = flow == "incident"
    if slot == "active":  # revoke-now, or the active app reset by mistake: the key in use is dead
        return Buttons(
            "Write as the active key everywhere",
            f"Cancel (writes nothing: if {app} is reset, consumers keep failing)",
            f"{app}'s key is the one every consumer uses: once it is reset they fail until its new key is "
            "written. Cancel writes nothing.",
        )
    leaked = ""
    if promoted:
        later = REKEY_LATER
        if incident:
            leaked, later = f" It is the LEAKED key: it stays valid until {app} is re-keyed.", REKEY_LEAKED
        return Buttons(
            "Store as standby",
            f"Cancel (keeps the promote; {app} not re-keyed)",
            f"Cancel closes this flow. The promote stays: {active_app} is active on every target. "
            f"{app} is not re-keyed, so its previous key still works as the standby.{leaked} {later}",
        )
    if incident:
        leaked = f" The LEAKED key of {active_app} stays valid: nothing was promoted."
    return Buttons(
        "Store as standby",
        f"Cancel (nothing written; {app} not re-keyed)",
        f"Cancel closes this flow: nothing has been written, {active_app} stays active and {app} keeps its "
        f"current key as the standby.{leaked}",
    )
