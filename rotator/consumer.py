"""Helpers for a Python service that consumes a rotated secret.

Import this in a consumer to compute the fingerprint rotator reports, and to
verify that a reload webhook really comes from rotator::

    from rotator.consumer import verify_webhook, InvalidSignature, fingerprint

The signature is HMAC-SHA256 over ``f"{timestamp}.".encode() + body`` with the
shared webhook key, sent as ``X-Rotator-Signature: v1=<hex>`` beside
``X-Rotator-Timestamp: <unix seconds>``.  A timestamp tolerance stops replays.
Only the standard library is used, so the module is safe to vendor.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from rotator.secret import FINGERPRINT_PREFIX

SIGNATURE_HEADER = "X-Rotator-Signature"
TIMESTAMP_HEADER = "X-Rotator-Timestamp"
DEFAULT_TOLERANCE = 300


class InvalidSignature(Exception):
    """The webhook is not from rotator, was altered, or is a replay."""


def fingerprint(key: str) -> str:
    """The fingerprint rotator reports for `key` (first 16 hex of SHA-256)."""
    return hashlib.sha256((FINGERPRINT_PREFIX + key).encode()).hexdigest()[:16]


def sign(hmac_key: bytes, timestamp: int, body: bytes) -> str:
    """The value of the signature header for `body` sent at `timestamp`."""
    mac = hmac.new(hmac_key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def verify_webhook(
    hmac_key: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check a webhook's signature and freshness; return its timestamp.

    Raises InvalidSignature when the signature is missing or wrong (compared in
    constant time) or the timestamp is further than `tolerance` seconds from now.
    """
    ts_text = _header(headers, TIMESTAMP_HEADER)
    sig = _header(headers, SIGNATURE_HEADER)
    if not ts_text or not sig:
        raise InvalidSignature("missing signature or timestamp header")
    current = time.time() if now is None else now
    try:
        ts = int(ts_text)
        skew = abs(current - ts)
    except (ValueError, OverflowError):  # not a number, or one too large for a time
        raise InvalidSignature("timestamp is not a Unix time") from None
    if skew > tolerance:
        raise InvalidSignature("timestamp outside tolerance (replay or clock skew)")
    expected = sign(hmac_key, ts, body)
    if not hmac.compare_digest(expected.encode(), sig.strip().encode()):
        raise InvalidSignature("signature does not match")
    return ts
