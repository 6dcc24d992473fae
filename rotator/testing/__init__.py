"""Test doubles that speak real protocols, for rotator's tests, demo and benchmark.

Nothing here is used in a real rotation.  `VaultServer` is a small
Vault-protocol server on loopback (no Vault binary is needed); it exists to
exercise rotator's Vault client code with real hvac over real HTTP, not to
replace Vault.  Run it on its own with ``python -m rotator.testing.vaultserver``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.testing.vaultserver import DROP, ROOT, RequestRecord, VaultServer, VaultToken

__all__ = ["DROP", "ROOT", "RequestRecord", "VaultServer", "VaultToken"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so ``python -m rotator.testing.vaultserver`` runs cleanly.
    if name in __all__:
        from rotator.testing import vaultserver

        return getattr(vaultserver, name)
    raise AttributeError(f"module 'rotator.testing' has no attribute {name!r}")
