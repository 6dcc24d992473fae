"""An in-memory backend and consumer, registered by type name exactly as an
installed plugin's entry points would be: real rotator plugins, just without a
network, for tests of single pipeline steps and of the armed session.

The backend has check-and-set on its version and idempotent writes (like the
third-party demo in tests/third_party_plugin); the consumer records every signal
and confirms with the fingerprint it was last told (or a stale one, on request).
`type = "memory-slots"` is a primary that can hold the standby of an alternating
plan: both values and the slot metadata in one record, each change one
check-and-set step under the rules every built-in follows (`rotator.backend_rules`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from rotator import registry
from rotator.backend_rules import Change, SlotState, StandbySlots, key_change
from rotator.journal import Journal
from rotator.plan import Plan, parse_plan
from rotator.plugin import (
    Backend,
    BackendSettings,
    Check,
    Confirmation,
    Consumer,
    ConsumerSettings,
    PluginError,
    RotationEvent,
    Stored,
    Written,
)
from rotator.secret import Secret

STORE: dict[str, tuple[int, str]] = {}  # slot -> (version, value)
WRITES: list[tuple[str, float]] = []  # (slot, perf_counter) of every write that changed a slot
SIGNALS: list[tuple[str, str, float]] = []  # (consumer, fingerprint, perf_counter)
FAILING: set[str] = set()  # slots whose writes fail (retryable)
SLOTS: dict[str, SlotState] = {}  # a memory-slots primary's slot -> both values, the metadata, the version


class MemorySettings(BackendSettings):
    slot: str = Field(min_length=1)
    broken: bool = False  # preflight fails


class MemoryBackend(Backend):
    Settings: ClassVar[type[BackendSettings]] = MemorySettings

    async def preflight(self) -> Check:
        if self.settings.broken:
            return Check(False, f"slot {self.settings.slot} is broken")
        return Check(True, f"slot {self.settings.slot}")

    async def read(self) -> Stored:
        version, value = STORE.get(self.settings.slot, (0, None))
        return Stored(Secret(value) if value is not None else None, version=str(version))

    async def write(self, secret: Secret, *, token: str, expected_version: str | None) -> Written:
        slot = self.settings.slot
        if slot in FAILING:
            raise PluginError(f"{slot}: unavailable", retryable=True)
        version, value = STORE.get(slot, (0, None))
        held = Secret(value) if value is not None else None
        if key_change(held, str(version), secret, expected_version=expected_version, where=slot) is None:
            return Written(version=str(version), detail="already current")
        await asyncio.sleep(0.01)
        STORE[slot] = (version + 1, secret.reveal())
        WRITES.append((slot, time.perf_counter()))
        return Written(version=str(version + 1), detail=f"v{version + 1}")


class MemorySlotsBackend(StandbySlots):
    """A primary holding the active key, the standby key and the slot metadata in one record
    (`SLOTS[slot]`), every change one check-and-set step on its version, read back as stored."""

    Settings: ClassVar[type[BackendSettings]] = MemorySettings

    def _held(self) -> SlotState:
        return SLOTS.get(self.settings.slot) or SlotState(None, None, None, "0")

    def _store(self, active: Secret | None, standby: Secret | None, meta_text: str | None) -> str:
        version = str(int(self._held().version or "0") + 1)
        SLOTS[self.settings.slot] = SlotState(active, standby, meta_text, version)
        WRITES.append((self.settings.slot, time.perf_counter()))
        return version

    async def preflight(self) -> Check:
        if self.settings.broken:
            return Check(False, f"slot {self.settings.slot} is broken")
        return Check(True, f"slot {self.settings.slot} (active, standby and metadata)")

    async def read(self) -> Stored:
        held = self._held()
        return Stored(held.active, version=held.version)

    async def write(self, secret: Secret, *, token: str, expected_version: str | None) -> Written:
        """The active value only (a single-app write on an alternating primary); the standby and
        the metadata are kept."""
        slot, held = self.settings.slot, self._held()
        if slot in FAILING:
            raise PluginError(f"{slot}: unavailable", retryable=True)
        if key_change(held.active, held.version, secret, expected_version=expected_version, where=slot) is None:
            return Written(version=held.version, detail="already current")
        await asyncio.sleep(0.01)
        version = self._store(secret, held.standby, held.meta_text)
        return Written(version=version, detail=f"v{version}")

    async def _slot_state(self) -> SlotState:
        return self._held()

    async def _change_slots(
        self, change: Callable[[SlotState], Change | None], *, token: str, expected_version: str | None, done: str
    ) -> Written:
        slot = self.settings.slot
        if slot in FAILING:
            raise PluginError(f"{slot}: unavailable", retryable=True)
        held = self._held()
        what = change(held)  # the rules: a retried token is a no-op, a stale version a Conflict
        if what is None:
            return Written(version=held.version, detail=f"{done} already")
        await asyncio.sleep(0.01)
        active = what.active if what.active is not None else held.active  # None: kept, as the built-ins do
        standby = what.standby if what.standby is not None else held.standby
        return Written(version=self._store(active, standby, what.meta_text), detail=done)

    def _slots_at(self) -> tuple[str, str, str]:
        return f"memory slot {self.settings.slot}", "its standby value", "its slot metadata"


class MemoryConsumerSettings(ConsumerSettings):
    stale: bool = False  # confirm with an old fingerprint


class MemoryConsumer(Consumer):
    Settings: ClassVar[type[ConsumerSettings]] = MemoryConsumerSettings

    @property
    def can_confirm(self) -> bool:
        return True

    async def preflight(self) -> Check:
        return Check(True, "in memory")

    async def signal(self, event: RotationEvent) -> str:
        SIGNALS.append((self.name, event.fingerprint, time.perf_counter()))
        return f"told {event.fingerprint}"

    async def confirm(self, fingerprint: str, deadline: float) -> Confirmation:
        told = [fp for name, fp, _ in SIGNALS if name == self.name]
        if self.settings.stale or not told:
            return Confirmation(False, "fp:stale", "still on the old key")
        return Confirmation(told[-1] == fingerprint, told[-1])


@contextmanager
def registered() -> Iterator[None]:
    """`type = "memory"` (backend) and `type = "memory"` (consumer) resolvable; a clean store."""
    registry.backend_points()["memory"] = EntryPoint("memory", f"{__name__}:MemoryBackend", registry.BACKEND_GROUP)
    registry.backend_points()["memory-slots"] = EntryPoint(
        "memory-slots", f"{__name__}:MemorySlotsBackend", registry.BACKEND_GROUP
    )
    registry.consumer_points()["memory"] = EntryPoint("memory", f"{__name__}:MemoryConsumer", registry.CONSUMER_GROUP)
    STORE.clear()
    WRITES.clear()
    SIGNALS.clear()
    FAILING.clear()
    SLOTS.clear()
    try:
        yield
    finally:
        registry.clear_cache()


def plan(
    *,
    mirrors: tuple[str, ...] = ("mirror",),
    consumers: dict[str, dict[str, Any]] | None = None,
    probe_url: str | None = None,
    primary: dict[str, Any] | None = None,
    name: str = "memory-plan",
) -> Plan:
    """A plan: primary slot `primary`, one backend per mirror slot, the given consumers."""
    data: dict[str, Any] = {
        "secret": {"name": name, "key_pattern": None},
        "rotation": {"deadline": 10},
        "backends": [
            {"name": "primary", "type": "memory", "primary": True, "slot": "primary", "retries": 1, **(primary or {})},
            *({"name": m, "type": "memory", "slot": m, "retries": 2} for m in mirrors),
        ],
        "consumers": [
            {"name": n, "type": "memory", "retries": 0, "confirm_timeout": 1, **c} for n, c in (consumers or {}).items()
        ],
    }
    if probe_url:
        data["probe"] = {"preset": "adjutor", "url": probe_url, "retries": 0, "backoff": 0.01}
    return parse_plan(data, Path(f"{name}.toml"))


def journal() -> Journal:
    return Journal()
