"""Ctrl-C while the `rotator` command's modules load: one line and exit 130, not a traceback.

Imported by `rotator.cli` before its commands (which import click, rich and the
rest).  Nothing has started then, so nothing needs saying but that.  Only when this
process is the `rotator` command (a program importing rotator.cli keeps its own
handler); `rotator.cli.main` puts Python's handler back before the command runs,
so commands catch KeyboardInterrupt as before.  A Ctrl-C during the interpreter's
own start-up (its `site` module, before any rotator code) is Python's to report.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

INTERRUPTED_LINE = "rotator: interrupted; nothing was written"


def _interrupted_while_starting(signum: int, frame: FrameType | None) -> None:
    os.write(2, (INTERRUPTED_LINE + "\n").encode())
    os._exit(130)


def default_sigint() -> None:
    """Python's own SIGINT handler again (KeyboardInterrupt), if the start-up one is set."""
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)


if os.path.basename(sys.argv[0]) in ("rotator", "__main__.py") and (
    signal.getsignal(signal.SIGINT) is signal.default_int_handler
):
    signal.signal(signal.SIGINT, _interrupted_while_starting)
