"""What the page's key buttons say (rotator.service.buttons): the words follow what the flow has
done, and an incident's Cancel never hides that the leaked key still works."""

from __future__ import annotations

from rotator.service import buttons


def test_a_single_app_cancel_says_whether_the_outage_goes_on() -> None:
    before, after = buttons.single(reset_seen=False), buttons.single(reset_seen=True)
    assert before.paste == after.paste == "Rotate: probe this key, then write it everywhere"
    assert "nothing is written" in before.cancel and "Do not reset the key" in before.cancel_effect
    assert "consumers keep failing" in after.cancel and "the outage goes on" in after.cancel_effect


def test_after_a_promote_the_paste_stores_the_standby_and_cancel_keeps_the_promote() -> None:
    b = buttons.alternating(flow="rotate", app="blue", slot="standby", promoted=True, active_app="green")
    assert (b.paste, b.cancel) == ("Store as standby", "Cancel (keeps the promote; blue not re-keyed)")
    assert "The promote stays: green is active" in b.cancel_effect and "Roll back the last promote" in b.cancel_effect


def test_an_incident_cancel_says_the_leaked_key_still_works_and_offers_no_roll_back() -> None:
    b = buttons.alternating(flow="incident", app="blue", slot="standby", promoted=True, active_app="green")
    assert "LEAKED key" in b.cancel_effect and "stays valid until blue is re-keyed" in b.cancel_effect
    assert "Roll back" not in b.cancel_effect  # it would make the leaked key active again
    first = buttons.alternating(flow="incident", app="green", slot="standby", promoted=False, active_app="blue")
    assert first.cancel == "Cancel (nothing written; green not re-keyed)"
    assert "LEAKED key of blue stays valid" in first.cancel_effect
    now = buttons.alternating(flow="incident", app="blue", slot="active", promoted=False, active_app="blue")
    assert now.paste == "Write as the active key everywhere" and "consumers keep failing" in now.cancel
