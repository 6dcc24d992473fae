"""Key age from one source of truth (the journal, an adoption, else the primary's own
record), `rotator adopt`, and one deduplicated reminder per threshold crossed."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from rotator.journal import Journal
from rotator.key_age import DAY, KeyAge, key_age
from rotator.key_record import parse_time, read_primary_record
from rotator.plan import load_plan
from rotator.service import scheduler as sched
from rotator.service.agejob import due_reminder
from rotator.service.core import Service
from rotator.testing import plans
from rotator.testing.adjutor import AdjutorStandIn
from tests import forkserver
from tests.fixtures_backends import ROOT_TOKEN, vault  # noqa: F401 - the fixture
from tests.test_scheduler import NOTIFY_ENV, SCHEDULES, Notified, journaled_rotation
from tests.test_service import write_plan


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(f"sqlite:///{tmp_path / 'journal.db'}")
    yield j
    j.close()


def age_of(days: float, max_age: int | None = 90, lead: int = 7) -> KeyAge:
    now = time.time()
    return KeyAge("p", "ok", days * DAY, now - days * DAY, "r1", max_age, lead, "", "journal", "r1")


def test_one_reminder_per_threshold_then_daily_while_overdue() -> None:
    assert due_reminder(age_of(70)) is None  # 20 days left
    assert due_reminder(age_of(76.5))[0] == "14 days before max_age_days"  # type: ignore[index]
    assert due_reminder(age_of(83.5))[0] == "7 days before max_age_days"  # type: ignore[index]
    assert due_reminder(age_of(89.5))[0] == "1 day before max_age_days"  # type: ignore[index]
    label, when = due_reminder(age_of(92.5))  # type: ignore[misc]
    assert label == "overdue, day 3"
    assert abs(when.timestamp() - (time.time() - 0.5 * DAY)) < 60  # the day's instant: the same on every replica
    # The same key checked an hour later (another replica, a restart): the same instant, claimed once.
    later = age_of(92.5)
    later.rotated_at = when.timestamp() - 92 * DAY
    later.age_seconds = 92.5 * DAY + 3600
    assert due_reminder(later) == ("overdue, day 3", when)
    assert due_reminder(age_of(30, max_age=None)) is None
    assert due_reminder(age_of(85, max_age=90, lead=20))[0] == "7 days before max_age_days"  # type: ignore[index]
    assert due_reminder(age_of(77, max_age=90, lead=20))[0] == "14 days before max_age_days"  # type: ignore[index]
    assert due_reminder(age_of(70.5, max_age=90, lead=20))[0] == "20 days before max_age_days"  # type: ignore[index]


def test_reminders_are_sent_once_across_replicas_restarts_and_both_channels(
    tmp_path: Path, standin: AdjutorStandIn, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schedule's `notify` and a `[[notify]]` entry point at one channel: one message.
    Two replicas (two services on one journal) and a restart check again: no more."""
    chat = Notified()
    try:
        monkeypatch.setenv(NOTIFY_ENV, chat.url)
        path = write_plan(tmp_path, standin, schedules=SCHEDULES, reminder_lead_days=7)
        with path.open("a") as f:
            f.write(f'\n[[notify]]\ntype = "slack"\nurl = {{ env = "{NOTIFY_ENV}" }}\n')
        plan = load_plan(path)
        journaled_rotation(journal, plan.name, days_ago=84)  # past the 7-day threshold

        for _ in range(3):  # replica A, replica B, A after a restart
            sched.set_service(Service([load_plan(path)], journal))
            assert asyncio.run(sched.age_check_job(plan.name, 1)) == "due"
        assert len(chat.bodies) == 1, chat.bodies
        assert "in 6 days" in chat.bodies[0].decode()

        # A new rotation starts the thresholds afresh: nothing is due for a fresh key.
        journaled_rotation(journal, plan.name, days_ago=1)
        assert asyncio.run(sched.age_check_job(plan.name, 1)) == "ok"
        assert len(chat.bodies) == 1
    finally:
        sched.set_service(None)
        chat.stop()


def test_adopt_records_an_existing_keys_age(tmp_path: Path, standin: AdjutorStandIn, journal: Journal) -> None:
    path = write_plan(tmp_path, standin)
    plan = load_plan(path)
    assert key_age(journal, plan).status == "unknown"
    cmd = [*forkserver.command(), "--db", journal.url]
    # An .env primary records no date of its value: the date must be given.
    no_date = subprocess.run([*cmd, "adopt", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert no_date.returncode == 2, no_date.stderr
    assert "records no date for its value: give the key's date with --set-at DATE" in no_date.stderr
    assert "Traceback" not in no_date.stderr
    bad = subprocess.run(
        [*cmd, "adopt", str(path), "--set-at", "last tuesday"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2 and "is not a date" in bad.stderr

    done = subprocess.run(
        [*cmd, "adopt", str(path), "--set-at", "2026-01-01"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "adopted, set at 2026-01-01T00:00:00Z" in done.stderr
    age = key_age(journal, plan)
    assert age.source == "adopted" and age.rotated_at == parse_time("2026-01-01T00:00:00Z")
    assert standin.current_key not in done.stderr + done.stdout

    # A rotation after the adoption counts from the rotation.
    journaled_rotation(journal, plan.name, days_ago=2)
    assert key_age(journal, plan).source == "journal"


def test_key_age_from_vaults_own_record(
    tmp_path: Path,
    vault,  # noqa: F811
    journal: Journal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KA_VAULT_TOKEN", ROOT_TOKEN)
    hvac.Client(url=vault.url, token=ROOT_TOKEN).secrets.kv.v2.create_or_update_secret(
        path="adjutor/key-age", secret={"api_key": "sk_test_" + "k" * 24}, mount_point="secret"
    )
    written = time.time()
    path = plans.write_plan(
        tmp_path / "plan.toml",
        plans.plan(
            "vault-aged",
            max_age_days=90,
            backends=[plans.vault("vault", vault.url, "adjutor/key-age", token_env="KA_VAULT_TOKEN", primary=True)],
        ),
    )
    plan = load_plan(path)
    record = asyncio.run(read_primary_record(plan))
    assert record.set_at is not None and abs(record.set_at - written) < 60, record
    age = key_age(journal, plan, primary_set_at=record.set_at)
    assert age.source == "primary" and age.status == "ok" and age.age_seconds is not None and age.age_seconds < 60
    # The service reads it for the gauge and the page when the journal has nothing.
    svc = Service([plan], journal)
    sched.set_service(svc)
    try:
        assert asyncio.run(sched.age_check_job(plan.name)) == "ok"
        assert svc.plan_state(plan)["key_age"]["source"] == "primary"
        assert 'rotator_key_age_seconds{plan="vault-aged"}' in svc.metrics.render().decode()
    finally:
        sched.set_service(None)
