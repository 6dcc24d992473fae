"""Fixtures that own real processes and servers, and stop them afterwards."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.testing.adjutor import AdjutorStandIn

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the real ~/.local/state/rotator journal."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("ROTATOR_DATA_DIR", str(state))
    monkeypatch.delenv("ROTATOR_DB", raising=False)


@pytest.fixture
def standin() -> Iterator[AdjutorStandIn]:
    with AdjutorStandIn() as s:
        yield s


@pytest.fixture
def rotator_cmd() -> list[str]:
    """The CLI as a user runs it (a real subprocess)."""
    return [sys.executable, "-m", "rotator"]


@pytest.fixture
def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}
