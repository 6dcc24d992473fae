"""The shapes of the Vault-protocol double's answers: Vault's reply envelope, its error
body, its timestamps.  Shared by the server (`vaultserver`), its token auth (`vault_auth`)
and its KV engines (`vault_kv`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

Reply = tuple[int, dict[str, Any] | None]
"""(HTTP status, JSON body or None)."""


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def errors(status: int, *messages: str) -> Reply:
    return status, {"errors": list(messages)}


def envelope(data: Any = None, **extra: Any) -> dict[str, Any]:
    """Vault's answer around `data` (a new request id each time)."""
    out: dict[str, Any] = {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": None,
        "auth": None,
    }
    out.update(extra)
    return out
