"""Fixtures that own real processes and servers, and stop them afterwards."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from rotator.testing.adjutor import AdjutorStandIn
from tests import tiers
from tests.costs import pytest_runtest_protocol
from tests.tiers import (
    pytest_collection_modifyitems,
    pytest_runtest_call,
    pytest_runtest_setup,
    pytest_runtest_teardown,
)

__all__ = [  # the tiers and their guard (tests/tiers.py); ROTATOR_TEST_COSTS (tests/costs.py)
    "pytest_collection_modifyitems",
    "pytest_runtest_call",
    "pytest_runtest_protocol",
    "pytest_runtest_setup",
    "pytest_runtest_teardown",
]

ROOT = Path(__file__).resolve().parent.parent

# Hypothesis's per-example deadline (200 ms) is a timing check: on a busy machine one slow
# example fails a property that holds.  Properties are checked here; speed is measured in
# benchmarks/.  A test's own @settings(deadline=...) still applies.
settings.register_profile("rotator", deadline=None)
settings.load_profile("rotator")


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the processes the tests start, however the run was launched.

    A shell without job control starts a background job (`./.ci/run &`, some CI
    runners) with SIGINT ignored, and an ignored signal stays ignored across exec:
    every CLI the tests start would then shrug off the Ctrl-C they send it (five
    tests failed that way, none of them rotator's fault).  A handler, unlike
    SIG_IGN, is reset to the default at exec, so the children get Python's usual
    KeyboardInterrupt again.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    tiers.configure(config)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """`pytest -m unit` (the fast loop) and `-m lint` run in this process: starting xdist's
    workers (pyproject.toml's addopts) would cost more than their tests take."""
    if tiers.in_process_only(config) and getattr(config.option, "numprocesses", None):
        config.option.numprocesses = 0
        config.option.dist = "no"


WORKERS_PER_CORE = 2


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` (pyproject.toml's addopts): two workers per core.  A third of the suite's
    time is waiting (an operator's pause, a timeout the CLI must hit, a server's start):
    `python -m tests.costs` measured 521 s of CPU in 792 s of tests on 2 cores.  A second
    worker per core runs while the first waits.  PYTEST_XDIST_AUTO_NUM_WORKERS still wins."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return WORKERS_PER_CORE * len(os.sched_getaffinity(0))


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
