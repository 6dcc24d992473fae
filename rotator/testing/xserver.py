"""A real X server (Debian's Xvfb) for the clipboard's tests and benchmark, and
xclip to put values on its clipboard and read them back.

Xvfb picks a free display itself (``-displayfd``) and writes its number once it
accepts clients, so there is no sleep and no race on display numbers between
test sessions.  Needs ``apt-get install xvfb xclip``.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def missing() -> list[str]:
    """The commands this module needs that are not on PATH."""
    return [c for c in ("Xvfb", "xclip") if shutil.which(c) is None]


@dataclass
class XServer:
    display: str
    proc: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "DISPLAY")}
        return {**env, "DISPLAY": self.display}

    def copy(self, value: str, timeout: float = 30.0) -> None:
        """Put `value` on the CLIPBOARD selection through xclip's stdin (never its argv), and
        return once the clipboard holds it, as a copy in an app does.

        xclip exits when it forks, and its child takes the selection a moment later: on a busy
        machine, a read right after the exit still got the previous value (a clear of the key
        just copied found the clipboard unchanged, and left it).  So it waits until the
        clipboard no longer holds what it held before: by then it may hold something newer
        still (a watcher took the key and a consumer copied over it), which is no reason to wait."""
        before = self.paste()
        # xclip stays in the background owning the selection; it must not hold our pipes.
        subprocess.run(
            ["xclip", "-i", "-selection", "clipboard"],
            input=value.encode(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
            check=True,
            timeout=10,
        )
        until = time.monotonic() + timeout
        while before != value and self.paste() == before:
            if time.monotonic() > until:
                raise RuntimeError(f"xclip's copy did not reach the clipboard within {timeout:.0f} s")
            time.sleep(0.01)

    def paste(self) -> str | None:
        """What the clipboard holds now (None: nothing)."""
        r = subprocess.run(
            ["xclip", "-o", "-selection", "clipboard"], capture_output=True, env=self.env, timeout=10, check=False
        )
        return r.stdout.decode() if r.returncode == 0 else None


@contextmanager
def xvfb() -> Iterator[XServer]:
    if absent := missing():
        raise RuntimeError(f"{', '.join(absent)} missing: apt-get install -y xvfb xclip")
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-nolisten", "tcp", "-screen", "0", "1280x800x24"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        number = b""
        until = time.monotonic() + 30
        while not number.endswith(b"\n"):
            ready, _, _ = select.select([read], [], [], max(0.0, until - time.monotonic()))
            chunk = os.read(read, 16) if ready else b""
            if not chunk:
                raise RuntimeError(f"Xvfb did not start (exit code {proc.poll()})")
            number += chunk
        yield XServer(f":{number.decode().strip()}", proc)
    finally:
        os.close(read)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
