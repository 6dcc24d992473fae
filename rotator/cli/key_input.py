"""The terminal's key sources: a hidden prompt, stdin, the clipboard racing the prompt, and a
line reader on a file descriptor that Ctrl-C cancels at once (the event loop's `add_reader`,
not a thread the interpreter would wait for at exit).  Shared by `rotate` and `alternating`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rotator.clipboard import ClipboardSource
    from rotator.plan import Plan
    from rotator.secret import Secret


class Prompt:
    """A hidden prompt on the terminal, asked again after each refused key.

    Echo stays off from the first prompt until the command ends (`terminal.Modes` puts the
    terminal back): a paste typed while the last key is probed is never shown on the screen
    (it is flushed by the next prompt, as getpass does).

    Read on the event loop (`loop.add_reader` on the terminal's fd), not in a
    thread: Ctrl-C cancels the read at once (and so does the clipboard winning the race), the `finally` restores echo, and the
    interpreter has no thread blocked in `read()` to wait for at exit (with
    `asyncio.to_thread(getpass)` the process stayed until Enter).  A daemon thread
    plus `os._exit` would also end it, but would skip the terminal's restore and
    the journal's close; cancelling the read keeps every `finally`.
    """

    name = "prompt"

    async def read(self) -> bytes:
        import os
        import termios

        try:
            fd, own = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY), True
        except OSError:
            fd, own = sys.stdin.fileno(), False  # no controlling terminal: the one on stdin (checked by the caller)
        try:
            old = termios.tcgetattr(fd)
            hidden = list(old)
            hidden[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSAFLUSH, hidden)  # flush what was typed before the prompt, as getpass does
            try:
                os.write(fd if own else sys.stderr.fileno(), b"new key: ")
                return await read_fd(fd, line=True)
            finally:  # echo stays off: the command's end puts the terminal back (`terminal.Modes`)
                os.write(fd if own else sys.stderr.fileno(), b"\n")
        finally:
            if own:
                os.close(fd)


class Clipboard:
    """The clipboard as a key source (`rotator.clipboard.ClipboardSource`): the dashboard's
    reset copies the new key there.  A refused value is never offered again; the last
    value taken is kept (in memory) to clear the clipboard afterwards if it still holds it."""

    name = "clipboard"

    def __init__(self, source: ClipboardSource) -> None:
        self.source = source
        self.last: Secret | None = None

    async def read(self) -> Secret:
        if self.last is not None:
            self.source.refused(self.last)  # asked again: the session refused the last one
        self.last = await self.source.next_key()
        return self.last


def clipboard_source(plan: Plan) -> ClipboardSource:
    """The clipboard's source for `plan` (one line naming what to install when there is none)."""
    from rotator.cli.context import Fail
    from rotator.clipboard import ClipboardSource, ClipboardUnavailable, detect
    from rotator.exitcodes import Exit

    try:
        detect()
    except ClipboardUnavailable as exc:
        raise Fail(f"--key-from clipboard: {exc}", Exit.PLAN_INVALID) from None
    return ClipboardSource(key_pattern=plan.secret.key_pattern)


async def start_clipboard(clip: Clipboard, current: str | None) -> None:
    """Start watching; the key the clipboard holds now (`current`) is never taken as the new one."""
    from rotator.cli.context import Fail
    from rotator.clipboard import ClipboardUnavailable
    from rotator.exitcodes import Exit

    clip.source.current_fingerprint = current  # the current key on the clipboard is not the new one
    try:
        await clip.source.start()
    except ClipboardUnavailable as exc:
        raise Fail(f"--key-from clipboard: {exc}", Exit.PLAN_INVALID) from None


async def done_with_clipboard(clip: Clipboard) -> None:
    """The clipboard still holding the last key taken is cleared; watching it stops."""
    last, clip.last = clip.last, None
    if last is not None and await clip.source.clear_if_unchanged(last):
        from rotator.cli.context import err

        err().print("clipboard cleared (it still held the key)")
    await clip.source.aclose()


class LineStdin:
    """Keys piped in, one a line (an alternating flow may ask for two); read on the
    event loop, so Ctrl-C ends the wait at once (`rotator.cli.key_input.Prompt`)."""

    name = "stdin"

    def __init__(self) -> None:
        from rotator.cli.key_input import Lines

        self.lines = Lines(sys.stdin.fileno())

    async def read(self) -> bytes | None:
        line = await self.lines.readline()
        return line or None


class Stdin:
    """The key piped in: one key, read once (to end of input), cancellably (see `Prompt`)."""

    name = "stdin"

    def __init__(self) -> None:
        self.used = False

    async def read(self) -> bytes | None:
        if self.used:
            return None
        self.used = True
        return await read_fd(sys.stdin.fileno(), line=False)


class Lines:
    """Lines from an fd, read on the event loop (cancellable, see `Prompt`); what a read
    brings beyond a newline is kept for the next line."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.rest = bytearray()

    async def readline(self) -> bytes:
        import asyncio
        import os

        from rotator.secret import MAX_KEY_LENGTH

        cap = MAX_KEY_LENGTH * 4 + 1
        loop = asyncio.get_running_loop()
        while b"\n" not in self.rest and len(self.rest) < cap:
            got: asyncio.Future[bytes] = loop.create_future()

            def ready(got: asyncio.Future[bytes] = got) -> None:
                try:
                    chunk = os.read(self.fd, 65536)
                except BlockingIOError:
                    return
                except OSError:
                    chunk = b""
                if not got.done():
                    got.set_result(chunk)

            try:
                loop.add_reader(self.fd, ready)
            except (PermissionError, ValueError, OSError):
                chunk = os.read(self.fd, 65536)  # a regular file or /dev/null: never blocks
            else:
                try:
                    chunk = await got
                finally:
                    loop.remove_reader(self.fd)
            if not chunk:
                break
            self.rest += chunk
        end = self.rest.find(b"\n")
        end = len(self.rest) if end < 0 else end + 1
        line = bytes(self.rest[:end])
        self.rest[:end] = bytes(end)  # no copy of the key left behind
        del self.rest[:end]
        return line


async def read_fd(fd: int, *, line: bool) -> bytes:
    """Read `fd` to its end (or, `line`, to a newline) on the event loop; cancellable.

    Keeps at most MAX_KEY_LENGTH*4+1 bytes: a huge paste is drained (so its
    writer does not hang) and rejected as too long, never held whole."""
    import asyncio
    import os

    from rotator.secret import MAX_KEY_LENGTH

    cap = MAX_KEY_LENGTH * 4 + 1
    buf = bytearray()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def take(chunk: bytes) -> bool:
        """Keep what fits; True at the end of what is wanted."""
        buf.extend(chunk[: max(cap - len(buf), 0)] if len(buf) < cap else b"")
        if len(buf) >= cap:
            buf[cap - 1 :] = b"x"
        return not chunk or (line and b"\n" in chunk)

    def ready() -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # a terminal hung up (EIO): no more input
            chunk = b""
        if take(chunk) and not done.done():
            done.set_result(None)

    try:
        loop.add_reader(fd, ready)
    except (PermissionError, ValueError, OSError):
        # A regular file (epoll cannot watch one) or /dev/null: reading it never blocks.
        while not take(os.read(fd, 65536)):
            pass
    else:
        try:
            await done
        finally:
            loop.remove_reader(fd)
    try:
        return bytes(buf)
    finally:
        buf[:] = bytes(len(buf))  # no copy of the key left in this buffer
