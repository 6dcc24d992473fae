"""One key age everywhere (issue 26): `rotator status --json` (a real process), the service's
plan JSON (what the page shows), its /metrics gauge and the reminders' `key_age` give the same
age, counted from the same record and worded the same, for the same plan: an env-file primary
(the journal's rotation, else unknown), a Vault primary (KV v2 `created_time`), and an
alternating plan (the slot record when the journal has none; the journal row of a
`--revoke-now` run, which leaves the active slot undated).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import hvac
import pytest

from rotator.journal import Journal
from rotator.key_age import DAY
from rotator.plan import load_plan
from rotator.service.agejob import current_age
from rotator.service.core import Service
from rotator.testing import plans
from rotator.testing.adjutor import AdjutorStandIn
from tests.fixtures_backends import ROOT_TOKEN, vault  # noqa: F401 - the fixture
from tests.leakcheck import cli
from tests.test_alternating import make_world, seeded  # noqa: F401 - the fixture
from tests.test_scheduler import journaled_rotation
from tests.test_status import single_plan

SLACK = 30.0  # seconds between the status run and the service's reading


def status_json(plan: Path, *db: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    r = cli(*db, "status", str(plan), "--json", env=env)
    assert "Traceback" not in r.stderr, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def status_text(plan: Path, *db: str, env: dict[str, str] | None = None) -> str:
    r = cli(*db, "status", str(plan), env=env)
    assert "Traceback" not in r.stderr, r.stderr
    return r.stdout


def service_view(plan_path: Path, journal: Journal) -> tuple[dict[str, Any], float | None, Service]:
    """What the page and /metrics say: the plan JSON and the gauge, after the service's age reading."""
    plan = load_plan(plan_path)
    svc = Service([plan], journal)
    age = asyncio.run(current_age(svc, plan))
    svc.metrics.set_key_age(plan.name, age.age_seconds, age.warn, age.max_age_days)
    metrics = svc.metrics.render().decode()
    m = re.search(rf'^rotator_key_age_seconds{{plan="{plan.name}"}} (\S+)$', metrics, re.M)
    return svc.plan_state(plan)["key_age"], (float(m.group(1)) if m else None), svc


def assert_same_age(cli_age: dict[str, Any], page_age: dict[str, Any], gauge: float | None) -> None:
    for field in ("status", "source", "from", "rotation_id", "max_age_days"):
        assert cli_age[field] == page_age[field], (field, cli_age, page_age)
    if cli_age["age_seconds"] is None:
        assert page_age["age_seconds"] is None and gauge is None
        return
    assert abs(cli_age["rotated_at"] - page_age["rotated_at"]) < 1.0, (cli_age, page_age)
    assert 0 <= page_age["age_seconds"] - cli_age["age_seconds"] < SLACK
    assert gauge is not None and 0 <= gauge - cli_age["age_seconds"] < SLACK


def primary_key(st: dict[str, Any]) -> dict[str, Any]:
    return next(k for k in st["keys"] if k["role"] in ("current", "active"))


def test_envfile_plan_status_page_and_metrics_agree(standin: AdjutorStandIn, tmp_path: Path) -> None:
    path = single_plan(tmp_path, standin.models_url, standin.current_key)
    journal = Journal()
    try:
        # Nothing records it (an .env file's mtime is not the key's date): unknown everywhere.
        st = status_json(path)
        page, gauge, _ = service_view(path, journal)
        assert st["key_age"]["status"] == "unknown" and primary_key(st)["age_seconds"] is None
        assert_same_age(st["key_age"], page, gauge)
        assert f"key age: unknown: nothing records it (`rotator adopt {path} --set-at DATE`" in status_text(path)

        rid = journaled_rotation(journal, "payments", days_ago=10)
        st = status_json(path)
        page, gauge, _ = service_view(path, journal)
        assert st["key_age"]["source"] == "journal" and st["key_age"]["from"] == f"its last rotation ({rid})"
        assert_same_age(st["key_age"], page, gauge)
        assert abs(st["key_age"]["age_seconds"] - 10 * DAY) < SLACK
        key = primary_key(st)
        assert key["age_seconds"] == st["key_age"]["age_seconds"] and key["age_from"] == page["from"]
        assert f"key age: 10d 0h old, from its last rotation ({rid})" in status_text(path)
    finally:
        journal.close()


def test_vault_primary_status_page_and_metrics_agree(
    tmp_path: Path,
    vault,  # noqa: F811
    standin: AdjutorStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KA_VAULT_TOKEN", ROOT_TOKEN)
    key = standin.current_key
    hvac.Client(url=vault.url, token=ROOT_TOKEN).secrets.kv.v2.create_or_update_secret(
        path="adjutor/agree", secret={"api_key": key}, mount_point="secret"
    )
    written = time.time()
    path = plans.write_plan(
        tmp_path / "plan.toml",
        plans.plan(
            "vault-agree",
            max_age_days=90,
            probe=plans.adjutor_probe(standin.models_url),
            backends=[plans.vault("vault", vault.url, "adjutor/agree", token_env="KA_VAULT_TOKEN", primary=True)],
        ),
    )
    journal = Journal()
    try:
        st = status_json(path)
        page, gauge, _ = service_view(path, journal)
        assert st["key_age"]["source"] == "primary" and st["key_age"]["from"] == "the primary's own record"
        assert abs(st["key_age"]["rotated_at"] - written) < SLACK
        assert_same_age(st["key_age"], page, gauge)
        assert primary_key(st)["age_from"] == "the primary's own record"
        assert "old, from the primary's own record (max 90 days: ok)" in status_text(path)
    finally:
        journal.close()


def test_alternating_plan_dated_by_its_slot_record_when_the_journal_has_none(
    make_world: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    w = seeded(make_world)
    f = w.rotator("rotate", str(w.plan), "--key-stdin", "--json", pauses=(0,))
    assert f.code == 0, f.err
    # A new journal (the old one lost): the slot record still dates the active key.
    empty = Journal(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        db = ("--db", empty.url)
        st = status_json(w.plan, *db, env=w.env)
        page, gauge, svc = service_view(w.plan, empty)
        assert st["key_age"]["source"] == "primary" and st["key_age"]["from"] == "the slot record"
        assert_same_age(st["key_age"], page, gauge)
        # The Key age line and the slot table's active row say the same age.
        assert st["active"]["age_from"] == "the slot record"
        assert abs(st["active"]["age_s"] - st["key_age"]["age_seconds"]) < 1.0
        slots = asyncio.run(svc.slots(load_plan(w.plan).name))
        assert slots["active"]["age_from"] == "the slot record"
        assert 0 <= slots["active"]["age_s"] - st["key_age"]["age_seconds"] < SLACK
        assert primary_key(st)["age_seconds"] == st["key_age"]["age_seconds"]
        assert "old, from the slot record" in status_text(w.plan, *db, env=w.env)
    finally:
        empty.close()


def test_revoke_now_leaves_the_age_known_from_its_run(make_world: Any) -> None:  # noqa: F811
    w = make_world()
    f = w.rotator("rotate", str(w.plan), "--incident", "--revoke-now", "--key-stdin", "--json", pauses=(0,))
    assert f.code == 0, f.err
    journal = Journal()
    try:
        rid = journal.history("payments", 1)[0].id
        st = status_json(w.plan, env=w.env)
        page, gauge, svc = service_view(w.plan, journal)
        assert st["key_age"]["rotation_id"] == rid and st["key_age"]["from"] == f"its last rotation ({rid})"
        assert_same_age(st["key_age"], page, gauge)
        assert st["key_age"]["age_seconds"] < SLACK
        # The slot record does not date the key a revoke-now wrote: the slot table says the run's date.
        assert st["active"]["age_s"] is not None and st["active"]["age_from"] == f"the rotation that stored it ({rid})"
        slots = asyncio.run(svc.slots("payments"))
        assert slots["active"]["age_from"] == st["active"]["age_from"] and slots["active"]["age_s"] is not None
    finally:
        journal.close()
