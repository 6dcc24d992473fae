"""A refused key is a 401 or a 403, whatever the body says.

Adjutor's docs do not show the body of a refusal (the stand-in's 401
``{"status": 401, "message": "Invalid token"}`` is assumed: see
docs/testing/doubles.md), so the probe, the proof of revocation and the reset watch
must not depend on it.  Here the stand-in refuses a revoked key with other
statuses and bodies (an HTML page, another JSON shape, a JSON list, nothing) and
each of the three still says refused, revoked, reset.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from rotator.plan import ProbeSpec
from rotator.probe import ProbeOutcome, Prober
from rotator.reset_watch import ResetWatch, WatchOutcome
from rotator.secret import Secret
from rotator.testing.adjutor import AdjutorStandIn

SHAPES: list[tuple[int, Any]] = [
    (403, "<html><body><h1>403 Forbidden</h1></body></html>"),
    (403, {"status": "error", "message": "Forbidden", "data": None}),
    (401, {"error": {"code": "E_TOKEN_EXPIRED", "detail": ["outdated"]}}),
    (403, ["odd", 1]),
    (401, ""),
]


@pytest.mark.parametrize(("status", "body"), SHAPES, ids=[f"{s}-{type(b).__name__}" for s, b in SHAPES])
def test_any_401_or_403_is_refused_whatever_the_body(status: int, body: Any) -> None:
    with AdjutorStandIn() as standin:
        old = Secret(standin.current_key)
        new = Secret(standin.reset())
        standin.refusal = (status, body)
        spec = ProbeSpec.model_validate({"preset": "adjutor", "url": standin.models_url, "watch_interval": 0.1})

        async def go() -> tuple[Any, ...]:
            async with httpx.AsyncClient() as client:
                prober = Prober(spec, client)
                refused = await prober.probe(old)
                revoked = await prober.old_key_revoked(old)
                accepted = await prober.probe(new)
                watch = ResetWatch(prober, old)
                watched = await asyncio.wait_for(watch.run(), 20)
                return refused, revoked, accepted, watched

        refused, revoked, accepted, watched = asyncio.run(go())
    assert refused.outcome is ProbeOutcome.REFUSED and refused.status == status, refused
    assert refused.attempts == 1  # a refusal is final: not retried as if the API were down
    assert revoked.outcome is ProbeOutcome.ACCEPTED and "revoked" in revoked.detail, revoked
    assert accepted.outcome is ProbeOutcome.ACCEPTED, accepted
    assert watched.outcome is WatchOutcome.RESET and watched.reset is not None and watched.reset.status == status
    if isinstance(body, str) and body:
        assert "<html>" not in refused.detail  # a page is not quoted into the report
