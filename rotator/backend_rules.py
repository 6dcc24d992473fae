"""The write rules every backend shares, public for third-party plugins.

A backend's `write` is: read what the store holds now, ask `key_change` what to
store, and store it in one put (check-and-set where the store has one).  The
rules of the key write live here once:

* already current → nothing written: a retried write whose answer was lost, or a
  rerun, makes no second version;
* a stale `expected_version` (what arm read) → `Conflict`, nothing written, in one
  wording (`stale_key`);
* a store that holds nothing (version None) is at version ``"0"``, what arm
  expects when it found nothing.

A primary of an alternating plan stores three things side by side: the active
value (what consumers read), the standby value, and the slot metadata (JSON:
app, fingerprint and time of each slot, and the token of the write that set
them; `rotator.plugin.slots_metadata`).  It reads them into a `SlotState`, asks
`standby_change`, `swap_change` or `record_change` what to write, and writes the
three in one check-and-set write (`StandbySlots` does all but that write).  The
slot rules:

* a retried call with the same token changes nothing (a write-standby whose
  value is already the standby; a swap whose token the metadata already holds);
* a stale `expected_version` is a `Conflict`;
* the standby never equals the active key (both would be one app's key).

`SlotFields` is the settings mixin for where the standby and the metadata live.
The built-in backends (``rotator_plugins``) use exactly these.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import BaseModel, model_validator

from rotator.plugin import (
    Backend,
    Check,
    Conflict,
    PluginError,
    Slot,
    Slots,
    Written,
    parse_slots_metadata,
    slot_of,
    slots_metadata,
)
from rotator.secret import Secret

__all__ = [
    "Change",
    "SlotFields",
    "SlotState",
    "StandbySlots",
    "key_change",
    "record_change",
    "stale_key",
    "standby_change",
    "swap_change",
]


def stale_key(where: str, version: str | None, expected_version: str) -> Conflict:
    """The `Conflict` of a key write whose store changed since arm: the one wording, and the one fix."""
    now, then = (v if v not in (None, "0") else "none" for v in (version, expected_version))
    return Conflict(f"{where} changed since arm (version {now}, expected {then}); rerun, or --force")


def key_change(
    held: Secret | None, version: str | None, secret: Secret, *, expected_version: str | None, where: str
) -> Secret | None:
    """What `Backend.write` stores over what it just read: `secret`, or None when nothing.

    `held` and `version` are the store's key and version as read just before the
    put (nothing stored: None and None, or the store's own word for it).  None
    when `held` already is `secret`, whatever the version; `Conflict` when the
    version is not `expected_version` (None: no check, as under ``--force``);
    else `secret`, to put on `version` as the check-and-set.  After a put refused
    for its check-and-set, ask again on a fresh read: None then means this very
    write landed and its answer was lost.  `where` starts the conflict's line
    (``"vault prod: secret/apps/billing"``).
    """
    if held is not None and held == secret:
        return None
    if expected_version is not None and (version or "0") != expected_version:
        raise stale_key(where, version, expected_version)
    return secret


class SlotFields(BaseModel):
    """Settings mixin of a backend that can hold a standby slot: where the standby key
    and the slot metadata live beside the key.

    A settings class declares its own two optional settings (their names are its
    plan's words) and names the three in `slot_settings`; the defaults (the key's
    place plus `slot_suffixes`) and the check that the three differ live here.
    """

    slot_settings: ClassVar[tuple[str, str, str]]  # (the key's place, the standby's, the metadata's)
    slot_suffixes: ClassVar[tuple[str, str]] = ("_standby", "_slots")

    def _slot_place(self, i: int) -> str:
        return (
            getattr(self, self.slot_settings[i]) or f"{getattr(self, self.slot_settings[0])}{self.slot_suffixes[i - 1]}"
        )

    @property
    def standby(self) -> str:
        """Where the standby key lives."""
        return self._slot_place(1)

    @property
    def slots(self) -> str:
        """Where the slot metadata lives."""
        return self._slot_place(2)

    @model_validator(mode="after")
    def _three_places(self) -> Self:
        key = getattr(self, self.slot_settings[0])
        if key and len({key, self.standby, self.slots}) != 3:
            a, b, c = self.slot_settings
            raise ValueError(f"{a}, {b} and {c} must be three different names")
        return self


def _now_iso() -> str:
    """Now, as slot metadata records it (ISO 8601, UTC, seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class SlotState:
    """What a backend read: both values, the stored metadata, and the version for check-and-set."""

    active: Secret | None
    standby: Secret | None
    meta_text: str | None
    version: str | None

    @property
    def meta(self) -> dict[str, Any]:
        return parse_slots_metadata(self.meta_text)

    @property
    def leaked(self) -> dict[str, Any] | None:
        leaked = self.meta.get("leaked")
        return leaked if isinstance(leaked, dict) and isinstance(leaked.get("fp"), str) else None

    def slots(self) -> Slots:
        meta = self.meta
        return Slots(
            active=slot_of(self.active, meta.get("active")),
            standby=slot_of(self.standby, meta.get("standby")),
            version=self.version,
            standby_secret=self.standby,
            token=meta.get("token") if isinstance(meta.get("token"), str) else None,
            record="ok" if meta else ("unreadable" if self.meta_text else "missing"),
            leaked=self.leaked,
        )


@dataclass
class Change:
    """What to store: the new active and standby values and the metadata text."""

    active: Secret | None
    standby: Secret | None
    meta_text: str


def _check_version(state: SlotState, expected_version: str | None, where: str) -> None:
    if expected_version is not None and state.version != expected_version:
        raise Conflict(
            f"{where} changed since the slots were read (version {state.version}, expected {expected_version}); "
            "nothing written"
        )


def standby_change(
    state: SlotState,
    secret: Secret,
    *,
    app: str,
    token: str,
    expected_version: str | None,
    active_app: str | None,
    where: str,
) -> Change | None:
    """What `write_standby` stores; None when the standby already is `secret` as `app`'s key."""
    current = state.slots()
    if (
        state.standby == secret
        and current.standby is not None
        and current.standby.app == app
        and (active_app is None or (current.active is not None and current.active.app == active_app))
    ):
        return None
    _check_version(state, expected_version, where)
    if state.active is not None and state.active == secret:
        raise PluginError(
            f"{where}: this key is the active key; the standby must be the other app's key", retryable=False
        )
    active = current.active
    if active is not None and active_app is not None and active.app != active_app:
        active = Slot(active_app, active.fingerprint, active.set_at)
    # The leaked app re-keyed: its leaked key is revoked (proven before this write), the incident is over.
    leaked = state.leaked
    if leaked is not None and str(leaked.get("app", "")).casefold() == app.casefold():
        leaked = None
    meta = slots_metadata(active, Slot(app, secret.fingerprint, _now_iso()), token, leaked=leaked)
    return Change(state.active, secret, meta)


def swap_change(state: SlotState, *, token: str, expected_version: str | None, where: str) -> Change | None:
    """What `swap_slots` stores; None when this token's swap is what is stored already."""
    if state.meta.get("token") == token:
        return None
    _check_version(state, expected_version, where)
    if state.standby is None or state.active is None:
        empty = "standby" if state.standby is None else "active"
        raise PluginError(f"{where}: the {empty} slot is empty; nothing to swap", retryable=False)
    current = state.slots()
    return Change(
        state.standby, state.active, slots_metadata(current.standby, current.active, token, leaked=state.leaked)
    )


def record_change(
    state: SlotState,
    *,
    active_app: str,
    standby_app: str | None,
    fingerprints: tuple[str | None, str | None],
    leaked: dict[str, Any] | None,
    token: str,
    expected_version: str | None,
    where: str,
) -> Change | None:
    """What `write_slot_record` stores: the metadata only, for the values the caller checked."""
    if state.meta.get("token") == token:
        return None
    _check_version(state, expected_version, where)
    held = (
        state.active.fingerprint if state.active else None,
        state.standby.fingerprint if state.standby else None,
    )
    if held != fingerprints:
        raise Conflict(
            f"{where}: the slots hold {held[0] or 'nothing'} / {held[1] or 'nothing'}, not the keys checked "
            f"({fingerprints[0] or 'nothing'} / {fingerprints[1] or 'nothing'}); nothing written; run it again"
        )
    current = state.slots()
    active = Slot(active_app, held[0] or "", current.active.set_at if current.active else None) if held[0] else None
    standby = None
    if held[1] and standby_app is not None:
        standby = Slot(standby_app, held[1], current.standby.set_at if current.standby else None)
    return Change(None, None, slots_metadata(active, standby, token, leaked=leaked))


class StandbySlots(Backend):
    """The slot methods of `Backend` for a store that keeps the three side by side.

    A backend supplies `_slot_state` (read the three now), `_change_slots` (one
    check-and-set write of what `change` returns, which it calls on the state it is
    about to replace) and `_slots_at` (where they live, for humans); the rules
    above and the arm check are written once here.
    """

    can_hold_standby: ClassVar[bool] = True

    @abstractmethod
    async def _slot_state(self) -> SlotState:
        """Both values and the metadata as stored now."""

    @abstractmethod
    async def _change_slots(
        self, change: Callable[[SlotState], Change | None], *, token: str, expected_version: str | None, done: str
    ) -> Written:
        """Write what `change(current state)` returns in one check-and-set write; nothing when it returns None."""

    @abstractmethod
    def _slots_at(self) -> tuple[str, str, str]:
        """(the store, the standby's place, the metadata's place), for messages."""

    async def read_slots(self) -> Slots:
        return (await self._slot_state()).slots()

    async def preflight_standby(self) -> Check:
        where, standby_at, meta_at = self._slots_at()
        problem = self.standby_problem(self.settings)
        if problem:
            return Check(ok=False, detail=f"{where}: {problem}")
        check = await self.preflight()  # reachable, allowed to read and write the secret
        if check.ok is False:
            return check
        try:
            state = await self._slot_state()
        except PluginError as exc:
            return Check(ok=False, detail=str(exc))
        warnings = list(check.warnings)
        if state.meta_text and not state.meta:
            warnings.append(f"{where}: {meta_at} is not rotator's slot metadata; the next slot write replaces it")
        held = f"holds {state.standby.fingerprint}" if state.standby else "empty"
        return Check(
            ok=check.ok,
            detail=f"{where}: standby in {standby_at} ({held}), slot metadata in {meta_at}",
            warnings=warnings,
        )

    async def write_standby(
        self, secret: Secret, *, app: str, token: str, expected_version: str | None, active_app: str | None = None
    ) -> Written:
        where = self._slots_at()[0]

        def change(state: SlotState) -> Change | None:
            return standby_change(
                state,
                secret,
                app=app,
                token=token,
                expected_version=expected_version,
                active_app=active_app,
                where=where,
            )

        return await self._change_slots(
            change, token=token, expected_version=expected_version, done=f"standby ({app}) set"
        )

    async def swap_slots(self, *, token: str, expected_version: str | None) -> Written:
        where = self._slots_at()[0]

        def change(state: SlotState) -> Change | None:
            return swap_change(state, token=token, expected_version=expected_version, where=where)

        return await self._change_slots(
            change, token=token, expected_version=expected_version, done="active and standby swapped"
        )

    async def write_slot_record(
        self,
        *,
        active_app: str,
        standby_app: str | None,
        fingerprints: tuple[str | None, str | None],
        leaked: dict[str, Any] | None,
        token: str,
        expected_version: str | None,
    ) -> Written:
        where = self._slots_at()[0]

        def change(state: SlotState) -> Change | None:
            return record_change(
                state,
                active_app=active_app,
                standby_app=standby_app,
                fingerprints=fingerprints,
                leaked=leaked,
                token=token,
                expected_version=expected_version,
                where=where,
            )

        return await self._change_slots(change, token=token, expected_version=expected_version, done="slot record set")
