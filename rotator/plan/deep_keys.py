"""A dotted key too deep to parse, found before TOML parsing in linear time."""

from __future__ import annotations

from typing import Any

import re2

MAX_KEY_PARTS = 16  # a plan's deepest real key has 3 or 4 parts (probe.headers.Authorization)


# tomllib checks every prefix of a dotted key against what is defined so far, so a key
# of n parts costs n**2 (20,000 parts, 40 KB: 40 s).  Such a key is found before
# parsing by one RE2 automaton (a DFA: linear time whatever the text): the text as a
# run of TOML tokens (strings and comments whole, so their dots do not count, or any
# other character) followed by more than MAX_KEY_PARTS key parts joined by dots.
_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_Q = r"""(?:[^"\\]|\\[\s\S])"""
_TOKEN = (
    rf'"""(?:{_Q}|"{_Q}|""{_Q})*"""(?:""|")?'  # a closing """ may follow two quotes of the content
    r"|'''(?:[^']|'[^']|''[^'])*'''(?:''|')?"
    r'|"(?:[^"\\\n]|\\.)*"'
    r"|'[^'\n]*'"
    r"|#[^\n]*(?:\n|\z)"
    r"""|[^"'#]"""
)


def _deep_key_set() -> Any:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 64 << 20
    found = re2.Set.MatchSet(options)  # anchored at the start; tells only whether it matches
    found.Add(rf"(?:{_TOKEN})*?{_PART}(?:[ \t]*\.[ \t]*{_PART}){{{MAX_KEY_PARTS}}}")
    found.Compile()
    return found


_DEEP_KEY = _deep_key_set()


def too_deep(text: str) -> int | None:
    """The line of a dotted key with more than MAX_KEY_PARTS parts, or None.

    Measured: 0.1 ms for a 1 KB plan, 2 ms for 1.3 MB of strings full of dots; the
    40 KB key of 20,000 parts 0.5 ms.  The line is found by halving the text (about 20
    more passes, only for a plan that is refused)."""
    data = text.encode()
    if not _DEEP_KEY.Match(data):
        return None
    lo, hi = 0, len(data)
    while lo < hi:
        mid = (lo + hi) // 2
        if _DEEP_KEY.Match(data[:mid]):
            hi = mid
        else:
            lo = mid + 1
    return data.count(b"\n", 0, lo) + 1
