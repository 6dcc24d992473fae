"""pipeline.attempts.attempt: retries under one deadline, counted on the target."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rotator.errors import PluginError
from rotator.pipeline.attempts import attempt
from rotator.report import TargetResult
from tests.timing import scaled


def _target() -> TargetResult:
    return TargetResult("t", "backend", "test")


def _flaky(failures: list[BaseException], result: str = "written") -> Any:
    async def fn() -> str:
        if failures:
            raise failures.pop(0)
        return result

    return fn


def _run(timeout: float, retries: int, budget: float, fn: Any, target: TargetResult) -> Any:
    async def go() -> Any:
        return await attempt(target, timeout, retries, asyncio.get_running_loop().time() + budget, fn)

    return asyncio.run(go())


def test_first_attempt_succeeds() -> None:
    t = _target()
    assert _run(5, 3, 10, _flaky([]), t) == "written"
    assert t.attempts == 1


def test_retryable_failures_are_retried_and_counted() -> None:
    t = _target()
    fn = _flaky([PluginError("busy", retryable=True), OSError("reset")])
    assert _run(5, 3, 10, fn, t) == "written"
    assert t.attempts == 3


def test_a_refusal_is_not_retried() -> None:
    t = _target()
    with pytest.raises(PluginError, match="forbidden"):
        _run(5, 3, 10, _flaky([PluginError("forbidden", retryable=False)]), t)
    assert t.attempts == 1


def test_retries_run_out_with_the_last_error() -> None:
    t = _target()
    fn = _flaky([PluginError(f"busy {i}", retryable=True) for i in range(5)])
    with pytest.raises(PluginError, match="busy 2"):
        _run(5, 2, 10, fn, t)
    assert t.attempts == 3


def test_each_attempt_is_bounded_by_its_timeout_and_all_by_the_deadline() -> None:
    async def slow() -> str:
        await asyncio.sleep(10)
        return "never"

    async def go(t: TargetResult) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            await attempt(t, 0.05, 20, start + 0.4, slow)
        return loop.time() - start

    t = _target()
    elapsed = asyncio.run(go(t))
    assert 0.35 <= elapsed < scaled(2.0)  # retried while the deadline allowed, never past it
    assert 2 <= t.attempts <= 21
