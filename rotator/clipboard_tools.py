"""The platforms' clipboard tools for `rotator.clipboard`: which one this session has, and
their command lines (argv without any value: values only ever go through pipes)."""

from __future__ import annotations

import enum
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass


class ClipboardUnavailable(Exception):
    """No usable clipboard tool: the message is one line naming what to install or fix."""


class Mode(enum.StrEnum):
    NOTIFY = "notify"  # the tool tells us when the clipboard changes
    POLL = "poll"  # we read it every POLL_INTERVAL


@dataclass(frozen=True)
class Tool:
    """One platform's clipboard commands (argv without any value: values go through pipes).

    `mode` is what the tool itself offers; on X11 the source adds XFIXES notifications."""

    name: str
    mode: Mode
    read: tuple[str, ...]
    clear: tuple[str, ...]
    watch: tuple[str, ...] = ()
    install: str = ""


WL_PASTE = Tool(
    "wl-paste",
    Mode.NOTIFY,
    read=("wl-paste", "--no-newline", "--type", "text"),
    clear=("wl-copy", "--clear"),
    watch=("wl-paste", "--type", "text", "--watch", "echo"),
    install="wl-clipboard",
)
XCLIP = Tool(
    "xclip",
    Mode.POLL,
    read=("xclip", "-o", "-selection", "clipboard"),
    clear=("xclip", "-i", "-selection", "clipboard", "/dev/null"),
    install="xclip",
)
XSEL = Tool(
    "xsel",
    Mode.POLL,
    read=("xsel", "--clipboard", "--output"),
    clear=("xsel", "--clipboard", "--clear"),
    install="xsel",
)
PBPASTE = Tool("pbpaste", Mode.POLL, read=("pbpaste",), clear=("pbcopy",), install="pbpaste (part of macOS)")


def detect(env: Mapping[str, str] | None = None, platform: str | None = None) -> Tool:
    """The clipboard tool for this session, chosen by WAYLAND_DISPLAY / DISPLAY / the platform.

    Raises ClipboardUnavailable with one line naming what to install.
    """
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    path = env.get("PATH", os.defpath)

    def have(tool: Tool) -> bool:
        return all(shutil.which(cmd, path=path) for cmd in {tool.read[0], tool.clear[0], *tool.watch[:1]})

    if platform == "darwin":
        if have(PBPASTE):
            return PBPASTE
        raise ClipboardUnavailable("pbpaste and pbcopy are not on PATH (they come with macOS; check PATH)")
    if platform.startswith("win"):
        raise ClipboardUnavailable("reading the clipboard on Windows is not supported yet; paste the key instead")
    if env.get("WAYLAND_DISPLAY"):
        if have(WL_PASTE):
            return WL_PASTE
        if not env.get("DISPLAY"):  # XWayland's clipboard is the fallback when DISPLAY is set too
            raise ClipboardUnavailable("no Wayland clipboard tool: install wl-clipboard (apt-get install wl-clipboard)")
    if env.get("DISPLAY"):
        for tool in (XCLIP, XSEL):
            if have(tool):
                return tool
        raise ClipboardUnavailable("no X11 clipboard tool: install xclip (apt-get install xclip) or xsel")
    raise ClipboardUnavailable(
        "no graphical session (neither WAYLAND_DISPLAY nor DISPLAY is set): the clipboard cannot be read here;"
        " paste the key instead"
    )
