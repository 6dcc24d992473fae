"""Retries under one deadline, write tokens, and the wording of a failure.

Every target's attempts share the rotation's deadline (`plan.rotation.deadline`):
a slow target is retried only while there is time left, never past it.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from rotator.errors import PluginError
from rotator.report import TargetResult
from rotator.secret import scrub

T = TypeVar("T")
FIRST_WAIT = 0.05  # seconds, at most, before the second attempt; doubling up to MAX_WAIT
MAX_WAIT = 2.0
TOKEN_NAMESPACE = uuid.UUID("5b0d1f0e-4c1a-4f7e-9d59-7a1f3c2b9e10")


def write_token(rotation_id: str, backend: str) -> str:
    """Stable per rotation and backend: a retried write is the same write."""
    return str(uuid.uuid5(TOKEN_NAMESPACE, f"{rotation_id}/{backend}"))


def retryable(exc: BaseException) -> bool:
    if isinstance(exc, PluginError):
        return exc.retryable
    return isinstance(exc, TimeoutError | OSError)


def reason(exc: BaseException) -> str:
    """One secret-free line saying why a target failed."""
    if isinstance(exc, PluginError):
        return scrub(str(exc))  # a plugin may echo its input: no live secret gets through
    if isinstance(exc, TimeoutError):
        return "timed out"
    # Never echo an arbitrary library exception's text: it may hold a request body.
    return f"{type(exc).__name__} (details withheld: may hold secret material)"


def unwrap(exc: BaseException) -> BaseException:
    """The last attempt's exception behind tenacity's RetryError."""
    if isinstance(exc, RetryError) and exc.last_attempt.failed:
        inner = exc.last_attempt.exception()
        if inner is not None:
            return inner
    return exc


async def attempt(
    target: TargetResult, timeout: float, retries: int, deadline: float, fn: Callable[[], Awaitable[T]]
) -> T:
    """`fn()` up to `retries + 1` times, each within `timeout` and all before `deadline`
    (loop time); counts the attempts on `target`.

    The first attempt runs without tenacity: building its retry machinery for every
    target (and its coroutine checks through `inspect`) was 5% of a 200-target
    fan-out's CPU, for attempts that almost always succeed the first time."""
    loop = asyncio.get_running_loop()
    target.attempts = 1
    try:
        return await _once(loop, deadline, timeout, fn)
    except Exception as exc:
        if not retries or not retryable(exc) or deadline - loop.time() <= 0:
            raise
    await asyncio.sleep(random.uniform(0, FIRST_WAIT))  # what wait_random_exponential waits after attempt 1
    budget = max(deadline - loop.time(), 0.001)
    async for one in AsyncRetrying(
        stop=stop_after_attempt(retries) | stop_after_delay(budget),
        # attempt n here is attempt n + 1 of the target: the same backoff as one loop from 1
        wait=wait_random_exponential(multiplier=2 * FIRST_WAIT, max=MAX_WAIT),
        retry=retry_if_exception(retryable),
        reraise=True,
    ):
        with one:
            target.attempts = one.retry_state.attempt_number + 1
            return await _once(loop, deadline, timeout, fn)
    raise AssertionError("unreachable")


async def _once(loop: asyncio.AbstractEventLoop, deadline: float, timeout: float, fn: Callable[[], Awaitable[T]]) -> T:
    remaining = deadline - loop.time()
    if remaining <= 0:
        raise TimeoutError
    async with asyncio.timeout(min(timeout, remaining)):  # no extra task, unlike wait_for on 3.11
        return await fn()
