"""Reset detection against the Adjutor stand-in (a real loopback server, real httpx):
the reset is seen within the interval, a priced probe stops the watch with a
warning, a 5xx is not a reset, and the plan's `[probe] watch_interval` is checked."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from rotator.plan import PlanError, ProbeSpec, load_plan
from rotator.probe import Prober
from rotator.reset_watch import ResetWatch, WatchOutcome, WatchResult
from rotator.secret import Secret
from rotator.testing.adjutor import AdjutorStandIn, new_key
from tests.test_plan import GOOD, _write

INTERVAL = 0.2


def spec(standin: AdjutorStandIn, **kw: object) -> ProbeSpec:
    return ProbeSpec.model_validate(
        {"url": standin.models_url, "headers": {"Authorization": "Bearer {key}"}, "watch_interval": INTERVAL, **kw}
    )


async def until(what: str, cond: Callable[[], object], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def watch_during(standin: AdjutorStandIn, key: str, act: Callable[[ResetWatch], object], **kw: object) -> WatchResult:
    """Start the watch, let `act` (a coroutine function) do the operator's part, return the watch's result."""

    async def go() -> WatchResult:
        async with httpx.AsyncClient() as client:
            watch = ResetWatch(Prober(spec(standin, **kw), client), Secret(key))
            task = asyncio.create_task(watch.run())
            await act(watch)  # type: ignore[misc]
            return await asyncio.wait_for(task, 20)

    return asyncio.run(go())


def test_the_reset_is_detected_within_the_interval(standin: AdjutorStandIn) -> None:
    async def reset(watch: ResetWatch) -> None:
        await until("the watch at work", lambda: standin.authorized >= 2)
        standin.reset()

    result = watch_during(standin, standin.current_key, reset)
    assert result.outcome is WatchOutcome.RESET and result.reset is not None
    r = result.reset
    assert standin.last_reset_at is not None
    assert r.after_wall is not None and r.after_wall <= standin.last_reset_at <= r.wall
    assert r.status == 401 and not r.before_watching
    # one interval plus a loopback round trip, with room for a busy 2-core box
    assert r.uncertainty is not None and r.uncertainty < INTERVAL + 0.5
    assert r.wall - standin.last_reset_at < INTERVAL + 0.5
    assert result.probes == standin.requests and result.unavailable == 0
    assert 0 <= r.ago() < 20


def test_a_key_refused_at_the_first_probe_was_reset_before_watching(standin: AdjutorStandIn) -> None:
    async def nothing(watch: ResetWatch) -> None:
        pass

    result = watch_during(standin, new_key(), nothing)
    assert result.outcome is WatchOutcome.RESET and result.reset is not None
    assert result.reset.before_watching and result.reset.uncertainty is None
    assert result.probes == 1


def test_a_probe_that_costs_money_stops_the_watch_with_a_warning() -> None:
    with AdjutorStandIn(cost=0.5, balance=10.0) as priced:

        async def nothing(watch: ResetWatch) -> None:
            pass

        result = watch_during(priced, priced.current_key, nothing)
        assert result.outcome is WatchOutcome.COSTS and result.reset is None
        assert (
            result.warning is not None
            and "costs 0.5 a call" in result.warning
            and "watch_interval = 0" in result.warning
        )
        assert result.probes == 1 and priced.requests == 1 and priced.balance == 9.5


def test_an_api_5xx_is_not_a_reset(standin: AdjutorStandIn) -> None:
    async def outage_then_reset(watch: ResetWatch) -> None:
        standin.unavailable = True
        await until("two 503s", lambda: standin.unavailable_served >= 2)
        standin.unavailable = False
        await until("the key passing again", lambda: standin.authorized >= 1)
        standin.reset()

    result = watch_during(standin, standin.current_key, outage_then_reset)
    assert result.outcome is WatchOutcome.RESET and result.reset is not None
    assert result.unavailable >= 2 and standin.last_reset_at is not None
    assert result.reset.after_wall is not None and result.reset.after_wall <= standin.last_reset_at


def test_stop_ends_the_watch(standin: AdjutorStandIn) -> None:
    async def stop(watch: ResetWatch) -> None:
        # a second request means the first probe was answered (stop() abandons one in flight)
        await until("the watch at work", lambda: standin.authorized >= 2)
        watch.stop()

    result = watch_during(standin, standin.current_key, stop)
    assert result.outcome is WatchOutcome.STOPPED and result.reset is None and result.probes >= 1
    # the old key still worked: the session says "the reset did not happen, or another app was reset"
    assert result.last_ok_wall is not None and result.last_ok_wall <= time.time()


def test_the_watch_on_its_own_client_leaves_the_probes_connection_alone(standin: AdjutorStandIn) -> None:
    async def go() -> tuple[WatchResult, int]:
        async with httpx.AsyncClient() as client, httpx.AsyncClient() as own:
            prober = Prober(spec(standin), client)
            await prober.warm()
            watch = ResetWatch(prober, Secret(standin.current_key), client=own)
            task = asyncio.create_task(watch.run())
            await until("the watch at work", lambda: standin.authorized >= 2)
            new = Secret(standin.reset())
            watch.stop()
            key_probe = await prober.probe(new)
            result = await asyncio.wait_for(task, 20)
            assert key_probe.outcome.value == "accepted"
            pool = client._transport._pool.connections  # type: ignore[attr-defined]
            return result, len(pool)

    result, connections = asyncio.run(go())
    assert result.outcome in (WatchOutcome.STOPPED, WatchOutcome.RESET)
    assert connections == 1  # the key's probe used the connection warmed at arm


def test_stop_abandons_a_probe_in_flight() -> None:
    # An API that accepts the connection and never answers: stop must not wait for it.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        accepted: list[socket.socket] = []
        threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v2/decisioning/models"

        async def go() -> WatchResult:
            async with httpx.AsyncClient() as client:
                probe = ProbeSpec(url=url, headers={"Authorization": "Bearer {key}"}, timeout=60)
                watch = ResetWatch(Prober(probe, client), Secret(new_key()))
                task = asyncio.create_task(watch.run())
                await until("the probe in flight", lambda: accepted)
                watch.stop()
                return await asyncio.wait_for(task, 5)

        result = asyncio.run(go())
        for conn in accepted:
            conn.close()
    assert result.outcome is WatchOutcome.STOPPED and result.probes == 0


@pytest.mark.parametrize("kw", [{"watch_interval": 0}, {"enabled": False}])
def test_off(standin: AdjutorStandIn, kw: dict[str, object]) -> None:
    async def nothing(watch: ResetWatch) -> None:
        pass

    result = watch_during(standin, standin.current_key, nothing, **kw)
    assert result.outcome is WatchOutcome.OFF and result.probes == 0 and standin.requests == 0


def test_watch_interval_in_the_plan(tmp_path: Path) -> None:
    assert load_plan(_write(tmp_path, GOOD)).probe.watch_interval == 0.5
    plan = load_plan(_write(tmp_path, GOOD.replace('preset = "adjutor"', 'preset = "adjutor"\nwatch_interval = 0')))
    assert plan.probe.watch_interval == 0
    for bad in ("0.05", "-1", "61", "nan"):
        with pytest.raises(PlanError) as info:
            load_plan(
                _write(tmp_path, GOOD.replace('preset = "adjutor"', f'preset = "adjutor"\nwatch_interval = {bad}'))
            )
        assert info.value.problems == [
            f"{tmp_path / 'plan.toml'}: probe.watch_interval: 0 (off) or between 0.1 and 60 seconds"
        ]
