"""The clipboard as a key source: Adjutor's "Reset app key" copies the new key
there, so rotator can take it the moment it lands instead of waiting for a paste.

Once started, a `ClipboardSource` watches the clipboard through the platform's
own tool, reading only through the tool's stdout pipe (a value never goes on a
command line, in a log, a repr or an exception):

* Wayland: ``wl-paste --watch`` is a native change notification (one line per
  change), then ``wl-paste --no-newline`` reads the new value.
* X11 (``xclip``, else ``xsel``): the X server's XFIXES selection events are the
  notification (`rotator._xfixes`, with python-xlib from the ``clipboard`` extra),
  plus a read every 0.5 s in case an owner changes its data without taking the
  selection again.  Without python-xlib, as on macOS (``pbpaste``), no tool offers a
  notification, so the value is read every 50 ms and compared by hash.

Measured under Xvfb on the shared 2-core box (load ~5; ``python -m
benchmarks.clipboard``, 200 copies): copy -> key received p50 8 ms / p99 39 ms
with XFIXES, p50 28 ms / p99 62 ms with the 50 ms poll.  Watching an unchanged
clipboard costs 1.1 % of one core with XFIXES (the 0.5 s safety read) and ~11 %
polling: a read is ~1.8 ms of this process and ~3.5 ms of xclip, 20 a second (a
thread with subprocess.run saved only 0.5 ms a read).  The watch runs from arm
to the key: seconds, not a resident cost.

Every read is bounded: at most `MAX_READ` bytes are taken (anything longer cannot
be a key: the tool is killed, the rest never read) and a read that takes longer
than `READ_TIMEOUT` is cut off, so a 10 MB clipboard, before or after arm, is
ignored in a few milliseconds.  With XFIXES a copy made during a read starts it
again, and a huge value is not re-read until the selection changes: the key copied
after it is taken as promptly as any (measured: 13-56 ms; polling: within one
cut-off read, <= 1.2 s).

A value is offered only when it is new (it differs from what the clipboard held
at start and from the last value seen), passes paste hygiene (`clean_paste`),
matches the plan's key pattern, is not a URL, differs from the current key and
was not refused before.  Everything else is counted in `ignored` by reason,
never by value.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType

from rotator._xfixes import XFixesWatch, open_watch
from rotator.clipboard_read import MAX_READ, READ_TIMEOUT, TOO_BIG, kill_tool, read_bounded
from rotator.clipboard_tools import PBPASTE, WL_PASTE, XCLIP, XSEL, ClipboardUnavailable, Mode, Tool, detect
from rotator.secret import ADJUTOR_KEY_PATTERN, KeyRejected, Secret, clean_paste

# The tools live in `rotator.clipboard_tools`, the bounded read in `rotator.clipboard_read`;
# their names stay importable from here.
__all__ = [
    "HISTORY_WARNING",
    "MAX_READ",
    "PBPASTE",
    "READ_TIMEOUT",
    "TOO_BIG",
    "WL_PASTE",
    "XCLIP",
    "XSEL",
    "ClipboardSource",
    "ClipboardUnavailable",
    "Ignored",
    "Mode",
    "Tool",
    "detect",
]

HISTORY_WARNING = (
    "clipboard history managers (GNOME's, KDE's Klipper, CopyQ, macOS and Windows history) may keep a copy"
    " of the key: clear their history after the rotation"
)
POLL_INTERVAL = 0.05
SAFETY_INTERVAL = 0.5  # with change notifications, still read this often (an owner may not re-take the selection)
# ...and once the clipboard holds something too big or too slow to read, each read is cut off sooner:
# a key is read in milliseconds (p99 39 ms on a loaded box), and the key copied next must not wait.
HEAVY_READ_TIMEOUT = 0.5
CLEAR_CONFIRM = 1.0  # seconds a clear may take to show (xclip takes the selection after it forks)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^www\.", re.IGNORECASE)


class Ignored(enum.StrEnum):
    """Why a clipboard value was not offered (counted; the value itself is never kept)."""

    NOT_A_KEY = "not a key"  # paste hygiene refused it (a sentence, whitespace, control characters)
    PATTERN = "does not match the key pattern"
    URL = "a URL"
    CURRENT = "the current key"
    REFUSED = "refused before"


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _as_fingerprint(current: Secret | str | None) -> str | None:
    return current.fingerprint if isinstance(current, Secret) else current


class ClipboardSource:
    """Watch the clipboard and hand over new values that can be the key.

    ``async with ClipboardSource(current=fp, key_pattern=plan.secret.key_pattern) as clip:``
    then ``key = await clip.next_key()``; if the probe refuses it, ``clip.refused(key)``
    and call `next_key` again; once the key is taken, ``await clip.clear_if_unchanged(key)``.
    Cancelling `next_key` (Ctrl-C) returns at once; the tool's processes are killed.
    """

    def __init__(
        self,
        *,
        current: Secret | str | None = None,
        key_pattern: str | None = ADJUTOR_KEY_PATTERN,
        tool: Tool | None = None,
        env: Mapping[str, str] | None = None,
        interval: float = POLL_INTERVAL,
        include_initial: bool = False,
        native: bool = True,
    ) -> None:
        self.current_fingerprint = _as_fingerprint(current)
        self.key_pattern = key_pattern
        self._tool = tool
        self._env = dict(os.environ if env is None else env)
        self.interval = interval
        self.include_initial = include_initial
        self.ignored: dict[Ignored, int] = {}
        self.reads = 0
        self.notifications = 0  # changes the platform told us about (0 when polling)
        self.slow_reads = 0  # reads cut off at READ_TIMEOUT (a hung owner, or a huge value)
        self._heavy = False  # the clipboard holds something too big to read: read it again only on a change
        self._refused: set[str] = set()
        self._last: bytes | None = None  # sha256 of the last value seen: never the value
        self.native = native
        self._watcher: asyncio.subprocess.Process | None = None
        self._xfixes: XFixesWatch | None = None
        self._children: set[asyncio.subprocess.Process] = set()
        self._started = False

    def __repr__(self) -> str:
        name = self._tool.name if self._tool else "?"
        return f"ClipboardSource(tool={name}, started={self._started}, ignored={sum(self.ignored.values())})"

    @property
    def mode(self) -> Mode:
        """NOTIFY once started with a change notification (wl-paste --watch, XFIXES), else POLL."""
        return Mode.NOTIFY if self._watcher is not None or self._xfixes is not None else Mode.POLL

    def describe(self) -> str:
        """What watches the clipboard, for the operator ("xclip (XFIXES change notifications)")."""
        if self._xfixes is not None:
            return f"{self.tool.name} (XFIXES change notifications)"
        if self._watcher is not None:
            return f"{self.tool.name} (change notifications)"
        return f"{self.tool.name} (a read every {self.interval * 1000:.0f} ms)"

    @property
    def tool(self) -> Tool:
        if self._tool is None:
            self._tool = detect(self._env)
        return self._tool

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        """Pick the tool and note what the clipboard holds now (it is not new)."""
        if self._started:
            return
        tool = self.tool
        self._started = True
        if tool.mode is Mode.NOTIFY:
            self._watcher = await self._spawn(tool.watch, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        elif self.native and tool in (XCLIP, XSEL) and self._env.get("DISPLAY"):
            self._xfixes = open_watch(self._env["DISPLAY"])
        data, err = await self._read(check=True)
        if err is not None:
            await self.aclose()
            raise ClipboardUnavailable(err)
        if not self.include_initial:
            self._last = _digest(data) if data is not None else None

    async def aclose(self) -> None:
        """Kill every child this source started (the watcher and any read in flight)."""
        self._watcher = None
        if self._xfixes is not None:
            self._xfixes.close()
            self._xfixes = None
        for proc in list(self._children):
            await kill_tool(proc)
        self._children.clear()
        self._started = False

    async def __aenter__(self) -> ClipboardSource:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- the children ---------------------------------------------------------
    async def _spawn(self, argv: tuple[str, ...], *, stdout: int, stderr: int) -> asyncio.subprocess.Process:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=self._env
            )
        except OSError as exc:
            raise ClipboardUnavailable(f"cannot run {argv[0]} ({exc.strerror}): install {self.tool.install}") from None
        self._children.add(proc)
        return proc

    async def _read(self, *, check: bool = False) -> tuple[bytes | None, str | None]:
        """The clipboard's bytes (None when it holds no text), and with `check` an error line."""
        proc = await self._spawn(self.tool.read, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            timeout = HEAVY_READ_TIMEOUT if self._heavy else READ_TIMEOUT
            out, err = await asyncio.wait_for(read_bounded(proc), timeout)
        except TimeoutError:
            # A hung owner, or a value so big the tool is still fetching it (xclip gathers all
            # of it before writing any): either way not a key, and no fault of the display.
            self.slow_reads += 1
            self._heavy = True
            return TOO_BIG, None
        finally:
            await kill_tool(proc)
            self._children.discard(proc)
        self.reads += 1
        self._heavy = out is TOO_BIG
        if out is TOO_BIG:
            return out, None
        if proc.returncode != 0:
            # "Error: target STRING not available" / "Nothing is copied": an empty clipboard, not a fault.
            # Only "cannot open display" and the like mean the tool cannot work here.
            text = err.decode("utf-8", "replace").strip().splitlines()
            line = text[0][:200] if text else ""
            if check and "display" in line.lower():
                where = self._env.get("WAYLAND_DISPLAY") or self._env.get("DISPLAY") or "?"
                return None, f"{self.tool.name} cannot reach the display {where} ({line}); is the session running?"
            return None, None
        return out, None

    async def _changed(self, delay: float) -> None:
        """Return when the clipboard may have changed: the next notification, or after `delay`."""
        if self._watcher is not None:
            assert self._watcher.stdout is not None
            line = await self._watcher.stdout.readline()
            if not line:
                raise ClipboardUnavailable(f"{self.tool.name} --watch stopped; is the Wayland session still running?")
            self.notifications += 1
            return
        if self._xfixes is not None and not self._xfixes.broken:
            # A huge value is not read again every SAFETY_INTERVAL (each read fetches all of it):
            # only when the selection changes owner, which every copy does.
            changes = await self._xfixes.wait(None if self._heavy else SAFETY_INTERVAL)
            self.notifications += changes
            if changes:
                # A new owner: its value is read with the full timeout.  The short one is only for
                # re-reading the same huge value; on a busy machine it could cut off a small key.
                self._heavy = False
            return
        await asyncio.sleep(delay)

    async def _read_fresh(self) -> tuple[bytes | None, str | None]:
        """A read; with change notifications, a change during the read starts it again, so a
        huge value being fetched never holds up the key copied after it."""
        xf = self._xfixes
        if xf is None or xf.broken:
            return await self._read()
        while True:
            xf.changed.clear()
            read = asyncio.ensure_future(self._read())
            changed = asyncio.ensure_future(xf.changed.wait())
            try:
                done, _ = await asyncio.wait({read, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                if not read.done():
                    read.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await read
            if read in done:
                return read.result()
            self.notifications += 1
            self._heavy = False  # a new owner (see `_changed`)

    # -- the values -------------------------------------------------------------
    def _judge(self, data: bytes) -> Secret | Ignored:
        try:
            clean = clean_paste(data, None)
        except KeyRejected:
            return Ignored.NOT_A_KEY
        secret = clean.secret
        value = secret.reveal()
        if _URL.match(value):
            return Ignored.URL
        if self.key_pattern and not re.fullmatch(self.key_pattern, value):
            return Ignored.PATTERN
        if secret.fingerprint == self.current_fingerprint:
            return Ignored.CURRENT
        if secret.fingerprint in self._refused:
            return Ignored.REFUSED
        return secret

    async def next_key(self) -> Secret:
        """Wait for the next clipboard value that can be the new key."""
        await self.start()
        next_tick = time.monotonic()
        while True:
            data, _ = await self._read_fresh()
            digest = _digest(data) if data is not None else None
            if data is not None and digest != self._last:
                self._last = digest
                verdict = self._judge(data)
                del data
                if isinstance(verdict, Secret):
                    return verdict
                self.ignored[verdict] = self.ignored.get(verdict, 0) + 1
            else:
                self._last = digest
            next_tick += self.interval
            delay = next_tick - time.monotonic()
            if delay <= 0:
                delay, next_tick = 0.0, time.monotonic()  # fell behind (a slow read): do not burst to catch up
            await self._changed(delay)

    def refused(self, key: Secret | str) -> None:
        """The probe refused this key: never offer it again, keep watching."""
        self._refused.add(_as_fingerprint(key) or "")

    def __aiter__(self) -> AsyncIterator[Secret]:
        return self

    async def __anext__(self) -> Secret:
        return await self.next_key()

    async def clear_if_unchanged(self, key: Secret) -> bool:
        """Clear the clipboard if it still holds `key` (as KeePassXC and pass do); True once
        a read shows it cleared.

        Compared by fingerprint after the same hygiene, so a copied trailing newline
        still counts as the key.  A copy made between this read and the clear (a few
        ms) would be cleared too; the tools offer no compare-and-swap.  The clear is
        read back: xclip's process exits when it forks, and its child takes the
        selection a moment later, so a paste right after the exit could still get
        the key (a real X server's test caught it).  False if the clipboard still
        held the key `CLEAR_CONFIRM` seconds later."""
        if not await self._holds(key):
            return False
        proc = await self._spawn(self.tool.clear, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # xclip -i stays in the background to own the (now empty) selection: do not wait for it.
            await asyncio.wait_for(proc.wait(), 0.5)
        except TimeoutError:
            pass
        finally:
            self._children.discard(proc)
        self._last = _digest(b"")
        deadline = time.monotonic() + CLEAR_CONFIRM
        while await self._holds(key):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def _holds(self, key: Secret) -> bool:
        """Whether the clipboard holds `key` now."""
        data, _ = await self._read()
        if data is None:
            return False
        try:
            return clean_paste(data, None).secret.fingerprint == key.fingerprint
        except KeyRejected:
            return False
        finally:
            del data
