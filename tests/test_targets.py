"""`rotator.targets`: every target of a plan and where it is, from its plugin's describe()."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rotator.plan import load_plan
from rotator.targets import describe_plan, target_lines

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "adjutor.example.toml"


def test_every_target_of_the_example_plan_says_where_it_is() -> None:
    plan = load_plan(EXAMPLE)
    targets = asyncio.run(describe_plan(plan))
    assert [t.name for t in targets] == [b.name for b in plan.backends] + [c.name for c in plan.consumers]
    by_name = {t.name: t for t in targets}
    assert by_name["vault"].primary and by_name["vault"].kind == "backend"
    assert by_name["vault"].where == (
        "https://vault.internal:8200 secret/payments/adjutor field api_key (kv v2, approle auth)"
    )
    assert by_name["aws"].where == "Secrets Manager prod/payments/adjutor field api_key in eu-west-1"
    assert by_name["worker-env"].where == "/srv/worker/.env (ADJUTOR_API_KEY)"
    assert by_name["payments-api"].where == "POST https://payments.internal/ops/reload-adjutor"
    assert all(t.where for t in targets), [t.name for t in targets if not t.where]
    lines = target_lines(targets)
    assert len(lines) == len(targets)
    assert lines[0].startswith("backend   vault") and lines[0].endswith("(primary)")
