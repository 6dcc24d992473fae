"""Paste hygiene: undo what a paste adds to a key, refuse what cannot be one, and the
operator's key pattern, compiled so that no pattern can hang the window."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import re2

from rotator.secret.value import Secret

ADJUTOR_KEY_PATTERN = r"^sk_(live|test)_[A-Za-z0-9]+$"
MAX_KEY_LENGTH = 4096


def _pattern_options() -> Any:
    options = re2.Options()
    options.log_errors = False
    return options


_PATTERN_OPTIONS = _pattern_options()
_HUGE_COUNT = re.compile(r"(?<!\\)\{\s*\d*,?\s*\d{5}")


@functools.lru_cache(maxsize=64)
def key_regex(pattern: str) -> Any:
    """`pattern` (a plan's `key_pattern`) compiled by RE2; ValueError says what RE2 refuses.

    Matched with RE2, not Python's `re`, because the pattern is the operator's and the
    paste it judges arrives inside the window: `re` backtracks, and a nested quantifier
    such as ``^sk_live_(a+)+$`` against ``sk_live_`` + 30 ``a`` + ``!`` ran > 45 s there
    (2**n steps).  RE2 (Google's own Python binding, ``google-re2``, prebuilt wheels) runs
    every pattern it accepts in time linear in the text, so no pattern can block the
    window; a static check for "dangerous" shapes would miss some (``(a|aa)+``, ``(a|a)*``).
    What RE2 refuses -- lookarounds, backreferences, repetitions over 1,000 -- is refused
    by `rotator check`, and so is a count of 5 digits or more, which RE2 would not refuse
    but read wrongly (``a{4294967296}`` compiles and matches nothing)."""
    if _HUGE_COUNT.search(pattern):
        raise ValueError("not a regular expression RE2 runs (a repetition count over 1000)")
    try:
        return re2.compile(pattern, _PATTERN_OPTIONS)
    except re2.error as exc:
        why = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(
            f"not a regular expression RE2 runs ({why}); lookarounds and backreferences are not supported"
        ) from None


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
    value = _unwrap(raw)
    if not value or value.lower() == "bearer":
        raise KeyRejected("the key is empty")
    if len(value) > MAX_KEY_LENGTH:
        raise KeyRejected(f"the key is {len(value)} characters long; a key is at most {MAX_KEY_LENGTH}")
    _refuse_characters(value)
    return CleanKey(Secret(value), _pattern_warnings(value, key_pattern))


def _unwrap(raw: str) -> str:
    """`raw` without surrounding whitespace, quotes and a leading ``Bearer``."""
    value = raw.strip()
    for _ in range(2):  # `"Bearer sk_..."` and `Bearer "sk_..."` both occur
        if len(value) >= 2 and value[0] == value[-1] and value[0] in _QUOTES:
            value = value[1:-1].strip()
        value = _BEARER.sub("", value, count=1).strip()
    return value


def _refuse_characters(value: str) -> None:
    """KeyRejected for whitespace, control, non-printable or non-ASCII characters."""
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


def _pattern_warnings(value: str, key_pattern: str | None) -> list[str]:
    """A warning if `value` does not match `key_pattern` (or the pattern is unusable); the probe decides."""
    if not key_pattern:
        return []
    try:
        looks_right = key_regex(key_pattern).fullmatch(value) is not None
    except ValueError as exc:  # a Plan built without load_plan's checks
        return [f"key_pattern is not usable: {exc}; the probe will decide"]
    if looks_right:
        return []
    return [f"the key does not look like an Adjutor key (pattern {key_pattern}); the probe will decide"]
