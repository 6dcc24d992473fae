"""`rotator proxy PLAN`: run the plan's API proxy until SIGTERM or Ctrl-C.

The key at start comes from the plan's primary (read once, as `sync` reads it);
after that only from the key channel (rotator's `proxy` consumer) or, if
``refresh_from_primary`` is set, from the primary again while the key is dead.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable

import click

from rotator.errors import CommandError, PlanError, PluginError
from rotator.exitcodes import Exit


@click.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option("--listen", help="HOST:PORT or unix:/path, instead of the plan's [proxy] listen.")
def proxy(plan_path: str, listen: str | None) -> int:
    """Serve the API on a local address with the plan's key added; hold and replay across a reset."""
    from rotator.plan import load_plan
    from rotator.proxy.config import ProxySpec

    plan = load_plan(plan_path)
    spec = plan.proxy or ProxySpec()
    if listen is not None:
        try:
            spec = ProxySpec.model_validate({**spec.model_dump(exclude_unset=True), "listen": listen})
        except ValueError as exc:
            raise PlanError([f"--listen: {_first_error(exc)}"]) from None
    from rotator.proxy.runtime import upstream_of

    upstream = upstream_of(plan, spec)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve(plan, spec, upstream))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where installed (the ``proxy`` extra): measured in benchmarks/proxy.py."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors(include_url=False, include_input=False)[0]
        return str(first["msg"]).removeprefix("Value error, ")
    return str(exc)


async def _serve(plan: object, spec: object, upstream_url: str) -> int:
    from rotator.logs import get_logger
    from rotator.plan import Plan
    from rotator.proxy.config import ProxySpec
    from rotator.proxy.runtime import ProxyRuntime

    assert isinstance(plan, Plan) and isinstance(spec, ProxySpec)
    log = get_logger("rotator.proxy")
    runtime = ProxyRuntime(plan, spec, upstream_url, log=log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
    except OSError as exc:
        await runtime.stop()
        raise CommandError(f"cannot listen: {exc.strerror or exc}", Exit.PROXY_LISTEN) from None
    except PluginError as exc:  # a token file or variable that is missing
        await runtime.stop()
        raise CommandError(f"proxy: {exc}", Exit.PLAN_INVALID) from None
    fp = runtime.engine.fingerprint or "no key yet"
    where = f", key channel on {spec.channel}" if spec.channel else ""
    print(
        f"rotator proxy: listening on {spec.listen}, forwarding to {upstream_url} with key {fp}{where}",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await runtime.stop()
    return int(Exit.DONE)
