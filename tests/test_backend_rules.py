"""`rotator.backend_rules`, the write rules every backend takes (the built-ins and a
third party's), on their own: already current, stale version, nothing stored, the
one wording of the fix, and the `SlotFields` settings mixin."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import Field, ValidationError

from rotator import BackendSettings, Conflict, Secret
from rotator.backend_rules import SlotFields, key_change, stale_key

KEY = Secret("sk_test_" + "K" * 32)
OTHER = Secret("sk_test_" + "O" * 32)
WHERE = "memory m: slot billing"


def test_already_current_is_nothing_to_write_whatever_the_version() -> None:
    # A retried write whose answer was lost: the store moved to a version arm never saw.
    assert key_change(KEY, "7", KEY, expected_version="6", where=WHERE) is None
    assert key_change(KEY, None, KEY, expected_version=None, where=WHERE) is None


def test_the_expected_version_or_no_check_is_a_write() -> None:
    assert key_change(OTHER, "6", KEY, expected_version="6", where=WHERE) is KEY
    assert key_change(OTHER, "9", KEY, expected_version=None, where=WHERE) is KEY  # --force: no check
    # Nothing stored: version None is "0", what arm expects when it found nothing.
    assert key_change(None, None, KEY, expected_version="0", where=WHERE) is KEY


def test_a_stale_version_is_a_conflict_in_the_one_wording() -> None:
    with pytest.raises(Conflict) as err:
        key_change(OTHER, "7", KEY, expected_version="6", where=WHERE)
    assert str(err.value) == "memory m: slot billing changed since arm (version 7, expected 6); rerun, or --force"
    assert not err.value.retryable
    with pytest.raises(Conflict, match=r"\(version none, expected 6\)"):  # deleted since arm
        key_change(None, None, KEY, expected_version="6", where=WHERE)
    assert str(stale_key(WHERE, "3", "0")) == (
        "memory m: slot billing changed since arm (version 3, expected none); rerun, or --force"
    )
    assert KEY.reveal() not in str(err.value)


class _Settings(BackendSettings, SlotFields):
    slot_settings: ClassVar[tuple[str, str, str]] = ("slot", "standby_slot", "slots_slot")
    slot: str = Field(min_length=1)
    standby_slot: str | None = None
    slots_slot: str | None = None


def test_slot_fields_defaults_and_three_different_places() -> None:
    plain = _Settings(name="m", type="memory", slot="billing")
    assert (plain.standby, plain.slots) == ("billing_standby", "billing_slots")
    named = _Settings(name="m", type="memory", slot="billing", standby_slot="b2", slots_slot="meta")
    assert (named.standby, named.slots) == ("b2", "meta")
    with pytest.raises(ValidationError, match="slot, standby_slot and slots_slot must be three different names"):
        _Settings(name="m", type="memory", slot="billing", slots_slot="billing")
    assert set(_Settings.model_fields) >= {"slot", "standby_slot", "slots_slot"}
    assert "slot_settings" not in _Settings.model_fields  # a ClassVar: not a plan setting
