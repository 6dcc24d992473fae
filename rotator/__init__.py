"""rotator: make the window between an API key reset and the last consumer on the
new key as short as it can be.

The public surface for plugin authors and consumers is listed here, with the
write rules a backend follows in `rotator.backend_rules`; everything else may
change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.plugin import (
        Backend,
        BackendSettings,
        Check,
        Confirmation,
        Conflict,
        Consumer,
        ConsumerSettings,
        PluginContext,
        PluginError,
        RotationEvent,
        SecretRef,
        Slot,
        Slots,
        Stored,
        Written,
    )
    from rotator.secret import Secret, fingerprint

# Imported on first use (PEP 562), so ``import rotator.consumer`` in a consumer service
# loads no pydantic or httpx: that module is standard-library only, and this file is run
# before it.
_LAZY = {
    **dict.fromkeys(
        [
            "Backend",
            "BackendSettings",
            "Check",
            "Confirmation",
            "Conflict",
            "Consumer",
            "ConsumerSettings",
            "PluginContext",
            "PluginError",
            "RotationEvent",
            "SecretRef",
            "Slot",
            "Slots",
            "Stored",
            "Written",
        ],
        "rotator.plugin",
    ),
    "Secret": "rotator.secret",
    "fingerprint": "rotator.secret",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rotator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


from rotator._version import __version__  # noqa: E402 - after the lazy table, as before

__all__ = [
    "Backend",
    "BackendSettings",
    "Check",
    "Confirmation",
    "Conflict",
    "Consumer",
    "ConsumerSettings",
    "PluginContext",
    "PluginError",
    "RotationEvent",
    "Secret",
    "SecretRef",
    "Slot",
    "Slots",
    "Stored",
    "Written",
    "__version__",
    "fingerprint",
]
