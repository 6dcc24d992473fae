"""Test doubles that speak real protocols, for rotator's tests, demo and benchmark.

Nothing here is used in a real rotation.  `VaultServer` is a small
Vault-protocol server on loopback (no Vault binary is needed); it exists to
exercise rotator's Vault client code with real hvac over real HTTP, not to
replace Vault.
"""

from rotator.testing.vaultserver import DROP, ROOT, RequestRecord, VaultServer, VaultToken

__all__ = ["DROP", "ROOT", "RequestRecord", "VaultServer", "VaultToken"]
