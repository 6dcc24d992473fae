"""Monitoring as operators run it: the key-validity gauge (checked on the probe endpoint,
once per key and interval across replicas), and the Prometheus alerting rules in
deploy/prometheus, checked and unit-tested by promtool."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from rotator.journal import Journal
from rotator.plan import load_plan
from rotator.service.core import Service
from rotator.service.metrics import Metrics
from rotator.service.validity_job import check_due
from rotator.testing.adjutor import AdjutorStandIn
from tests.test_service import write_plan

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy/prometheus/rotator-alerts.yml"
RULE_TESTS = REPO / "deploy/prometheus/rotator-alerts.test.yml"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(f"sqlite:///{tmp_path / 'journal.db'}")
    yield j
    j.close()


def validity(metrics: Metrics, plan: str) -> dict[str, float]:
    text = metrics.render().decode()
    found = re.findall(rf'rotator_key_validity\{{plan="{re.escape(plan)}",state="(\w+)"\}} (\S+)', text)
    return {state: float(v) for state, v in found}


def test_key_validity_is_checked_once_per_interval_across_replicas(
    tmp_path: Path, standin: AdjutorStandIn, journal: Journal
) -> None:
    plan = load_plan(write_plan(tmp_path, standin))
    a, b = Service([plan], journal), Service([load_plan(plan.path)], journal)
    every = 600.0
    t0 = (1_900_000_000 // every) * every + 1  # inside one interval

    assert asyncio.run(check_due(a, every, now=t0)) == 1
    assert asyncio.run(check_due(b, every, now=t0 + 5)) == 0  # the same interval: A checked it
    assert asyncio.run(check_due(a, every, now=t0 + 10)) == 0  # and A does not check it again
    assert validity(a.metrics, plan.name) == {"works": 1.0, "refused": 0.0, "could_not_check": 0.0}
    assert validity(b.metrics, plan.name) == {}

    standin.reset()  # someone reset the key outside rotator: the primary's key is refused now
    assert asyncio.run(check_due(b, every, now=t0 + every)) == 1  # the next interval; B wins it this time
    assert validity(b.metrics, plan.name) == {"works": 0.0, "refused": 1.0, "could_not_check": 0.0}
    assert asyncio.run(check_due(b, every, now=t0 + 2 * every)) == 1
    assert asyncio.run(check_due(a, every, now=t0 + 3 * every + 5)) == 1  # A's stale answer replaced
    assert validity(a.metrics, plan.name)["refused"] == 1.0
    text = a.metrics.render().decode()
    assert standin.current_key not in text


def test_a_probe_that_cannot_answer_is_could_not_check(
    tmp_path: Path, standin: AdjutorStandIn, journal: Journal
) -> None:
    plan = load_plan(write_plan(tmp_path, standin))
    plan.probe = plan.probe.model_copy(update={"url": "http://127.0.0.1:9/v1/models"})  # nothing listens
    svc = Service([plan], journal)
    assert asyncio.run(check_due(svc, 600.0, now=1_900_000_001)) == 1
    assert validity(svc.metrics, plan.name) == {"works": 0.0, "refused": 0.0, "could_not_check": 1.0}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        why = "promtool not found: apt-get install prometheus"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (required in CI; .ci/run installs it)")
        pytest.skip(why)
    return found


def test_alert_rules_pass_promtool_check() -> None:
    run = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 6 rules found" in run.stdout


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    run = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, check=False, cwd=RULES.parent
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_alert_rules_name_only_metrics_the_service_exports() -> None:
    exported = {m.name for m in Metrics().registry.collect()}
    # Counters are collected without their _total suffix.
    exported |= {f"{name}_total" for name in exported}
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {"RotatorKeyTooOld", "RotatorKeyRefused", "RotatorSyncFailing"}
    assert "RotatorDriftRepaired" in {r["alert"] for r in rules}
    for r in rules:
        for name in re.findall(r"\b(rotator_[a-z_]+)\b", r["expr"]):
            assert name in exported, (r["alert"], name)
