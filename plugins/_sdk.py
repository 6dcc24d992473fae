"""The shape shared by backends over a blocking vendor SDK (hvac, boto3).

Each such backend makes its client at arm time, runs every SDK call in the
shared thread pool (`PluginContext.run_blocking`: a hundred targets write at
once without stalling the event loop), and turns every SDK or transport
exception into one secret-free `PluginError` line of its own wording.  What the
vendor said is shown only through `vendor_text` (one line, every live secret
scrubbed, short): an SDK's exception text can quote a request body.
"""

from __future__ import annotations

import functools
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from rotator.plugin import Backend, Check, PluginContext, PluginError
from rotator.secret import scrub

T = TypeVar("T")


class NotFound(PluginError):
    """The thing asked for does not exist (HTTP 404, ResourceNotFoundException)."""


class Denied(PluginError):
    """The credentials may not do this (HTTP 403); a fresh login may help."""


def vendor_text(text: str, limit: int = 200) -> str:
    """A vendor's own error text, fit for a report: one line, scrubbed, at most `limit` characters."""
    return " ".join(scrub(text).split())[:limit]


class SdkBackend(Backend):
    """A backend whose client is a blocking SDK.

    Subclasses set `label` (the word errors start with), and write `sdk_errors`
    (what the SDK raises), `_translate` and `_preflight`.  The SDK itself is
    imported in `open`, not at module top: `rotator check` loads the plugin for its
    Settings and must not pay for boto3 or hvac.
    """

    label: ClassVar[str] = "sdk"

    def __init__(self, settings: Any, ctx: PluginContext) -> None:
        super().__init__(settings, ctx)
        self._client: Any = None

    def _fail(self, what: str, *, retryable: bool = False, kind: type[PluginError] = PluginError) -> PluginError:
        return kind(f"{self.label} {self.name}: {what}", retryable=retryable)

    @property
    def client(self) -> Any:
        if self._client is None:
            raise self._fail("not open")
        return self._client

    def sdk_errors(self) -> tuple[type[BaseException], ...]:
        """The exception types the SDK raises (called only once one is raised, so after `open`)."""
        return ()

    @abstractmethod
    def _translate(self, exc: BaseException, doing: str) -> PluginError:
        """One secret-free line for an SDK or transport exception raised while `doing`."""

    async def _run(self, doing: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in the pool; an SDK error becomes `_translate`'s PluginError."""
        try:
            return await self.ctx.run_blocking(functools.partial(fn, *args, **kwargs))
        except self.sdk_errors() as exc:
            raise self._translate(exc, doing) from None

    async def preflight(self) -> Check:
        try:
            return await self._preflight()
        except PluginError as exc:
            return Check(ok=False, detail=str(exc))

    @abstractmethod
    async def _preflight(self) -> Check:
        """The preflight itself; a PluginError it raises is a failed check."""
