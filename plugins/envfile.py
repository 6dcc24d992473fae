"""The ``envfile`` backend: one variable in a dotenv file, every other byte kept.

Many services read their key from a ``.env`` file (through python-dotenv, a
shell's ``source``, docker compose or systemd).  This backend rewrites only the
value of one variable, so comments, order and the other variables stay exactly
as the operator left them, and writes the file atomically with mode 0600 so a
reader never sees half a file and no other user can read the key (`_files`).

As the primary of an alternating plan it keeps the standby key in a second
variable (``standby_variable``, default ``<variable>_STANDBY``) and the slot
metadata in a third (``slots_variable``, default ``<variable>_SLOTS``) of the same
file, so a swap is one atomic rename.

What it finds and writes follows python-dotenv's grammar (`_dotenv`), so what
this backend reads is what python-dotenv would load.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator
from rotator_plugins._dotenv import (
    VARIABLE_NAME,
    EnvFileError,
    encode_value,
    lookup,
    parse_dotenv,
    update_dotenv,
)
from rotator_plugins._files import FILE_MODE, atomic_write, lock_for, sweep_leftovers

from rotator.backend_rules import Change, SlotFields, SlotState, StandbySlots, key_change
from rotator.plugin import BackendSettings, Check, PluginError, Stored, Written
from rotator.secret import Secret, fingerprint

__all__ = ["EnvFileBackend", "EnvFileError", "encode_value", "lookup", "parse_dotenv", "update_dotenv", "version_of"]


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


class EnvFileBackend(StandbySlots):
    """A variable in a dotenv file on this machine."""

    can_be_primary = True

    class Settings(BackendSettings, SlotFields):
        slot_settings: ClassVar[tuple[str, str, str]] = ("variable", "standby_variable", "slots_variable")
        slot_suffixes: ClassVar[tuple[str, str]] = ("_STANDBY", "_SLOTS")
        type: str = "envfile"
        path: Path = Field(description="the dotenv file")
        variable: str = Field(pattern=VARIABLE_NAME, max_length=200, description="the variable that holds the key")
        create: bool = Field(default=False, description="create the file when it does not exist")
        backup: bool = Field(default=False, description="keep the previous file as <path>.bak (mode 0600)")
        standby_variable: str | None = Field(
            default=None,
            pattern=VARIABLE_NAME,
            max_length=200,
            description="alternating plans, primary only: the standby key's variable (default <variable>_STANDBY)",
        )
        slots_variable: str | None = Field(
            default=None,
            pattern=VARIABLE_NAME,
            max_length=200,
            description="alternating plans, primary only: the slot metadata's variable (default <variable>_SLOTS)",
        )

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
        with lock_for(target):
            swept = sweep_leftovers(target)
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
        try:  # the file's modification time: all a file records of its last edit
            mtime = os.stat(self._target()).st_mtime
            changed_at: str | None = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
        except OSError:
            changed_at = None
        return Stored(secret, version_of(secret), changed_at=changed_at)

    async def write(self, secret: Secret, *, token: str, expected_version: str | None) -> Written:
        return await self.ctx.run_blocking(self._write, secret, expected_version)

    def _write(self, secret: Secret, expected_version: str | None = None) -> Written:
        path: Path = self.settings.path
        target = self._target()
        with lock_for(target):
            # What an interrupted write left holds a key: gone before this write, even one
            # that finds nothing to do (a resume).
            swept = self._sweep(target)
            note = f"; removed {swept} temp file(s) an interrupted write left" if swept else ""
            old = self._read_text(target)
            if old is None and not self.settings.create:
                raise PluginError(f"{path} does not exist; create it or set create = true", retryable=False)
            value = lookup(old, self.settings.variable) if old is not None else None
            held = Secret(value) if value else None
            # Checked under the lock, on the text read just before the rename: see version_of.
            where = f"{path}: {self.settings.variable}"
            if key_change(held, version_of(held), secret, expected_version=expected_version, where=where) is None:
                # A retried write: leave the file (and any backup) alone, but its mode 0600.
                if target.stat().st_mode & 0o777 != FILE_MODE:
                    os.chmod(target, FILE_MODE)
                return Written(detail=f"{path}: {self.settings.variable} already current{note}")
            try:
                new = update_dotenv(old or "", self.settings.variable, secret.reveal())
            except EnvFileError as exc:
                raise PluginError(f"{path}: {exc}", retryable=False) from None
            self._replace(target, old, new)
        done = "updated" if old is not None else "created"
        return Written(detail=f"{path}: {done} {self.settings.variable}{note}")

    def _replace(self, target: Path, old: str | None, new: str) -> None:
        """Write `new` over `target` (which held `old`), keeping its owner and a backup if asked.
        Call with `target`'s lock held."""
        owner: tuple[int, int] | None = None
        if old is not None and os.geteuid() == 0:
            st = target.stat()
            owner = (st.st_uid, st.st_gid)
        try:
            if self.settings.backup and old is not None:
                atomic_write(self._backup_path(), old.encode("utf-8"), owner)
            atomic_write(target, new.encode("utf-8"), owner)
        except OSError as exc:
            raise PluginError(
                f"cannot write {self.settings.path}: {exc.strerror or exc}; check the directory's permissions and space"
            ) from None

    # -- the standby slot (alternating plans) -------------------------------------
    #
    # Three variables of the one file: the key, the standby key, and the slot
    # metadata (JSON, no key).  Every change is one atomic rename of the whole file,
    # so a swap is one write: a reader sees both old values or both new ones.

    def _sweep(self, target: Path) -> int:
        return sweep_leftovers(target) + (sweep_leftovers(self._backup_path()) if self.settings.backup else 0)

    def _state_of(self, text: str | None) -> SlotState:
        s = self.settings
        text = text or ""
        active, standby, meta = (lookup(text, v) for v in (s.variable, s.standby, s.slots))
        a = Secret(active) if active else None
        b = Secret(standby) if standby else None
        # A file has no version counter: the version is the three values, by fingerprint
        # (see version_of), so an edit to any of them between arm and write is a Conflict.
        version = "slots:" + fingerprint("|".join([version_of(a), version_of(b), meta or ""]))
        return SlotState(a, b, meta, version)

    async def _slot_state(self) -> SlotState:
        return await self.ctx.run_blocking(lambda: self._state_of(self._read_text(self._target())))

    def _slots_at(self) -> tuple[str, str, str]:
        return str(self.settings.path), self.settings.standby, self.settings.slots

    async def preflight_standby(self) -> Check:
        check = await super().preflight_standby()
        if check.ok is not False:
            s = self.settings
            text = await self.ctx.run_blocking(self._read_text, self._target())
            parsed = parse_dotenv(text or "")
            for var in (s.standby, s.slots):
                if var in parsed.error_keys:
                    line = parsed.error_keys[var]
                    return Check(False, f"{s.path}: line {line} assigns {var} but cannot be parsed; fix its quoting")
        return check

    async def _change_slots(
        self, change: Callable[[SlotState], Change | None], *, token: str, expected_version: str | None, done: str
    ) -> Written:
        return await self.ctx.run_blocking(self._rewrite_slots, change, done)

    def _rewrite_slots(self, change: Callable[[SlotState], Change | None], done: str) -> Written:
        s = self.settings
        target = self._target()
        with lock_for(target):
            swept = self._sweep(target)
            note = f"; removed {swept} temp file(s) an interrupted write left" if swept else ""
            old = self._read_text(target)
            if old is None and not s.create:
                raise PluginError(f"{s.path} does not exist; create it or set create = true", retryable=False)
            state = self._state_of(old)
            todo = change(state)
            if todo is None:
                return Written(version=state.version, detail=f"{s.path}: already done, nothing written{note}")
            new = old or ""
            try:
                for var, value in ((s.variable, todo.active), (s.standby, todo.standby)):
                    if value is not None:
                        new = update_dotenv(new, var, value.reveal())
                new = update_dotenv(new, s.slots, todo.meta_text)
            except EnvFileError as exc:
                raise PluginError(f"{s.path}: {exc}", retryable=False) from None
            self._replace(target, old, new)
            return Written(version=self._state_of(new).version, detail=f"{s.path}: {done}{note}")
