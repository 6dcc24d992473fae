"""`rotator serve`: scheduler, HTTP API and the web page in one process.

Only click is imported at module level, so `rotator --help` and every other
command stay fast; starlette, uvicorn and apscheduler load when `serve` runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

DEFAULT_PLAN_DIRS = ("/etc/rotator", "./config")
TOKEN_ENV = "ROTATOR_API_TOKEN"  # noqa: S105 - the name of the variable, not a token
MIN_TOKEN_LENGTH = 16


def _fail(message: str, code: int = 2) -> Exception:
    from rotator.errors import CommandError
    from rotator.exitcodes import Exit

    return CommandError(message, Exit(code))


def plan_files(sources: tuple[str, ...]) -> list[Path]:
    """Files named, plus every *.toml in directories named (sorted)."""
    if not sources:
        default = next((d for d in DEFAULT_PLAN_DIRS if Path(d).is_dir()), None)
        if default is None:
            raise _fail(f"no plans: pass --plans DIR_OR_FILE (looked in {' and '.join(DEFAULT_PLAN_DIRS)})")
        sources = (default,)
    files: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            files.extend(sorted(f for f in p.glob("*.toml") if f.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            raise _fail(f"--plans {src}: no such file or directory")
    if not files:
        raise _fail(f"no plan files (*.toml) in {', '.join(sources)}")
    return files


def load_plans(sources: tuple[str, ...]) -> list[Any]:
    """Every plan, or a PlanError listing every problem in every file."""
    from rotator.plan import PlanError, load_plan

    plans, problems = [], []
    seen: dict[str, Path] = {}
    for f in plan_files(sources):
        try:
            plan = load_plan(f)
        except PlanError as exc:
            problems.extend(exc.problems)
            continue
        if plan.name in seen:
            problems.append(f"{f}: secret.name: {plan.name!r} is also the name of {seen[plan.name]}")
            continue
        seen[plan.name] = f
        plans.append(plan)
    if problems:
        raise PlanError(problems)
    return plans


def read_token(token_env: str, token_file: str | None) -> str:
    if token_file:
        try:
            token = Path(token_file).expanduser().read_text().strip()
        except OSError as exc:
            raise _fail(f"--token-file {token_file}: cannot read: {exc.strerror}") from None
        where = f"--token-file {token_file}"
    else:
        token = os.environ.get(token_env, "").strip()
        where = f"${token_env}"
    if not token:
        raise _fail(
            f"no API token: set ${token_env} or pass --token-file PATH "
            "(every endpoint but /healthz requires it; e.g. `openssl rand -hex 32`)"
        )
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise _fail(f"the API token in {where} is too weak: use {MIN_TOKEN_LENGTH}+ characters, no spaces")
    return token


class _AccessFields:
    """uvicorn's access log as structured fields (client, method, path, status: never a
    body), and without the 200s of health checks (every 30 s they would drown it)."""

    def filter(self, record: Any) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) < 5:
            return True
        if args[2] == "/healthz" and args[4] == 200:
            return False
        record.client, record.method, record.path, record.status = args[0], args[1], args[2], args[4]
        record.msg, record.args = "http request", ()
        return True


@click.command()
@click.option(
    "--plans",
    "plan_sources",
    multiple=True,
    metavar="DIR_OR_FILE",
    help="Plan files, or directories of *.toml plans (repeatable). Default: /etc/rotator, else ./config.",
)
@click.option("--host", default="127.0.0.1", show_default=True, envvar="ROTATOR_HOST", help="Address to bind.")
@click.option("--port", default=8700, show_default=True, envvar="ROTATOR_PORT", type=int, help="0 picks a free port.")
@click.option("--token-env", default=TOKEN_ENV, show_default=True, help="Environment variable holding the API token.")
@click.option(
    "--token-file", envvar="ROTATOR_API_TOKEN_FILE", type=click.Path(dir_okay=False), help="Read the token from a file."
)
@click.option("--db", "db_url", help="Journal and job-store database URL (default: the global --db, or SQLite).")
@click.option("--no-scheduler", is_flag=True, help="Serve the API only; run no scheduled jobs (e.g. extra replicas).")
@click.option(
    "--arm-timeout", default=900.0, show_default=True, type=float, help="Seconds an armed rotation waits for its key."
)
@click.option(
    "--shutdown-grace",
    type=float,
    help="Seconds a rotation in flight gets to finish on SIGTERM (default: the longest plan deadline + 15).",
)
@click.option(
    "--misfire-grace-time",
    type=int,
    help="Seconds a missed scheduled run may be late and still run (default: no limit; runs missed while "
    "the service was down are folded into one).",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    envvar="ROTATOR_TRUSTED_PROXY",
    metavar="ADDR_OR_CIDR",
    help="A reverse proxy whose --operator-header (and X-Forwarded-For) is believed (repeatable; env: "
    "comma-separated). Without one, the journal's operator is the name the page sends and the client's address.",
)
@click.option(
    "--operator-header",
    default="X-Forwarded-User",
    show_default=True,
    envvar="ROTATOR_OPERATOR_HEADER",
    help="The header in which a trusted proxy names the signed-in user.",
)
@click.option(
    "--public-url",
    envvar="ROTATOR_PUBLIC_URL",
    metavar="URL",
    help="The page's address as users reach it (for the links in notifications; default: the bound address).",
)
@click.option(
    "--validity-every",
    type=float,
    default=600.0,  # rotator.key_validity.VALIDITY_EVERY (not imported here: the CLI starts light)
    show_default=True,
    envvar="ROTATOR_VALIDITY_EVERY",
    metavar="SECONDS",
    help="Check each plan's key on its probe endpoint this often (one billed API call per key and interval, "
    "across replicas; the rotator_key_validity gauge); 0 turns it off.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    plan_sources: tuple[str, ...],
    host: str,
    port: int,
    token_env: str,
    token_file: str | None,
    db_url: str | None,
    no_scheduler: bool,
    arm_timeout: float,
    shutdown_grace: float | None,
    misfire_grace_time: int | None,
    trusted_proxies: tuple[str, ...],
    operator_header: str,
    public_url: str | None,
    validity_every: float,
) -> int:
    """Run the service: scheduled syncs and key-age checks, the HTTP API, and the web page.

    Every endpoint but /healthz needs `Authorization: Bearer <token>`; the page asks for
    the token.  Binds 127.0.0.1 unless told otherwise.
    """
    token = read_token(token_env, token_file)
    plans = load_plans(plan_sources)
    from rotator.service.identity import Identity

    try:
        identity = Identity.parse(trusted_proxies, operator_header)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if public_url is not None and not public_url.startswith(("https://", "http://")):
        raise _fail(f"--public-url {public_url!r}: give an http(s) URL, e.g. https://rotator.example.com")

    import asyncio
    import logging

    from rotator.journal import Journal, safe_url
    from rotator.journal.urls import UnsupportedJournalURL
    from rotator.logs import configure

    verbose = ctx.find_root().params.get("verbose", 0) or 0
    configure(level="debug" if verbose >= 2 else "info")
    for name in ("uvicorn.error", "uvicorn.access", "apscheduler"):
        logging.getLogger(name).setLevel(logging.INFO if name != "apscheduler" else logging.WARNING)
    logging.getLogger("uvicorn.access").addFilter(_AccessFields())

    url = db_url or getattr(ctx.obj, "db", None)
    try:
        journal = Journal(url)
    except UnsupportedJournalURL as exc:
        raise _fail(f"unsupported journal URL {safe_url(url or '')}: {exc}; check --db / ROTATOR_DB", 10) from None
    except Exception as exc:  # noqa: BLE001
        where = safe_url(url) if url else "default"  # never print a password from the URL
        why = "not a database URL" if "Could not parse" in str(exc) else str(exc)
        raise _fail(f"cannot open the journal ({where}): {type(exc).__name__}: {why}", 1) from None
    grace = shutdown_grace if shutdown_grace is not None else max(p.rotation.deadline for p in plans) + 15.0
    try:
        return asyncio.run(
            _serve(
                plans,
                journal,
                token,
                host=host,
                port=port,
                scheduler_on=not no_scheduler,
                arm_timeout=arm_timeout,
                grace=min(grace, 3600.0),
                misfire_grace_time=misfire_grace_time,
                identity=identity,
                public_url=public_url,
                validity_every=max(validity_every, 0.0),
            )
        )
    finally:
        journal.close()


async def _serve(
    plans: list[Any],
    journal: Any,
    token: str,
    *,
    host: str,
    port: int,
    scheduler_on: bool,
    arm_timeout: float,
    grace: float,
    misfire_grace_time: int | None,
    identity: Any = None,
    public_url: str | None = None,
    validity_every: float = 0.0,
) -> int:
    import asyncio
    import contextlib
    import signal
    import threading

    import uvicorn

    from rotator.service.app import build_app
    from rotator.service.core import Service
    from rotator.service.scheduler import make_scheduler

    service = Service(plans, journal, arm_timeout=arm_timeout)
    scheduler = make_scheduler(journal.engine, misfire_grace_time=misfire_grace_time) if scheduler_on else None
    app = build_app(
        service, token, scheduler=scheduler, shutdown_grace=5.0, identity=identity, validity_every=validity_every
    )
    loop = asyncio.get_running_loop()

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:
                loop.call_soon_threadsafe(service.begin_drain)
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            # As uvicorn's, without re-raising the signal afterwards: a graceful stop exits 0.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            sigs = (signal.SIGINT, signal.SIGTERM)
            original = {s: signal.signal(s, self.handle_exit) for s in sigs}
            try:
                yield
            finally:
                for s, h in original.items():
                    signal.signal(s, h)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=True,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(grace) + 1,
        lifespan="on",
    )
    server = Server(config)
    from rotator.logs import get_logger
    from rotator.service.proxies import ServedProxies

    proxies = ServedProxies(plans, service.metrics.registry, get_logger("rotator.proxy"))
    await proxies.start()  # each plan's [proxy] on its own address, before the service listens
    try:
        sock = config.bind_socket()
    except BaseException:
        await proxies.stop()
        raise
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    from rotator.journal import replica_id, safe_url

    log = get_logger("rotator.service")  # one log, one format: these lines too
    log.info(f"{len(plans)} plan(s)", plans=[p.name for p in plans])
    log.info("journal", replica=replica_id(), journal=safe_url(journal.url), schema_version=journal.schema_version)
    url = f"http://{shown}:{bound[1]}/"
    log.info(f"listening on {url}", url=url)
    service.public_url = public_url or url.rstrip("/")
    if bound[0] not in ("127.0.0.1", "::1", "localhost"):
        log.warning(f"bound to {bound[0]}, not loopback: serve it behind TLS; the token guards every endpoint")
    try:
        await server.serve(sockets=[sock])
    finally:
        await proxies.stop()
    log.info("stopped")
    return 0 if server.started else 1
