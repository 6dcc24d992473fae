"""(a) rotator: one rotation through the library (armed before the reset), in this process or a fresh one."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import _latent
from benchmarks._services import AWS_ENV
from benchmarks.window.cases import HOOK_ENV, VAULT_ENV, Setup
from benchmarks.window.child import Child, WindowCpu


def progress_printer() -> Any:
    """The CLI's live progress lines (rich), rendered into memory instead of a terminal:
    `rotator rotate` prints one per step and target on the event loop, so they count."""
    import io

    from rich.console import Console

    from rotator.render import ProgressPrinter

    return ProgressPrinter(Console(file=io.StringIO(), force_terminal=True, width=120, highlight=False))


async def _rotator_once(setup: Setup, journal: Any, s1: Child, s2: Child, wait: float = 0.0) -> dict[str, Any]:
    from rotator import pipeline
    from rotator.pipeline import arm
    from rotator.pipeline.session import ArmedSession
    from rotator.pipeline.state import RotationState
    from rotator.plan import parse_plan
    from rotator.secret import Secret

    plan = parse_plan(setup.plan_data, Path(f"bench-{setup.case.name}.toml"))
    rot = RotationState(plan, journal, reason="benchmark", operator="benchmark", progress_fn=progress_printer())
    cpu = WindowCpu(s1, s2)
    # long-wait: through the armed session `rotator rotate` and the service use, whose
    # keeper keeps the connections warm while the operator is away (both arms of the case).
    session = ArmedSession(rot) if setup.case.kind == "long-wait" else None
    try:
        t_arm = time.perf_counter()
        armed = await (session.arm() if session else arm.run(rot))
        arm_s = time.perf_counter() - t_arm
        if not armed.ok:
            bad = armed.problems()
            raise RuntimeError(f"arm failed ({len(bad)} targets): " + "; ".join(bad[:5]))
        if wait:
            await asyncio.sleep(wait)  # the operator finds the app in the dashboard
        s2.call("collect")
        key = s1.call("reset", setup.app)  # "Reset app key": the old key is dead from here
        cpu.start()
        if session:
            attempt = await session.hand(key)
            report = attempt.report
            t_key = rot.key_received
            assert t_key is not None and report is not None
        else:
            rot.key_arrived()
            t_key = rot.key_received
            assert t_key is not None
            report = await pipeline.rotate(rot, Secret(key))
        returned = time.perf_counter() - t_key
        used = cpu.stop()
    finally:
        await (session.release() if session else arm.disarm(rot))
    if report.state != "done":
        bad = [f"{t.name}: {t.status} {t.detail}" for t in report.targets if t.status != "ok"]
        raise RuntimeError(f"rotation {report.state}: {report.message}; {bad[:5]}")
    arrivals = [a for a in s1.call("arrivals", setup.app) if a >= t_key]
    reopened = {**s1.call("accepted", t_key), **s2.call("accepted", t_key)}
    farm = s2.call("collect")
    confirmed = [c for c in farm["confirmed"] if c is not None]
    if len(confirmed) != setup.case.consumers:
        raise RuntimeError(f"{len(confirmed)} of {setup.case.consumers} consumers confirmed")
    slowest = max(report.targets, key=lambda t: t.finished or 0.0)
    return {
        "window": report.window,
        "returned": returned,
        "arm": arm_s,
        "first_probe_byte": (min(arrivals) - t_key) if arrivals else None,
        "server_last_confirm": (max(confirmed) - t_key) if confirmed else None,
        "steps": dict(report.steps),
        "slowest_target": slowest.name,
        "connections_opened_after_key": reopened,
        "cpu": used,
    }


def rotator_once(setup: Setup, journal: Any, s1: Child, s2: Child, wait: float = 0.0) -> dict[str, Any]:
    return asyncio.run(_rotator_once(setup, journal, s1, s2, wait))


def cold_main(conn: Any, plan_data: dict[str, Any], env: dict[str, str], env_latency: float, db_url: str) -> None:
    """A fresh interpreter: arm, wait for the key, rotate once, through the armed session
    `rotator rotate` and the service use (the paste cleaned there too).  Reports the
    window and every module first imported after the key arrived (import work on the
    critical path)."""
    os.environ.update(env)
    _latent.register()
    _latent.LatentEnvFile.latency = env_latency
    from rotator.journal import Journal
    from rotator.pipeline.session import ArmedSession
    from rotator.pipeline.state import RotationState
    from rotator.plan import parse_plan

    async def go() -> dict[str, Any]:
        journal = Journal(db_url)
        rot = RotationState(
            parse_plan(plan_data, Path("bench-cold.toml")),
            journal,
            reason="benchmark",
            operator="benchmark",
            progress_fn=progress_printer(),
        )
        session = ArmedSession(rot)
        try:
            await session.arm()
            conn.send("armed")
            key = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            before = set(sys.modules)
            attempt = await session.hand(key)
            imported = sorted(set(sys.modules) - before)
        finally:
            await session.release()
            journal.close()
        report = attempt.report
        assert report is not None
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        return {
            "window": report.window,
            "t_key": rot.key_received,
            "state": report.state,
            "imported": imported,
            "peak_rss_mb": rss,
        }

    try:
        conn.send(asyncio.run(go()))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        conn.send(RuntimeError(f"cold run: {type(exc).__name__}: {exc}"))


def cold_once(setup: Setup, s1: Child, s2: Child, db_url: str) -> dict[str, Any]:
    env = {k: os.environ[k] for k in (HOOK_ENV, VAULT_ENV, *AWS_ENV)}
    child = Child(cold_main, setup.plan_data, env, setup.lat.env, db_url)  # ready once armed
    try:
        s2.call("collect")
        key = s1.call("reset")
        child.conn.send(key)
        res = child._recv(120)
    finally:
        child.proc.join(10)
    if res["state"] != "done":
        raise RuntimeError(f"cold rotation {res['state']}")
    arrivals = [a for a in s1.call("arrivals") if a >= res["t_key"]]
    s2.call("collect")
    res["first_probe_byte"] = (min(arrivals) - res["t_key"]) if arrivals else None
    return res


async def _plans_together(setups: list[Setup], journal: Any, s1: Child, s2: Child) -> list[float]:
    from rotator import pipeline
    from rotator.pipeline import arm
    from rotator.pipeline.state import RotationState
    from rotator.plan import parse_plan
    from rotator.secret import Secret

    rots = [
        RotationState(
            parse_plan(st.plan_data, Path(f"bench-{st.case.name}-{st.app}.toml")),
            journal,
            reason="benchmark",
            operator="benchmark",
            progress_fn=progress_printer(),
        )
        for st in setups
    ]
    try:
        armed = await asyncio.gather(*(arm.run(r) for r in rots))
        bad = [p for a in armed for p in a.problems()]
        if bad:
            raise RuntimeError("arm failed: " + "; ".join(bad[:5]))
        s2.call("collect")
        keys = [s1.call("reset", st.app) for st in setups]  # several apps' keys reset at once

        async def go(rot: Any, key: str) -> Any:
            rot.key_arrived()
            return await pipeline.rotate(rot, Secret(key))

        reports = await asyncio.gather(*(go(r, k) for r, k in zip(rots, keys, strict=True)))
    finally:
        for r in rots:
            await arm.disarm(r)
    s2.call("collect")
    for rep in reports:
        if rep.state != "done":
            raise RuntimeError(f"rotation {rep.state}: {rep.message}")
    return [rep.window for rep in reports]
