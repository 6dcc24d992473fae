"""Plan files: every problem on one line with file and key path; `rotator check`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rotator.plan import PlanError, load_plan
from tests import forkserver

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[secret]
name = "adjutor-test"

[probe]
preset = "adjutor"

[[backends]]
name = "store"
type = "envfile"
primary = true
path = "{tmp}/store.env"
variable = "ADJUTOR_API_KEY"

[[backends]]
name = "app"
type = "envfile"
path = "{tmp}/app.env"
variable = "ADJUTOR_API_KEY"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "plan.toml"
    p.write_text(text.replace("{tmp}", str(tmp_path)))
    return p


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(PlanError) as info:
        load_plan(_write(tmp_path, text))
    return info.value.problems


def test_good_plan_loads_with_adjutor_preset(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, GOOD))
    assert plan.primary.name == "store"
    assert [b.name for b in plan.others] == ["app"]
    assert plan.probe.url == "https://adjutor.lendsqr.com/v2/decisioning/models"
    assert plan.probe.headers == {"Authorization": "Bearer {key}"}
    assert plan.probe.expect_json == {"status": "success"}


def test_missing_required_key_names_file_and_path(tmp_path: Path) -> None:
    problems = _problems(tmp_path, GOOD.replace('path = "{tmp}/app.env"\n', ""))
    assert problems == [f"{tmp_path / 'plan.toml'}: backends[1].path: required"]


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    text = GOOD.replace('variable = "ADJUTOR_API_KEY"\n', 'variable = "ADJUTOR_API_KEY"\nvarable = "x"\n', 1)
    text = text.replace('name = "adjutor-test"', 'name = "adjutor-test"\nmax_age = 3')
    problems = _problems(tmp_path, text)
    assert any(p.endswith("secret.max_age: unknown key") for p in problems)
    assert any(p.endswith("backends[0].varable: unknown key (did you mean `variable`?)") for p in problems)


def test_exactly_one_primary(tmp_path: Path) -> None:
    problems = _problems(tmp_path, GOOD.replace("primary = true\n", ""))
    assert problems == [f"{tmp_path / 'plan.toml'}: backends: exactly one backend needs primary = true (found 0)"]
    two = GOOD.replace('name = "app"\ntype = "envfile"\n', 'name = "app"\ntype = "envfile"\nprimary = true\n')
    assert "(found 2)" in _problems(tmp_path, two)[0]


def test_unknown_type_lists_installed(tmp_path: Path) -> None:
    problems = _problems(tmp_path, GOOD.replace('name = "app"\ntype = "envfile"', 'name = "app"\ntype = "envfiel"'))
    assert len(problems) == 1
    assert "backends[1].type: unknown backend type 'envfiel'" in problems[0]
    assert "envfile" in problems[0]


def test_secret_settings_are_never_inline(tmp_path: Path) -> None:
    text = (
        GOOD + '\n[[consumers]]\nname = "hook"\ntype = "webhook"\nurl = "http://127.0.0.1:9/x"\nhmac_key = "hunter2"\n'
    )
    problems = _problems(tmp_path, text)
    assert any("consumers[0].hmac_key" in p and "never written inline" in p for p in problems)
    assert not any("hunter2" in p for p in problems)


def test_bad_toml_and_wrong_types(tmp_path: Path) -> None:
    assert "not valid TOML" in _problems(tmp_path, "[secret\nname=1")[0]
    problems = _problems(tmp_path, GOOD.replace('name = "adjutor-test"', "name = 42"))
    assert any("secret.name" in p for p in problems)
    problems = _problems(tmp_path, GOOD.replace('preset = "adjutor"', 'preset = "adjutor"\ntimeout = "fast"'))
    assert any("probe.timeout" in p for p in problems)


def test_key_never_in_probe_url(tmp_path: Path) -> None:
    text = GOOD.replace('preset = "adjutor"', 'url = "https://api.example/{key}"')
    assert any("must not go in the url" in p for p in _problems(tmp_path, text))


def test_reads_from_must_name_a_backend(tmp_path: Path) -> None:
    text = GOOD + '\n[[consumers]]\nname = "c"\ntype = "command"\nargv = ["true"]\nreads_from = ["nope"]\n'
    assert _problems(tmp_path, text) == [
        f"{tmp_path / 'plan.toml'}: consumers[0].reads_from[0]: no backend named 'nope'"
    ]


def test_check_cli_exit_codes(tmp_path: Path) -> None:
    good = _write(tmp_path, GOOD)
    r = subprocess.run([*forkserver.command(), "check", str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('path = "{tmp}/app.env"\n', "").replace("{tmp}", str(tmp_path)))
    r = subprocess.run([*forkserver.command(), "check", str(good), str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == f"{bad}: backends[1].path: required"
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("plan", sorted((ROOT / "config").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_plans_check_clean(plan: Path) -> None:
    r = subprocess.run([*forkserver.command(), "check", str(plan)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


# --- alternating plans (issue 11) ----------------------------------------------------

ALTERNATING = GOOD.replace(
    'name = "adjutor-test"',
    'name = "adjutor-test"\nstrategy = "alternating"\napps = ["payments-blue", "payments-green"]',
)


def test_alternating_plan_loads(tmp_path: Path) -> None:
    from rotator.plan import Strategy

    text = ALTERNATING.replace('preset = "adjutor"', 'preset = "adjutor"\npaths = ["/v2/verification/bvn"]')
    plan = load_plan(_write(tmp_path, text))
    assert plan.secret.strategy is Strategy.ALTERNATING and plan.alternating
    assert plan.secret.apps == ["payments-blue", "payments-green"]
    assert plan.probe.urls() == [
        "https://adjutor.lendsqr.com/v2/decisioning/models",
        "https://adjutor.lendsqr.com/v2/verification/bvn",
    ]
    assert plan.hints() == []


def test_single_is_the_default_and_gets_a_one_line_hint(tmp_path: Path) -> None:
    from rotator.plan import Strategy

    plan = load_plan(_write(tmp_path, GOOD))
    assert plan.secret.strategy is Strategy.SINGLE and not plan.alternating
    (hint,) = plan.hints()
    assert "\n" not in hint and 'strategy = "alternating"' in hint and "apps = [" in hint
    assert "same API services" in hint


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ('strategy = "alternating"', 'secret.apps: strategy = "alternating" needs exactly two apps'),
        ('strategy = "alternating"\napps = ["blue"]', "needs exactly two apps, as the dashboard names them (found 1)"),
        ('strategy = "alternating"\napps = ["a", "b", "c"]', "(found 3)"),
        ('strategy = "alternating"\napps = ["blue", "Blue "]', "secret.apps[1]: 'Blue ' is the same app twice"),
        ('apps = ["blue", "green"]', 'secret.apps: only used with strategy = "alternating"'),
        ('strategy = "alternate"', "secret.strategy: Input should be 'single' or 'alternating'"),
        ('strategy = "alternating"\napps = ["blue", ""]', "secret.apps[1]: String should have at least 1 character"),
    ],
)
def test_alternating_check_errors_name_the_key(tmp_path: Path, secret: str, problem: str) -> None:
    problems = _problems(tmp_path, GOOD.replace('name = "adjutor-test"', f'name = "adjutor-test"\n{secret}'))
    assert len(problems) == 1 and problem in problems[0], problems
    assert problems[0].startswith(f"{tmp_path / 'plan.toml'}: secret.")


def test_alternating_needs_a_primary_that_can_hold_a_standby(tmp_path: Path) -> None:
    text = ALTERNATING.replace(
        'name = "store"\ntype = "envfile"\nprimary = true\npath = "{tmp}/store.env"\nvariable = "ADJUTOR_API_KEY"\n',
        'name = "store"\ntype = "aws"\nprimary = true\nsecret_id = "prod/adjutor"\nregion = "eu-west-1"\n',
    )
    (problem,) = _problems(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'plan.toml'}: backends[0]: a standby slot needs json_key")
    assert load_plan(_write(tmp_path, text.replace('region = "eu-west-1"', 'region = "eu-west-1"\njson_key = "k"')))


@pytest.mark.parametrize("path", ["v2/x", "/v2/{key}", "/a b", "https://evil/x"])
def test_probe_paths_are_paths_on_the_probe_host(tmp_path: Path, path: str) -> None:
    text = GOOD.replace('preset = "adjutor"', f'preset = "adjutor"\npaths = ["{path}"]')
    (problem,) = _problems(tmp_path, text)
    assert "probe.paths" in problem and "a path starting with /" in problem


@pytest.mark.parametrize(
    "extra",
    [
        '"[" = 0\n',  # an unknown top-level key with an odd name: no "did you mean" crash
        '[[backends]]\nname = []\ntype = "envfile"\npath = "/x/.env"\nvariable = "K"\n',  # a name that is not text
    ],
)
def test_odd_plans_found_by_the_fuzzer_fail_in_one_line(tmp_path: Path, extra: str) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(GOOD.replace("{tmp}", str(tmp_path)) + extra)
    r = subprocess.run([*forkserver.command(), "check", str(plan)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
