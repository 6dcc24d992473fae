"""Plugin discovery through entry points.

Built-ins and third-party packages register the same way, under
``rotator.backends``, ``rotator.consumers`` and ``rotator.notifiers``; nothing
here knows their names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from rotator.notify.base import Notifier
from rotator.plugin import Backend, Consumer

BACKEND_GROUP = "rotator.backends"
CONSUMER_GROUP = "rotator.consumers"
NOTIFIER_GROUP = "rotator.notifiers"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    kind: str
    target: str  # module:attr
    distribution: str
    version: str


def _entry_points(group: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        found.setdefault(ep.name, ep)
    return found


@cache
def backend_points() -> dict[str, EntryPoint]:
    return _entry_points(BACKEND_GROUP)


@cache
def consumer_points() -> dict[str, EntryPoint]:
    return _entry_points(CONSUMER_GROUP)


@cache
def notifier_points() -> dict[str, EntryPoint]:
    return _entry_points(NOTIFIER_GROUP)


class UnknownPlugin(LookupError):
    pass


def _load(ep: EntryPoint, kind: str, type_name: str) -> object:
    try:
        return ep.load()
    except Exception as exc:  # noqa: BLE001 - a broken plugin is a plan problem, not a crash
        raise UnknownPlugin(
            f"{kind} {type_name!r} is installed ({ep.value}) but cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None


def _lookup(kind: str, points: dict[str, EntryPoint], base: type, base_name: str, type_name: str) -> Any:
    """The one lookup behind every plugin kind: the entry point, loaded, checked to subclass `base`."""
    ep = points.get(type_name)
    if ep is None:
        raise UnknownPlugin(f"unknown {kind} type {type_name!r} (installed: {', '.join(sorted(points)) or 'none'})")
    cls = _load(ep, kind, type_name)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise UnknownPlugin(f"{kind} {type_name!r} ({ep.value}) is not a {base_name}")
    return cls


@cache
def backend_class(type_name: str) -> type[Backend]:
    return _lookup("backend", backend_points(), Backend, "rotator.plugin.Backend", type_name)


@cache
def consumer_class(type_name: str) -> type[Consumer]:
    return _lookup("consumer", consumer_points(), Consumer, "rotator.plugin.Consumer", type_name)


@cache
def notifier_class(type_name: str) -> type[Notifier]:
    return _lookup("notifier", notifier_points(), Notifier, "rotator.notify.Notifier", type_name)


def installed() -> list[PluginInfo]:
    out: list[PluginInfo] = []
    for kind, points in (
        ("backend", backend_points()),
        ("consumer", consumer_points()),
        ("notifier", notifier_points()),
    ):
        for name, ep in sorted(points.items()):
            dist = ep.dist
            out.append(
                PluginInfo(
                    name=name,
                    kind=kind,
                    target=ep.value,
                    distribution=dist.name if dist else "?",
                    version=dist.version if dist else "?",
                )
            )
    return out


def clear_cache() -> None:
    """Forget what was discovered (tests that install a plugin at run time)."""
    for f in (backend_points, consumer_points, notifier_points, backend_class, consumer_class, notifier_class):
        f.cache_clear()
