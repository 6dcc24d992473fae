"""One read of the clipboard through its tool's stdout pipe, bounded: at most `MAX_READ`
bytes are taken (anything longer cannot be a key: the rest is never read), and the tool is
killed and reaped however the read ends.  For `rotator.clipboard`."""

from __future__ import annotations

import asyncio
import contextlib

READ_TIMEOUT = 2.0  # a clipboard owner that does not answer (a hung app) must not hang the watch
MAX_READ = 64 * 1024  # a key is at most 4096 characters; more is a document, not a key
TOO_BIG = b"\0"  # what a value over MAX_READ (or too slow to read) counts as: hygiene refuses it


async def kill_tool(proc: asyncio.subprocess.Process) -> None:
    """Kill `proc` if it runs, close our ends of its pipes, and reap it (bounded).

    The pipes are closed explicitly: a pipe left holding output we did not read (a 10 MB
    clipboard read only up to `MAX_READ`) never reports EOF, and `Process.wait()` waits for
    every pipe's EOF (Python 3.11.7+): the watch hung there for good, and the transports left
    open raised "Event loop is closed" at exit."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    # Only the pipes: closing the whole transport would reap the child behind the child
    # watcher's back ("Unknown child process pid ...").  asyncio's Process hides its transport.
    transport = getattr(proc, "_transport", None)
    for fd in (0, 1, 2):
        with contextlib.suppress(Exception):
            pipe = transport.get_pipe_transport(fd) if transport is not None else None
            if pipe is not None:
                pipe.close()
    with contextlib.suppress(ProcessLookupError, asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), READ_TIMEOUT)


async def read_bounded(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    """Read at most MAX_READ + 1 bytes: anything longer cannot be a key, so the rest is
    never read (the caller kills the tool) and the value is the b"\0" marker hygiene refuses."""
    assert proc.stdout is not None and proc.stderr is not None
    chunks: list[bytes] = []
    size = 0

    async def bounded() -> bytes | None:
        nonlocal size
        assert proc.stdout is not None
        while size <= MAX_READ:
            chunk = await proc.stdout.read(MAX_READ + 1 - size)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        return None  # over the bound

    out, err = await asyncio.gather(bounded(), proc.stderr.read(4096))
    chunks.clear()
    if out is None:
        return TOO_BIG, b""  # too long to be a key: not waited for, killed by the caller
    await proc.wait()
    return out, err
