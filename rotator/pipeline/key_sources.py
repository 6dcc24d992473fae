"""Where keys come from (`KeySource`): a hidden prompt, stdin, the page / API (`Inbox`), the
clipboard.  Shared by the session and the flow's ask (`pipeline.ask`), so neither imports the other."""

from __future__ import annotations

import asyncio
from typing import Protocol

from rotator.secret import Secret


class KeySource(Protocol):
    """Somewhere a key can come from.  `read` waits for the next key: a raw paste (cleaned
    here), or a `Secret` a source already cleaned (`rotator.clipboard.ClipboardSource.next_key`);
    None: no more."""

    name: str

    async def read(self) -> str | bytes | Secret | None: ...


class Inbox:
    """The keys handed to a flow session (the page, the API), as a `KeySource`."""

    name = "page"

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | bytes | Secret] = asyncio.Queue()

    async def read(self) -> str | bytes | Secret:
        return await self.queue.get()
