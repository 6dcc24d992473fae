"""Redaction: every live secret's value, in any form it may be printed, replaced by ``[REDACTED]``.

`scrub` is the net under every text that comes from a plugin or a server on its way to a
report, the journal or a log; `scrub_data` the same over JSON-shaped data.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import re2

from rotator.secret.value import FRESH, live_values

REDACTED = "[REDACTED]"
_REDACTED_BYTES = REDACTED.encode()


def _b64_core(raw: bytes, offset: int, encode: Callable[[bytes], bytes]) -> str:
    """The base64 characters that depend only on `raw` when it starts `offset` bytes into what is encoded."""
    enc = encode(b"\0" * offset + raw).rstrip(b"=")
    return enc[-(-offset * 4 // 3) : (offset + len(raw)) * 4 // 3].decode()


def encoded_forms(value: str) -> set[str]:
    """`value` as it may be printed: as is, URL-encoded, reversed, hex (lower and upper case), and
    base64 (standard and urlsafe) at each of the three byte offsets it can start at in what is
    encoded -- the forms the leak suite searches for.  Encoded forms under 8 characters are left
    out: they would match ordinary text by chance."""
    raw = value.encode()
    forms = {value, quote(value, safe=""), quote_plus(value)}
    encoded = {value[::-1], raw.hex(), raw.hex().upper()}
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded.add(_b64_core(raw, offset, encode))
    return forms | {f for f in encoded if len(f) >= _MIN_ENCODED}


_MIN_VALUE = 4  # shorter values are not scrubbed: they would match ordinary text
_MIN_ENCODED = 8
_CHUNK = 256  # values per compiled matcher: bounds one compile (~25 ms) and its memory
_DELTA = 32  # values added since the last full build that get a small matcher of their own


@dataclass(frozen=True)
class _Matcher:
    values: frozenset[str]
    regex: Any  # a compiled re2 pattern (the package has no type hints)
    # The first _MIN_VALUE characters of every form: a text where none of them starts
    # anywhere holds no form (the GIL-holding pre-check in `scrub`, see `_may_hold`).
    starts: frozenset[str] = frozenset()

    @classmethod
    def build(cls, values: frozenset[str]) -> list[_Matcher]:
        """One alternation of every form of `values`; halved until RE2 accepts it.

        `re2._Regexp` rather than `re2.compile`, whose LRU cache would keep the patterns (the
        secrets' values) alive after the Secrets are gone."""
        if not values:
            return []
        forms = sorted({f for v in values for f in encoded_forms(v)})
        try:
            regex = re2._Regexp("|".join(map(re2.escape, forms)), _RE2_OPTIONS)
            return [cls(values, regex, frozenset(f[:_MIN_VALUE] for f in forms))]
        except re2.error:
            if len(values) == 1:
                raise
            half = sorted(values)
            return cls.build(frozenset(half[: len(half) // 2])) + cls.build(frozenset(half[len(half) // 2 :]))


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print the failing pattern, i.e. the secrets, to stderr
    options.never_capture = True
    # Leftmost-longest (the longest form wins where two start at one place), and RE2 finds such a
    # match with a forward and a reverse DFA; leftmost-first needs an NFA pass, 0.7 ms at 1,000 values.
    options.longest_match = True
    options.max_mem = 64 << 20  # the default 8 MB runs its DFA out of memory at ~200 values
    return options


_RE2_OPTIONS = _re2_options()

_BUILD = threading.Lock()
# Matchers over every value live at the last full build, and matchers over what was added since.
# Dead values stay covered until the next full build: over-scrubbing is harmless.
_matchers: tuple[tuple[_Matcher, ...], tuple[_Matcher, ...]] = ((), ())


def _current() -> tuple[tuple[_Matcher, ...], tuple[_Matcher, ...]]:
    """The compiled matchers, brought up to date with the Secrets made since the last call.

    A new value compiles only the values added since the last full build (at most 32), so the
    key pasted into an armed rotation with 200 live secrets costs ~1 ms, not a ~25 ms full
    build.  A value already covered (a backend's read-back of the key just written makes a new
    Secret of a known value) costs a set lookup.  The queue of new Secrets is emptied only once
    matchers covering them are in place: a thread calling scrub meanwhile waits for them."""
    global _matchers
    if FRESH:
        with _BUILD:
            pending = list(FRESH)
            full, recent = _matchers
            covered = [m.values for m in (*full, *recent)]
            new = set()
            for ref in pending:
                s = ref()
                value = s.reveal() if s is not None else ""
                if len(value) >= _MIN_VALUE and not any(value in c for c in covered):
                    new.add(value)
            if new:
                added = frozenset(new).union(*(m.values for m in recent))
                if full and len(added) <= _DELTA:
                    _matchers = (full, tuple(_Matcher.build(added)))
                else:
                    values = sorted({v for v in live_values() if len(v) >= _MIN_VALUE})
                    chunks = [frozenset(values[i : i + _CHUNK]) for i in range(0, len(values), _CHUNK)]
                    _matchers = (tuple(m for c in chunks for m in _Matcher.build(c)), ())
            for _ in pending:
                FRESH.popleft()
    return _matchers


def compact() -> None:
    """Fold every live value into full matchers now, so the next new value (the key the
    operator pastes) compiles a one-value matcher (~0.4 ms) and never a full rebuild.

    Called at the end of arm.  Without it a long-lived process (`rotator serve`) carries up to
    32 values in the small matchers, and the 33rd -- possibly the pasted key -- triggers the
    full build (~25 ms at 200 live values) inside the window."""
    global _matchers
    _current()
    with _BUILD:
        values = sorted({v for v in live_values() if len(v) >= _MIN_VALUE})
        chunks = [frozenset(values[i : i + _CHUNK]) for i in range(0, len(values), _CHUNK)]
        _matchers = (tuple(m for c in chunks for m in _Matcher.build(c)), ())


def scrub(text: str) -> str:
    """`text` with every live secret's value replaced by ``[REDACTED]``, in any of the forms
    `encoded_forms` lists (as is, URL-encoded, reversed, hex, base64 at each offset).

    For text that comes from a plugin or a server (an error message, a detail, a command's
    output) on its way to a report, the journal or a log: a plugin may echo its input, encoded.

    One RE2 alternation of every form of every live value (a DFA: one pass over `text` whatever
    the number of forms), compiled when the set of live values grows.  Matched on UTF-8 bytes
    (``surrogatepass``: text decoded with ``surrogateescape`` must not make scrub raise).
    Measured with 200 live secrets and a 90-character progress line: before (raw and URL forms
    only, a loop of `in` tests) 11-15 us a call; now (11 forms each) 3.5 us clean, 6-8 us with
    a key to replace.  In a rotation the scans run cold (10-25 us each, ~70 of them in the
    headline's window): a text already found clean by the same matchers is a dict lookup,
    and a short text none of whose 4-character pieces starts a form is cleared without RE2
    (`_may_hold`: RE2 gives up the GIL, which the window's event loop then waits to get back)."""
    if not text:
        return text
    global _clean
    pair = _current()
    owner, clean, starts = _clean
    if owner is not pair:  # new matchers: what was clean before may hold the new value
        clean = {}
        starts = frozenset().union(*(m.starts for m in (*pair[0], *pair[1])))
        _clean = (pair, clean, starts)
    elif text in clean:
        return text
    full, recent = pair
    if not (full or recent):
        return text
    if len(text) <= _CLEAN_TEXT and not _may_hold(text, starts):
        found = None
    else:
        found = _redact(full + recent, text)
    if found is None:
        if len(text) <= _CLEAN_TEXT and len(clean) < _CLEAN_ENTRIES:
            clean[text] = None
        return text
    return found


# Texts found clean by the current matchers (a progress line, "confirmed", a status): a rotation
# scrubs the same few texts again and again (each consumer's detail, then its progress line), and
# a cold RE2 scan costs 10-25 us on the window's event loop against a dict lookup.  Only clean
# texts are kept (never one that held a secret), and only with the matchers that found them clean.
_CLEAN_TEXT = 512
_CLEAN_ENTRIES = 1024
_clean: tuple[object, dict[str, None], frozenset[str]] = (None, {}, frozenset())


def _may_hold(text: str, starts: frozenset[str]) -> bool:
    """Whether a form of a live value could start somewhere in `text`: False only when none
    of the forms' first `_MIN_VALUE` characters occurs in it (every form is at least that long,
    so no form occurs either).

    Why not RE2 alone: google-re2 releases the GIL for every match, however short the text.
    On the window's event loop, with SDK calls and the journal busy in threads, each release
    costs a wait to take the GIL back: a 60-character detail scanned in 1.5 us alone took
    ~75 us in a 200-target fan-out (374 scans, 28-32 ms of the window), ~430 us beside a
    CPU-bound thread.  This check holds the GIL: ~5 us for such a text, whatever the threads do.
    A text it cannot clear (a key in it, or a chance 4-character match) goes to RE2."""
    n = len(text) - _MIN_VALUE + 1
    return not starts.isdisjoint([text[i : i + _MIN_VALUE] for i in range(n)])


def _redact(matchers: tuple[_Matcher, ...], text: str) -> str | None:
    """`text` with every match replaced, or None if nothing matched."""
    data = text.encode("utf-8", "surrogatepass")
    found = False
    for m in matchers:
        spans = [match.span() for match in m.regex.finditer(data)]
        if spans:
            found = True
            pieces: list[bytes] = []
            pos = 0
            for start, end in spans:
                pieces += (data[pos:start], _REDACTED_BYTES)
                pos = end
            pieces.append(data[pos:])
            data = b"".join(pieces)
    return data.decode("utf-8", "surrogatepass") if found else None


def scrub_data(obj: Any) -> Any:
    """JSON-shaped data (dicts, lists, strings, numbers) with `scrub` applied to every string,
    keys included: the last net under every API response and event stream.

    Anything else becomes its `str()` (as `json.dumps(default=str)` would), scrubbed."""
    if isinstance(obj, str):
        return scrub(obj)
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    if isinstance(obj, dict):
        return {(scrub(k) if isinstance(k, str) else k): scrub_data(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [scrub_data(v) for v in obj]
    return scrub(str(obj))
