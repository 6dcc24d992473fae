"""The secret value, its fingerprint, and paste hygiene.

A `Secret` can travel through logs, exceptions and reprs without showing its
value: every way Python has of turning an object into text or bytes is closed
off, and the only way in is the explicit `reveal()`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import weakref
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import quote, quote_plus

FINGERPRINT_PREFIX = "rotator-fp-v1:"
ADJUTOR_KEY_PATTERN = r"^sk_(live|test)_[A-Za-z0-9]+$"
MAX_KEY_LENGTH = 4096

# Every Secret alive in this process, so the log redaction step can find them
# without being handed each one.  Weak: a Secret that is dropped is forgotten.
_LIVE: weakref.WeakSet[Secret] = weakref.WeakSet()


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
        global _created
        _created += 1
        _LIVE.add(self)

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


REDACTED = "[REDACTED]"


_forms_cache: tuple[tuple[int, int], tuple[str, ...]] = ((-1, -1), ())
_created = 0  # Secrets made so far: with len(_LIVE), tells when the live set changed


def _live_forms() -> tuple[str, ...]:
    """Every live secret value as is and URL-encoded, longest first.

    Recomputed only when the set of live values changes: scrub runs on every
    progress line of a rotation, and quoting 200 values each time cost ~0.2 ms
    a line (150 ms of event-loop time over a 200-target fan-out)."""
    global _forms_cache
    key = (_created, len(_LIVE))
    if key != _forms_cache[0]:
        values = {v for v in live_values() if len(v) >= 4}
        forms = {f for v in values for f in (v, quote(v, safe=""), quote_plus(v))}
        _forms_cache = (key, tuple(sorted(forms, key=len, reverse=True)))
    return _forms_cache[1]


def scrub(text: str) -> str:
    """`text` with every live secret's value, as is or URL-encoded, replaced by ``[REDACTED]``.

    For text that comes from a plugin or a server (an error message, a detail)
    on its way to a report, the journal or a log: a plugin may echo its input.
    """
    for form in _live_forms():
        if form in text:
            text = text.replace(form, REDACTED)
    return text


class KeyRejected(ValueError):
    """A pasted value that cannot be a key.  The message never holds the value."""


@dataclass
class CleanKey:
    secret: Secret
    warnings: list[str] = field(default_factory=list)


_QUOTES = ('"', "'", "`")
_BEARER = re.compile(r"^bearer\s+", re.IGNORECASE)


def clean_paste(raw: str | bytes, key_pattern: str | None = ADJUTOR_KEY_PATTERN) -> CleanKey:
    """Undo what a paste adds, refuse what cannot be a key, warn on the odd.

    Strips surrounding whitespace and newlines, one pair of surrounding quotes
    and a leading ``Bearer ``.  Refuses empty values, inner whitespace, control
    and non-ASCII characters, and anything absurdly long.  A value that does not match
    `key_pattern` is accepted with a warning: the probe is the real judge.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyRejected("the key is not valid UTF-8 text") from None
    if len(raw) > MAX_KEY_LENGTH * 4:
        raise KeyRejected(f"the pasted text is {len(raw)} characters long; a key is at most {MAX_KEY_LENGTH}")
    value = raw.strip()
    for _ in range(2):  # `"Bearer sk_..."` and `Bearer "sk_..."` both occur
        if len(value) >= 2 and value[0] == value[-1] and value[0] in _QUOTES:
            value = value[1:-1].strip()
        value = _BEARER.sub("", value, count=1).strip()
    if not value or value.lower() == "bearer":
        raise KeyRejected("the key is empty")
    if len(value) > MAX_KEY_LENGTH:
        raise KeyRejected(f"the key is {len(value)} characters long; a key is at most {MAX_KEY_LENGTH}")
    for ch in value:
        if ch.isspace():
            raise KeyRejected("the key has whitespace inside it (a line break or space from the paste?)")
        if ord(ch) < 32 or ord(ch) == 127 or 0x80 <= ord(ch) < 0xA0:
            raise KeyRejected("the key has control characters in it")
        if not ch.isprintable():
            raise KeyRejected("the key has non-printable characters in it")
    if not value.isascii():
        # An API key travels in an HTTP header, which carries ASCII only (and “curly quotes”
        # from a document are a paste accident, not part of a key).
        raise KeyRejected("the key has non-ASCII characters in it (curly quotes or accents from a paste?)")
    warnings: list[str] = []
    if key_pattern and not re.fullmatch(key_pattern, value):
        warnings.append(f"the key does not look like an Adjutor key (pattern {key_pattern}); the probe will decide")
    return CleanKey(Secret(value), warnings)
