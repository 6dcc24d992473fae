"""The secret value and its fingerprint.

A `Secret` can travel through logs, exceptions and reprs without showing its
value: every way Python has of turning an object into text or bytes is closed
off, and the only way in is the explicit `reveal()`.
"""

from __future__ import annotations

import hashlib
import hmac
import weakref
from collections import deque
from typing import Any, NoReturn

FINGERPRINT_PREFIX = "rotator-fp-v1:"

# Every Secret alive in this process, so the log redaction step can find them
# without being handed each one.  Weak: a Secret that is dropped is forgotten.
_LIVE: weakref.WeakSet[Secret] = weakref.WeakSet()
# Secrets made since scrub last looked (weak: the value is not kept alive by this list);
# rotator.secret.redaction empties it once its matchers cover them.
FRESH: deque[weakref.ref[Secret]] = deque()


def fingerprint(value: str) -> str:
    """First 16 hex chars of SHA-256 over ``rotator-fp-v1:`` + key.

    Unkeyed on purpose: a consumer can compute the same value in one line
    (``sha256(b"rotator-fp-v1:" + key).hexdigest()[:16]``) and report it back.
    64 bits of a hash of a high-entropy API key reveal nothing useful.
    """
    return hashlib.sha256((FINGERPRINT_PREFIX + value).encode()).hexdigest()[:16]


class Secret:
    """A secret string that never shows itself."""

    __slots__ = ("__weakref__", "_fingerprint", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret takes a str")
        self._value = value
        self._fingerprint = fingerprint(value)
        _LIVE.add(self)
        FRESH.append(weakref.ref(self))

    def reveal(self) -> str:
        """The value itself: call only where it goes to its destination."""
        return self._value

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def __repr__(self) -> str:
        return f"Secret(fp={self._fingerprint})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._fingerprint)

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __getstate__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


def live_values() -> list[str]:
    """The values of every Secret alive now (for the redaction step)."""
    return [s.reveal() for s in list(_LIVE)]
