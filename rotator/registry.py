"""Plugin discovery through entry points.

Built-ins and third-party packages register the same way, under
``rotator.backends``, ``rotator.consumers`` and ``rotator.notifiers``; nothing
here knows their names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points

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


@cache
def backend_class(type_name: str) -> type[Backend]:
    ep = backend_points().get(type_name)
    if ep is None:
        raise UnknownPlugin(
            f"unknown backend type {type_name!r} (installed: {', '.join(sorted(backend_points())) or 'none'})"
        )
    cls = _load(ep, "backend", type_name)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise UnknownPlugin(f"backend {type_name!r} ({ep.value}) is not a rotator.plugin.Backend")
    return cls


@cache
def consumer_class(type_name: str) -> type[Consumer]:
    ep = consumer_points().get(type_name)
    if ep is None:
        raise UnknownPlugin(
            f"unknown consumer type {type_name!r} (installed: {', '.join(sorted(consumer_points())) or 'none'})"
        )
    cls = _load(ep, "consumer", type_name)
    if not (isinstance(cls, type) and issubclass(cls, Consumer)):
        raise UnknownPlugin(f"consumer {type_name!r} ({ep.value}) is not a rotator.plugin.Consumer")
    return cls


@cache
def notifier_class(type_name: str) -> type[Notifier]:
    ep = notifier_points().get(type_name)
    if ep is None:
        raise UnknownPlugin(
            f"unknown notifier type {type_name!r} (installed: {', '.join(sorted(notifier_points())) or 'none'})"
        )
    cls = _load(ep, "notifier", type_name)
    if not (isinstance(cls, type) and issubclass(cls, Notifier)):
        raise UnknownPlugin(f"notifier {type_name!r} ({ep.value}) is not a rotator.notify.Notifier")
    return cls


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
