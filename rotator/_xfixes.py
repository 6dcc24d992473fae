"""X11's native clipboard change notification (the XFIXES extension), for `rotator.clipboard`.

X11 has no command-line tool that waits for a clipboard change, but the X server
tells any client that asks (``XFixesSelectSelectionInput``) when the CLIPBOARD
selection gets a new owner, which is what every copy does (Chromium, GTK and Qt
take the selection again on each copy).  python-xlib (pure Python, the
``clipboard`` extra) speaks that on the X connection; the events arrive on the
event loop through `add_reader`, so waiting costs nothing.  The value itself is
still read by xclip or xsel through a pipe: this connection never asks for it.

Without python-xlib, or on a server without XFIXES, `open_watch` returns None and
the clipboard source polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class XFixesWatch:
    """Set `changed` whenever the CLIPBOARD selection changes owner."""

    def __init__(self, display: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._display = display
        self._loop = loop
        self.changed = asyncio.Event()
        self.broken = False
        loop.add_reader(display.fileno(), self._drain)

    def _drain(self) -> None:
        try:
            for _ in range(self._display.pending_events()):
                self._display.next_event()  # only selection events were asked for: each is a change
        except Exception:  # noqa: BLE001 - the X server went away: stop listening, let the reads say so
            self.broken = True
            self._loop.remove_reader(self._display.fileno())
        self.changed.set()

    async def wait(self, timeout: float | None) -> bool:
        """True at the next change; False after `timeout` without one (the caller reads anyway: a
        safety net for an owner that changes its data without taking the selection again).
        None: wait for the change only."""
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except TimeoutError:
            return False
        self.changed.clear()
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._display.fileno())
        with contextlib.suppress(Exception):
            self._display.close()


def open_watch(display_name: str) -> XFixesWatch | None:
    """A watch on `display_name`'s CLIPBOARD, or None when python-xlib or XFIXES is missing."""
    try:
        from Xlib import display as xdisplay
        from Xlib.ext import xfixes
    except ImportError:
        return None
    try:
        display = xdisplay.Display(display_name)
    except Exception:  # noqa: BLE001 - Xlib raises its own error types for a display it cannot open
        return None
    try:
        if not display.has_extension("XFIXES"):
            display.close()
            return None
        display.xfixes_query_version()
        clipboard = display.intern_atom("CLIPBOARD")
        display.xfixes_select_selection_input(
            display.screen().root, clipboard, xfixes.XFixesSetSelectionOwnerNotifyMask
        )
        display.flush()
        return XFixesWatch(display, asyncio.get_running_loop())
    except Exception:  # noqa: BLE001 - any protocol error: fall back to polling
        with contextlib.suppress(Exception):
            display.close()
        return None
