"""Reading a small file named by an operator, without hanging on what is not a file.

`Path.read_bytes()` on a named pipe waits for a writer forever, on /dev/zero reads
until memory runs out, and on a tty waits for a line.  `read_regular` refuses
anything that is not a regular file before reading it, and a file over its limit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class NotRegular(OSError):
    """The path names something other than a regular file; `kind` says what."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"not a regular file ({kind})")
        self.kind = kind


class TooLarge(OSError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes; at most {limit}")
        self.size, self.limit = size, limit


def _check(mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise NotRegular(_KINDS.get(stat.S_IFMT(mode), "not a file"))


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file `path` (symlinks followed), at most `limit` of them.

    Checked twice: `stat` before opening (so a device is never opened), then `fstat` on
    what was opened, non-blocking (a path swapped for a pipe in between cannot make the
    open wait).  Raises NotRegular, TooLarge, or the OSError of stat/open/read."""
    _check(os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        _check(st.st_mode)
        if st.st_size > limit:
            raise TooLarge(st.st_size, limit)
        data = f.read(limit + 1)
    if len(data) > limit:  # grew since fstat
        raise TooLarge(len(data), limit)
    return data
