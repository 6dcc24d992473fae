"""rotator.testing.plans: plans built as data, written as TOML a person would write."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotator.plan import load_plan
from rotator.testing import plans


def test_a_built_plan_loads_and_reads_like_a_hand_written_one(tmp_path: Path) -> None:
    data = plans.plan(
        "built",
        max_age_days=30,
        probe=plans.adjutor_probe("http://127.0.0.1:9/v2/decisioning/models", retries=0),
        backends=[
            plans.envfile("store", tmp_path / "store.env", primary=True),
            plans.vault("vault", "http://127.0.0.1:8200", "apps/billing", token_env="T", timeout=2.5),
        ],
        consumers=[plans.command("reload", ["/bin/true"], retries=0)],
        schedules=[{"job": "sync", "every": 60}],
    )
    path = plans.write_plan(tmp_path / "p.toml", data, header="a header\n\nin two paragraphs")
    text = path.read_text()
    assert text.startswith("# a header\n#\n# in two paragraphs\n[secret]\n")
    assert 'token = { env = "T" }' in text and text.count("[[backends]]") == 2
    assert tomllib.loads(text) == data
    plan = load_plan(path)
    assert plan.primary.name == "store" and [b.name for b in plan.backends] == ["store", "vault"]
    assert plan.consumers[0].retries == 0 and plan.schedules[0].every == 60


@given(st.text(max_size=40))
def test_any_string_round_trips(text: str) -> None:
    assert tomllib.loads(plans.to_toml({"s": text, "t": {"k": [text]}})) == {"s": text, "t": {"k": [text]}}


def test_values_without_a_toml_form_are_refused() -> None:
    with pytest.raises(TypeError):
        plans.to_toml({"x": None})
    with pytest.raises(ValueError):
        plans.to_toml({"x": float("nan")})
