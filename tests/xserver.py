"""The X server fixture's helpers: skip locally without xvfb/xclip, fail in CI (CI=true,
where .ci/run installs both)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from rotator.testing.xserver import XServer, missing, xvfb

__all__ = ["XServer", "need", "xserver_fixture"]


def need() -> None:
    if absent := missing():
        msg = f"{', '.join(absent)} missing: apt-get install -y xvfb xclip"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (.ci/run installs them)")
        pytest.skip(msg)


def xserver_fixture() -> Iterator[XServer]:
    need()
    with xvfb() as x:
        yield x
