"""python-dotenv's grammar, for reading and rewriting variables of a dotenv file.

The parser follows python-dotenv's (dotenv/parser.py): quoted values may span
lines, ``export`` prefixes, inline comments after unquoted values, so what
rotator finds is what python-dotenv would load.  Values are written in the one
quoting that python-dotenv and a POSIX shell both read back unchanged; a value
that has no such quoting is refused rather than written to be misread.

Text in, text out: the files themselves are the envfile backend's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "VARIABLE_NAME",
    "Binding",
    "EnvFileError",
    "ParseResult",
    "encode_value",
    "lookup",
    "parse_dotenv",
    "update_dotenv",
]

# --- python-dotenv's grammar (dotenv/parser.py), so both read the same bindings ---
_MULTILINE_WS = re.compile(r"\s*")
_WS = re.compile(r"[^\S\r\n]*")
_EXPORT = re.compile(r"(?:export[^\S\r\n]+)?")
_SINGLE_QUOTED_KEY = re.compile(r"'([^']+)'")
_UNQUOTED_KEY = re.compile(r"([^=\#\s]+)")
_EQUAL_SIGN = re.compile(r"=[^\S\r\n]*")
_SINGLE_QUOTED_VALUE = re.compile(r"'((?:\\'|[^'])*)'")
_DOUBLE_QUOTED_VALUE = re.compile(r'"((?:\\"|[^"])*)"')
_UNQUOTED_VALUE = re.compile(r"[^\r\n]*")
_INLINE_COMMENT = re.compile(r"\s+#")
_COMMENT = re.compile(r"(?:[^\S\r\n]*#[^\r\n]*)?")
_END_OF_LINE = re.compile(r"[^\S\r\n]*(?:\r\n|\n|\r|$)")
_REST_OF_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)?")
_DOUBLE_QUOTE_ESCAPES = re.compile(r"\\[\\'\"abfnrtv]")
_SINGLE_QUOTE_ESCAPES = re.compile(r"\\[\\']")
_DOUBLE_QUOTE_DECODE = {
    "\\\\": "\\",
    "\\'": "'",
    '\\"': '"',
    "\\a": "\a",
    "\\b": "\b",
    "\\f": "\f",
    "\\n": "\n",
    "\\r": "\r",
    "\\t": "\t",
    "\\v": "\v",
}

# What may be written bare: nothing a shell or python-dotenv treats specially.
_SAFE_UNQUOTED = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
# python-dotenv expands ${NAME} and ${NAME:-default} inside any quoting (interpolate=True,
# its default); a shell does not inside single quotes.  No escape exists for it.
_DOTENV_INTERPOLATION = re.compile(r"\$\{[^}:]*(?::-[^}]*)?\}")
VARIABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class EnvFileError(ValueError):
    """A value or file that this backend cannot handle; the message never holds a value."""


@dataclass(frozen=True)
class Binding:
    """One ``KEY=value`` found in the text, with where its value sits.

    `value_start`..`value_end` is the span to replace (quotes included, an inline
    comment and trailing blanks excluded); for ``KEY`` without ``=`` it is empty
    and `has_equals` is False.
    """

    key: str
    value: str | None
    line: int
    value_start: int
    value_end: int
    has_equals: bool


@dataclass(frozen=True)
class ParseResult:
    bindings: list[Binding]
    error_lines: list[int]
    # Keys of lines that started like an assignment but could not be parsed.
    error_keys: dict[str, int]


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + text.count("\r", 0, pos) - text.count("\r\n", 0, pos) + 1


def _skip(regex: re.Pattern[str], text: str, pos: int) -> int:
    """End of `regex` (one that always matches, possibly empty) at `pos`."""
    m = regex.match(text, pos)
    assert m is not None
    return m.end()


def _decode(regex: re.Pattern[str], raw: str) -> str:
    return regex.sub(lambda m: _DOUBLE_QUOTE_DECODE[m.group(0)], raw)


def _value_at(text: str, pos: int) -> tuple[str, int, int]:
    """The value that starts at `pos` (just after ``=``): (value, where its span ends, where parsing goes on)."""
    ch = text[pos : pos + 1]
    if ch == "'":
        m = _SINGLE_QUOTED_VALUE.match(text, pos)
        if m is None:
            raise EnvFileError("unterminated single quote")
        return _decode(_SINGLE_QUOTE_ESCAPES, m.group(1)), m.end(), m.end()
    if ch == '"':
        m = _DOUBLE_QUOTED_VALUE.match(text, pos)
        if m is None:
            raise EnvFileError("unterminated double quote")
        return _decode(_DOUBLE_QUOTE_ESCAPES, m.group(1)), m.end(), m.end()
    if ch in ("", "\n", "\r"):
        return "", pos, pos
    m = _UNQUOTED_VALUE.match(text, pos)
    assert m is not None
    part = m.group(0)
    c = _INLINE_COMMENT.search(part)
    value = (part[: c.start()] if c else part).rstrip()
    return value, pos + len(value), m.end()


def parse_dotenv(text: str) -> ParseResult:
    """Find every binding the way python-dotenv does (without ``${}`` expansion)."""
    bindings: list[Binding] = []
    error_lines: list[int] = []
    error_keys: dict[str, int] = {}
    pos = 0
    n = len(text)
    while pos < n:
        mark = pos
        key: str | None = None
        try:
            pos = _skip(_MULTILINE_WS, text, pos)
            if pos >= n:
                break
            line = _line_of(text, pos)
            pos = _skip(_EXPORT, text, pos)
            if text.startswith("#", pos):
                key = None
            else:
                m = (_SINGLE_QUOTED_KEY if text.startswith("'", pos) else _UNQUOTED_KEY).match(text, pos)
                if m is None:
                    raise EnvFileError("bad key")
                key = m.group(1)
                pos = m.end()
            key_end = pos
            pos = _skip(_WS, text, pos)
            value: str | None = None
            value_start = value_end = key_end
            has_equals = text.startswith("=", pos)
            if has_equals:
                value_start = _skip(_EQUAL_SIGN, text, pos)
                value, value_end, pos = _value_at(text, value_start)
            pos = _skip(_COMMENT, text, pos)
            m = _END_OF_LINE.match(text, pos)
            if m is None:
                raise EnvFileError("text after the value")
            pos = m.end()
            if key is not None:
                bindings.append(Binding(key, value, line, value_start, value_end, has_equals))
        except EnvFileError:
            bad_line = _line_of(text, _skip(_MULTILINE_WS, text, mark))
            error_lines.append(bad_line)
            if key is not None:
                error_keys.setdefault(key, bad_line)
            pos = _skip(_REST_OF_LINE, text, pos)
            if pos == mark:  # cannot happen with the patterns above; never loop forever
                pos += 1
    return ParseResult(bindings, error_lines, error_keys)


def lookup(text: str, variable: str) -> str | None:
    """The value python-dotenv would load for `variable` (the last binding wins)."""
    found = None
    for b in parse_dotenv(text).bindings:
        if b.key == variable:
            found = b.value
    return found


def encode_value(value: str) -> str:
    """Quote `value` so python-dotenv and a POSIX shell both read exactly `value`.

    Bare when only safe characters appear (an Adjutor key stays ``sk_live_...``);
    else single quotes (literal in a shell; python-dotenv only decodes ``\\\\`` and
    ``\\'`` there); else double quotes with ``\\`` and ``"`` escaped, which needs
    no ``$`` or backquote.  Anything else is refused.
    """
    for ch in value:
        if ch in "\r\n\0":
            raise EnvFileError("the value has a line break or NUL; a dotenv line cannot hold it")
        if not ch.isprintable() and ch != "\t":
            raise EnvFileError("the value has a non-printable character; refusing to write it to a dotenv file")
    if _DOTENV_INTERPOLATION.search(value):
        raise EnvFileError("the value contains ${...}, which python-dotenv would expand; refusing to write it")
    if value.endswith("\\"):
        raise EnvFileError("the value ends with a backslash, which python-dotenv reads as escaping the closing quote")
    if value == "" or _SAFE_UNQUOTED.fullmatch(value):
        return value
    if "'" not in value and "\\\\" not in value:
        return f"'{value}'"
    if "$" not in value and "`" not in value:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise EnvFileError(
        "the value has a quote ' or a double backslash and also a $ or `;"
        " no dotenv quoting makes python-dotenv and a shell read that alike"
    )


def update_dotenv(text: str, variable: str, value: str) -> str:
    """`text` with every binding of `variable` set to `value` (appended if absent).

    Only the value spans change; a new binding goes on a line of its own at the end,
    with the file's own line ending.
    """
    encoded = encode_value(value)
    parsed = parse_dotenv(text)
    if variable in parsed.error_keys:
        raise EnvFileError(
            f"line {parsed.error_keys[variable]} assigns {variable} but cannot be parsed; fix its quoting"
        )
    spans = [b for b in parsed.bindings if b.key == variable]
    if not spans:
        newline = "\r\n" if "\r\n" in text else "\n"
        sep = "" if text == "" or text.endswith(("\n", "\r")) else newline
        return f"{text}{sep}{variable}={encoded}{newline}"
    out: list[str] = []
    cursor = 0
    for b in spans:
        rest = text[b.value_end : _skip(_UNQUOTED_VALUE, text, b.value_end)]
        piece = encoded
        if rest.lstrip().startswith("#"):
            # An inline comment follows.  python-dotenv skips blanks after "=", so an empty
            # value would read the comment as the value: quote it.  A comment glued to a
            # quoted value ('old'#c) would become part of a bare one: separate it.
            if piece == "":
                piece = "''"
            if rest.startswith("#"):
                piece += " "
        out.append(text[cursor : b.value_start])
        out.append(piece if b.has_equals else f"={piece}")
        cursor = b.value_end
    out.append(text[cursor:])
    return "".join(out)
