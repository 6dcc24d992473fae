"""The HTTP API and the page, as a Starlette app: the routes (`routes`), wrapped
in the security layers (`middleware`), with a lifespan that runs the scheduler
and drains rotations in flight on shutdown.

No response holds a key: reports carry fingerprints, and every JSON response
and event passes through `rotator.secret.scrub_data`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rotator.logs import get_logger
from rotator.service import routes
from rotator.service.agejob import current_age
from rotator.service.identity import Identity
from rotator.service.middleware import MAX_BODY, BearerAuth, BodyLimit, SecurityHeaders

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from rotator.service.core import Service

log = get_logger("rotator.service.http")

ROUTES = [
    Route("/healthz", routes.healthz),
    Route("/", routes.index),
    Route("/metrics", routes.metrics),
    Route("/api/plans", routes.list_plans),
    Route("/api/plans/{name:path}/arm", routes.arm, methods=["POST"]),
    Route("/api/plans/{name:path}/sync", routes.sync, methods=["POST"]),
    Route("/api/plans/{name:path}/slots", routes.plan_slots),
    Route("/api/plans/{name:path}/rollback", routes.plan_rollback, methods=["POST"]),
    Route("/api/plans/{name:path}/promote", routes.plan_promote, methods=["POST"]),
    Route("/api/plans/{name:path}", routes.get_plan),
    Route("/api/rotations/{id}/key", routes.submit_key, methods=["POST"]),
    Route("/api/rotations/{id}/events", routes.events),
    Route("/api/rotations/{id}/close", routes.close_rotation, methods=["POST"]),
    Route("/api/rotations/{id}/resume", routes.resume, methods=["POST"]),
    Route("/api/whoami", routes.whoami),
    Route("/api/rotations/{id}/rollback", routes.rotation_rollback, methods=["POST"]),
    Route("/api/rotations/{id}", routes.get_rotation),
    Route("/api/history", routes.history),
    Mount("/static", app=StaticFiles(directory=routes.STATIC), name="static"),
]


def build_app(
    service: Service,
    token: str,
    *,
    scheduler: Any = None,
    shutdown_grace: float = 5.0,
    max_body: int = MAX_BODY,
    identity: Identity | None = None,
    validity_every: float = 0.0,
) -> ASGIApp:
    """The ASGI app: routes wrapped in security headers, bearer auth and a body limit.

    `scheduler` (an AsyncIOScheduler, optional) is started paused in the
    lifespan, reconciled with the plans, resumed; shut down at the end, after
    which rotations in flight get `shutdown_grace` seconds more to finish."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from rotator.service import scheduler as sched

        sched.set_service(service)
        if scheduler is not None:
            scheduler.start(paused=True)
            outcome = sched.reconcile(scheduler, list(service.plans.values()))
            scheduler.resume()
            log.info("scheduler started", jobs=outcome)
        for name, plan in service.plans.items():  # the key-age gauge (journal, else the primary), no reminders
            try:
                age = await current_age(service, plan)
                service.metrics.set_key_age(name, age.age_seconds, age.warn, age.max_age_days)
            except Exception as exc:  # noqa: BLE001 - a metric must not stop the service
                log.warning("key age unknown", plan=name, error=type(exc).__name__)
        started = time.monotonic()
        validity = None
        if validity_every > 0:  # each plan's key checked on its probe endpoint (rotator.key_validity)
            from rotator.service.validity_job import validity_loop

            validity = asyncio.ensure_future(validity_loop(service, validity_every))
        try:
            yield
        finally:
            if validity is not None:
                validity.cancel()
            service.begin_drain()
            if scheduler is not None and scheduler.running:
                scheduler.shutdown(wait=False)
            left = await service.drain(shutdown_grace)
            sched.set_service(None)
            log.info("stopped", seconds_up=round(time.monotonic() - started), resumable=left or None)

    app = Starlette(routes=ROUTES, lifespan=lifespan)
    app.state.service = service
    app.state.scheduler = scheduler
    app.state.identity = identity or Identity()  # who acts: see rotator.service.identity
    return SecurityHeaders(BearerAuth(BodyLimit(app, max_body), token))
