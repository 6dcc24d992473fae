"""rotator: make the window between an API key reset and the last consumer on the
new key as short as it can be.

The public surface for plugin authors and consumers is listed here; everything
else may change.
"""

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

__version__ = "0.1.0"

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
