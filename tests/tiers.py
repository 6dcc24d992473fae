"""The test tiers, given to every test at collection, and the guard that keeps `unit` honest.

``unit``     in-process only: no subprocess, no server (no socket bound), no browser;
``process``  starts a subprocess or a real server (loopback only);
``browser``  drives Chromium through Playwright (and starts servers too);
``lint``     runs the code's own checks (ruff, mypy, hadolint).

A test gets its tier, first match wins, from: a tier marker written on the test itself;
the per-test table below; what its code calls (Playwright: ``browser``); the fixtures it
uses (a server or a subprocess: ``process``); the per-module table.  A test in a module
the tables do not name is ``process``: the safe default, so a new test is never put in
the fast loop by accident, and never fails the guard there.

The guard: while a ``unit`` test runs (its fixtures, of any scope, included), starting a process (subprocess,
multiprocessing, fork, posix_spawn) or binding a socket fails it, with the line to fix.
``ROTATOR_TEST_RECORD=FILE`` instead records, for every test, what it started (one JSON
line per test that started anything): how the tables below were made.
"""

from __future__ import annotations

import json
import multiprocessing.util
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

TIERS = ("unit", "process", "browser", "lint")

# Fixtures that start a server or a subprocess (conftest.py, fixtures_backends.py, and the
# per-module ones whose name says so).  A test using one is `process` wherever it lives.
PROCESS_FIXTURES = frozenset(
    {
        "standin",
        "rotator_cmd",
        "child_env",
        "vault",
        "moto_server",
        "aws_env",
        "secretsmanager",
        "xserver",
        "kube",
        "pg",
        "db_url",
        "gap",  # test_consumer_hold: a module's stand-in
        "tls_files",  # test_transport: openssl, once per module
    }
)

# Names a test's own code uses to drive a browser (tests/test_service_page.py's helpers).
BROWSER_NAMES = frozenset({"_need_browser", "_async_playwright", "sync_playwright", "async_playwright", "_browser"})

# Modules whose every test is one tier (tests/<name>.py, or third_party_plugin/<name>.py).
MODULES: dict[str, str] = {
    "test_quality": "lint",
    "test_benchmark_window": "unit",
}

# Tests whose module is mixed: (module, test function) -> tier.  Parametrized tests by
# their function's name.
TESTS: dict[tuple[str, str], str] = {
    ("test_packaging", "test_dockerfile_passes_hadolint_without_a_single_finding"): "lint",
}


def tier_of(item: pytest.Item) -> str:
    """The tier `item` belongs to (see the module's docstring for the order)."""
    for name in TIERS:
        if item.get_closest_marker(name) is not None:
            return name
    module = item.module.__name__.rsplit(".", 1)[-1] if isinstance(item, pytest.Function) else ""
    function = getattr(item, "originalname", item.name)
    if (module, function) in TESTS:
        return TESTS[module, function]
    code = getattr(getattr(item, "function", None), "__code__", None)
    if code is not None and BROWSER_NAMES & set(code.co_names):
        return "browser"
    if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
        return "process"
    return MODULES.get(module, "process")


def configure(config: pytest.Config) -> None:
    """Installs the guard (called from conftest.pytest_configure; the markers are in pyproject.toml)."""
    _Guard.install()


pytest_configure = configure  # as a plugin of its own: `pytest -p tests.tiers` (its test does that)


def in_process_only(config: pytest.Config) -> bool:
    """Is this run `-m unit` or `-m lint` alone: few, short tests, quicker without xdist's workers?"""
    return (config.option.markexpr or "").strip() in ("unit", "lint")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = tier_of(item)
        if item.get_closest_marker(name) is None:
            item.add_marker(getattr(pytest.mark, name))


# ---------------------------------------------------------------- the guard


class _Guard:
    """Wraps the calls that start a process or bind a socket; reports them to the running test."""

    installed = False
    current: str | None = None  # the running test's node id
    unit = False  # is it a unit test
    seen: list[str] = []
    lock = threading.Lock()
    record = os.environ.get("ROTATOR_TEST_RECORD")

    @classmethod
    def note(cls, what: str) -> None:
        if cls.current is None:
            return
        with cls.lock:
            cls.seen.append(what)

    @classmethod
    def wrap(cls, owner: Any, attr: str, what: Callable[..., str]) -> None:
        original = getattr(owner, attr)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            cls.note(what(*args, **kwargs))
            return original(*args, **kwargs)

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(owner, attr, wrapper)

    @classmethod
    def install(cls) -> None:
        if cls.installed:
            return
        cls.installed = True

        def argv(a: Any) -> str:
            return " ".join(map(str, a[:2])) if isinstance(a, list | tuple) else str(a)[:60]

        cls.wrap(subprocess.Popen, "_execute_child", lambda self, args, *a, **k: f"subprocess: {argv(args)}")
        cls.wrap(socket.socket, "bind", lambda self, address, *a, **k: f"socket bound: {address!r}")
        cls.wrap(os, "fork", lambda *a, **k: "os.fork()")
        cls.wrap(os, "posix_spawn", lambda path, *a, **k: f"posix_spawn: {path}")
        cls.wrap(os, "posix_spawnp", lambda path, *a, **k: f"posix_spawnp: {path}")
        cls.wrap(multiprocessing.util, "spawnv_passfds", lambda path, args, *a, **k: f"multiprocessing: {argv(args)}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Watch the test from its first fixture on (a module or session fixture it starts counts too)."""
    with _Guard.lock:
        _Guard.seen = []
    _Guard.current = item.nodeid
    _Guard.unit = item.get_closest_marker("unit") is not None
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A `unit` test that started something fails here, after its body (a failure of its own first)."""
    result = yield
    if _Guard.unit and not _Guard.record and (seen := sorted(set(_Guard.seen))):
        pytest.fail(
            f"a `unit` test started {len(seen)} thing(s): {'; '.join(seen[:3])}. Mark it `process` "
            "(tests/tiers.py's tables, or @pytest.mark.process), or keep it in-process.",
            pytrace=False,
        )
    return result


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """Stop watching; with ROTATOR_TEST_RECORD, write down what the test started."""
    try:
        return (yield)
    finally:
        _Guard.current = None
        seen = sorted(set(_Guard.seen))
        if _Guard.record and seen:
            with open(_Guard.record, "a", encoding="utf-8") as out:
                out.write(json.dumps({"test": item.nodeid, "started": seen}) + "\n")
