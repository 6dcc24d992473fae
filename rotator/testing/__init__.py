"""Test doubles that speak real protocols, for rotator's tests, demo and benchmark.

Nothing here is used in a real rotation.

- `AdjutorStandIn` (`adjutor`): Adjutor's key auth on loopback; a reset revokes
  the old key at once.  ``python -m rotator.testing.adjutor`` runs it as a process.
- `VaultServer` (`vaultserver`; its token auth in `vault_auth`, KV engines in `vault_kv`,
  HTTP handler in `vault_http`): a small Vault-protocol server on loopback (no
  Vault binary is needed), to exercise rotator's Vault client with real hvac over
  real HTTP, not to replace Vault.  ``python -m rotator.testing.vaultserver``.
- `plans`: plans built as data and written as TOML (tests, demo).
- `moto_env`: the environment boto3 needs to talk to moto's server only.
- `_http`: the one threaded loopback HTTP server both doubles are built on (and
  the tests' own receivers), and `Served`, their start/stop/with life.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.testing.adjutor import AdjutorStandIn
    from rotator.testing.vaultserver import DROP, ROOT, RequestRecord, VaultServer, VaultToken

__all__ = ["DROP", "ROOT", "AdjutorStandIn", "RequestRecord", "VaultServer", "VaultToken"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so ``python -m rotator.testing.vaultserver`` runs cleanly.
    if name == "AdjutorStandIn":
        from rotator.testing import adjutor

        return adjutor.AdjutorStandIn
    if name in __all__:
        from rotator.testing import vaultserver

        return getattr(vaultserver, name)
    raise AttributeError(f"module 'rotator.testing' has no attribute {name!r}")
