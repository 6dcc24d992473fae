"""The proxies running in this process (`rotator serve`), by plan: where the `proxy`
consumer hands a new key directly, without a socket.

Light on purpose (no aiohttp): the consumer imports it whether or not a proxy runs
here.  `rotator serve` registers each plan's engine when its proxy listens and
removes it when it stops; `rotator rotate` and `rotator proxy` register nothing, so
there the consumer uses the key channel.
"""

from __future__ import annotations

from typing import Protocol

from rotator.secret import Secret


class LocalProxy(Protocol):
    """What the consumer needs of a proxy's engine: take a key, tell its fingerprint."""

    @property
    def fingerprint(self) -> str | None: ...

    @property
    def held(self) -> int: ...

    def set_key(self, secret: Secret) -> str: ...


_RUNNING: dict[str, LocalProxy] = {}


def register(plan: str, engine: LocalProxy) -> None:
    _RUNNING[plan] = engine


def unregister(plan: str, engine: LocalProxy) -> None:
    if _RUNNING.get(plan) is engine:
        del _RUNNING[plan]


def running(plan: str | None) -> LocalProxy | None:
    """The plan's proxy in this process, or None."""
    return _RUNNING.get(plan) if plan is not None else None
