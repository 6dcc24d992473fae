"""The ``envfile`` backend: one variable in a dotenv file, every other byte kept.

Many services read their key from a ``.env`` file (through python-dotenv, a
shell's ``source``, docker compose or systemd).  This backend rewrites only the
value of one variable, so comments, order and the other variables stay exactly
as the operator left them, and writes the file atomically with mode 0600 so a
reader never sees half a file and no other user can read the key.

The parser follows python-dotenv's grammar (quoted values may span lines,
``export`` prefixes, inline comments after unquoted values), so what this
backend finds is what python-dotenv would load.  Values are written in the one
quoting that python-dotenv and a POSIX shell both read back unchanged; a value
that has no such quoting is refused rather than written to be misread.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from rotator.plugin import Backend, BackendSettings, Check, Conflict, PluginError, Stored, Written
from rotator.secret import Secret

__all__ = ["EnvFileBackend", "EnvFileError", "encode_value", "lookup", "parse_dotenv", "update_dotenv", "version_of"]

FILE_MODE = 0o600

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
_VARIABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def version_of(secret: Secret | None) -> str:
    """The version of an env file's variable: what it holds, by fingerprint.

    A file has no version counter, so the check-and-set compares the value this
    backend owns: the fingerprint read at arm against the one read again under the
    write lock, immediately before the atomic rename.  It guarantees that a change
    to the variable made before that re-read (a colleague's edit, another rotator)
    is never overwritten: the write fails with `Conflict` (exit 9).  Edits to other
    lines are not conflicts; they are kept, as every write keeps them.  An editor
    that saves in the microseconds between the re-read and the rename, without
    taking a lock, can still be lost: no lock-free file format can exclude that.
    Inode and mtime are not part of it: a file rewritten with the same value (an
    editor's save, a config-management run) holds the same key and is no conflict.
    """
    return f"fp:{secret.fingerprint}" if secret is not None else "absent"


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
                pos = _skip(_EQUAL_SIGN, text, pos)
                value_start = value_end = pos
                ch = text[pos : pos + 1]
                if ch == "'":
                    m = _SINGLE_QUOTED_VALUE.match(text, pos)
                    if m is None:
                        raise EnvFileError("unterminated single quote")
                    value = _decode(_SINGLE_QUOTE_ESCAPES, m.group(1))
                    pos = value_end = m.end()
                elif ch == '"':
                    m = _DOUBLE_QUOTED_VALUE.match(text, pos)
                    if m is None:
                        raise EnvFileError("unterminated double quote")
                    value = _decode(_DOUBLE_QUOTE_ESCAPES, m.group(1))
                    pos = value_end = m.end()
                elif ch in ("", "\n", "\r"):
                    value = ""
                else:
                    m = _UNQUOTED_VALUE.match(text, pos)
                    assert m is not None
                    part = m.group(0)
                    c = _INLINE_COMMENT.search(part)
                    value = (part[: c.start()] if c else part).rstrip()
                    value_end = pos + len(value)
                    pos = m.end()
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


# One writer at a time per real file within this process: two envfile targets may
# name the same file (different variables), and each is a read-modify-write.
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path), threading.Lock())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(target: Path, data: bytes, owner: tuple[int, int] | None) -> None:
    """Replace `target` with `data`: 0600 temp file beside it, fsync, rename, fsync dir.

    The temp file is removed on any failure, so the key never lingers anywhere but
    in `target`.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".rotator-tmp", dir=target.parent)
    try:
        try:
            os.fchmod(fd, FILE_MODE)
            if owner is not None:
                os.fchown(fd, *owner)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(target.parent)


STALE_TEMP_AGE = 60.0  # seconds; a temp file this old is no write in progress


def _sweep_stale_temps(target: Path) -> int:
    """Remove temp files of `_atomic_write` that a killed process (SIGKILL, power loss) left
    beside `target`: each holds a key.  Returns how many were removed."""
    removed = 0
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.rotator-tmp"):
        try:
            if tmp.is_file() and not tmp.is_symlink() and time.time() - tmp.stat().st_mtime > STALE_TEMP_AGE:
                tmp.unlink()
                removed += 1
        except OSError:
            pass
    return removed


class EnvFileBackend(Backend):
    """A variable in a dotenv file on this machine."""

    can_be_primary = True

    class Settings(BackendSettings):
        type: str = "envfile"
        path: Path = Field(description="the dotenv file")
        variable: str = Field(pattern=_VARIABLE_NAME, max_length=200, description="the variable that holds the key")
        create: bool = Field(default=False, description="create the file when it does not exist")
        backup: bool = Field(default=False, description="keep the previous file as <path>.bak (mode 0600)")

        @field_validator("path", mode="before")
        @classmethod
        def _names_a_file(cls, v: object) -> object:
            if isinstance(v, str | Path) and (str(v).strip() == "" or str(v).endswith(("/", "/.", "/.."))):
                raise ValueError("must name a file, not a directory")
            return v

        @field_validator("path")
        @classmethod
        def _absolute(cls, v: Path) -> Path:
            if v.name in ("", ".", ".."):
                raise ValueError("must name a file, not a directory")
            if "\x00" in str(v):
                raise ValueError("must not contain a NUL character")
            return Path(os.path.abspath(v.expanduser()))

    settings: Settings

    def describe(self) -> str:
        return f"{self.settings.path} ({self.settings.variable})"

    # -- paths -----------------------------------------------------------------

    def _target(self) -> Path:
        """The real file to write: the path itself, or a symlink's target inside its directory."""
        path: Path = self.settings.path
        directory = os.path.realpath(path.parent)
        if os.path.islink(path):
            real = os.path.realpath(path)
            if os.path.commonpath([real, directory]) != directory:
                raise PluginError(
                    f"{path} is a symlink to {real}, outside {path.parent}; set path to the real file",
                    retryable=False,
                )
            return Path(real)
        return Path(directory) / path.name

    def _backup_path(self) -> Path:
        return Path(os.path.realpath(self.settings.path.parent)) / (self.settings.path.name + ".bak")

    def _read_text(self, target: Path) -> str | None:
        """The file's text, None when it does not exist."""
        try:
            if target.exists() and not target.is_file():  # a FIFO would block the read forever
                raise PluginError(f"{self.settings.path} is not a regular file; set path to a file", retryable=False)
            data = target.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise PluginError(f"{self.settings.path} is a directory; set path to a file", retryable=False) from None
        except OSError as exc:
            raise PluginError(f"cannot read {self.settings.path}: {exc.strerror}", retryable=False) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise PluginError(
                f"{self.settings.path} is not UTF-8 text; fix or replace the file", retryable=False
            ) from None

    # -- plugin interface --------------------------------------------------------

    async def preflight(self) -> Check:
        return await self.ctx.run_blocking(self._preflight)

    def _preflight(self) -> Check:
        path: Path = self.settings.path
        var: str = self.settings.variable
        try:
            target = self._target()
        except PluginError as exc:
            return Check(False, str(exc))
        directory = target.parent
        if not directory.is_dir():
            return Check(False, f"directory {directory} does not exist; create it or fix path")
        if not os.access(directory, os.W_OK | os.X_OK):
            return Check(False, f"directory {directory} is not writable by this user; fix its permissions")
        warnings: list[str] = []
        swept = _sweep_stale_temps(target)
        if swept:
            warnings.append(f"removed {swept} temp file(s) beside {path} that an interrupted write left behind")
        try:
            st = target.stat()
        except FileNotFoundError:
            if not self.settings.create:
                return Check(False, f"{path} does not exist; create it or set create = true")
            return Check(True, f"{path} does not exist; it will be created with {var} (mode 0600)")
        except OSError as exc:
            return Check(False, f"cannot stat {path}: {exc.strerror}")
        try:
            text = self._read_text(target)
        except PluginError as exc:
            return Check(False, str(exc))
        assert text is not None
        parsed = parse_dotenv(text)
        if var in parsed.error_keys:
            return Check(
                False, f"{path}: line {parsed.error_keys[var]} assigns {var} but cannot be parsed; fix its quoting"
            )
        others = [n for n in parsed.error_lines if n not in parsed.error_keys.values()]
        if others:
            warnings.append(f"{path}: lines {', '.join(map(str, others[:10]))} cannot be parsed (left as they are)")
        if st.st_mode & 0o077:
            warnings.append(f"{path} has mode {st.st_mode & 0o777:04o}; it will be rewritten as 0600")
        if os.geteuid() != 0 and st.st_uid != os.geteuid():
            warnings.append(f"{path} is owned by uid {st.st_uid}; rewriting it as uid {os.geteuid()} changes its owner")
        lines = [b.line for b in parsed.bindings if b.key == var]
        if lines:
            detail = f"{path}: {var} present (line {lines[-1]})"
        else:
            detail = f"{path}: {var} absent; it will be appended"
        return Check(True, detail, warnings)

    async def read(self) -> Stored:
        return await self.ctx.run_blocking(self._read)

    def _read(self) -> Stored:
        text = self._read_text(self._target())
        if text is None:
            return Stored(None)
        value = lookup(text, self.settings.variable)
        secret = Secret(value) if value else None
        return Stored(secret, version_of(secret))

    async def write(self, secret: Secret, *, token: str, expected_version: str | None) -> Written:
        return await self.ctx.run_blocking(self._write, secret, expected_version)

    def _write(self, secret: Secret, expected_version: str | None = None) -> Written:
        path: Path = self.settings.path
        target = self._target()
        with _lock_for(target):
            old = self._read_text(target)
            if old is None and not self.settings.create:
                raise PluginError(f"{path} does not exist; create it or set create = true", retryable=False)
            value = lookup(old, self.settings.variable) if old is not None else None
            held = Secret(value) if value else None
            if expected_version is not None and held != secret and version_of(held) != expected_version:
                # Checked under the lock, on the text read just before the rename: see version_of.
                raise Conflict(
                    f"{path}: {self.settings.variable} changed since arm (now {version_of(held)}, "
                    f"was {expected_version}); nothing written; check who changed it, or --force"
                )
            try:
                new = update_dotenv(old or "", self.settings.variable, secret.reveal())
            except EnvFileError as exc:
                raise PluginError(f"{path}: {exc}", retryable=False) from None
            if new == old:  # a retried write: leave the file (and any backup) alone
                if target.stat().st_mode & 0o777 != FILE_MODE:
                    os.chmod(target, FILE_MODE)
                return Written(detail=f"{path}: {self.settings.variable} already current")
            owner: tuple[int, int] | None = None
            if old is not None and os.geteuid() == 0:
                st = target.stat()
                owner = (st.st_uid, st.st_gid)
            try:
                if self.settings.backup and old is not None:
                    _atomic_write(self._backup_path(), old.encode("utf-8"), owner)
                _atomic_write(target, new.encode("utf-8"), owner)
            except OSError as exc:
                raise PluginError(
                    f"cannot write {path}: {exc.strerror or exc}; check the directory's permissions and space"
                ) from None
        return Written(detail=f"{path}: {'updated' if old is not None else 'created'} {self.settings.variable}")
