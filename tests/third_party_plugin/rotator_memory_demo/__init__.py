"""An in-memory rotator backend and notifier: the smallest complete third-party plugins."""

from __future__ import annotations

from typing import ClassVar

import httpx
from pydantic import Field

from rotator import Backend, BackendSettings, Check, Secret, Stored, Written
from rotator.backend_rules import key_change
from rotator.notify import Message, Notifier, NotifierSettings

STORE: dict[str, tuple[int, str]] = {}  # slot -> (version, value)
SENT: list[tuple[str, str]] = []  # (channel, title) of every notification


class MemorySettings(BackendSettings):
    slot: str = Field(min_length=1)


class MemoryBackend(Backend):
    Settings: ClassVar[type[BackendSettings]] = MemorySettings

    async def preflight(self) -> Check:
        return Check(ok=True, detail=f"slot {self.settings.slot}")

    async def read(self) -> Stored:
        version, value = STORE.get(self.settings.slot, (0, None))
        return Stored(Secret(value) if value is not None else None, version=str(version))

    async def write(self, secret: Secret, *, token: str, expected_version: str | None) -> Written:
        version, value = STORE.get(self.settings.slot, (0, None))
        held = Secret(value) if value is not None else None
        where = f"memory {self.name}: slot {self.settings.slot}"
        # rotator's rules: already current (a retry, a rerun) -> nothing; a stale version -> Conflict.
        if key_change(held, str(version), secret, expected_version=expected_version, where=where) is None:
            return Written(version=str(version), detail="already current")
        STORE[self.settings.slot] = (version + 1, secret.reveal())
        return Written(version=str(version + 1), detail=f"v{version + 1}")


class MemoryNotifierSettings(NotifierSettings):
    channel: str = Field(min_length=1)


class MemoryNotifier(Notifier):
    Settings: ClassVar[type[NotifierSettings]] = MemoryNotifierSettings

    async def send(self, message: Message, http: httpx.AsyncClient) -> str:
        SENT.append((self.settings.channel, message.title))
        return f"kept in channel {self.settings.channel}"
