"""The reference a terminal gives: `rotator --help` one line per command, unclipped;
`rotator help exit-codes` every code of the enum with its meaning; `rotator schema`."""

from __future__ import annotations

import json
import subprocess

from rotator.cli import cli
from rotator.exitcodes import Exit, meanings
from tests import forkserver


def rotator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*forkserver.command(), *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_command_on_one_complete_line() -> None:
    out = rotator("--help").stdout
    listed = out.split("Commands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert {line.split()[0] for line in listed} == set(cli.commands)
    for line in listed:
        assert not line.rstrip().endswith("..."), line  # click clips a long docstring with "..."
    assert "rotator help exit-codes" in out  # not "see the README"


def test_help_exit_codes_says_what_every_code_means() -> None:
    r = rotator("help", "exit-codes")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert [int(line.split()[0]) for line in lines] == [int(code) for code in Exit]
    assert set(meanings()) == set(Exit) and all(meanings().values())
    assert any(line.split()[:2] == ["14", "key-not-reset"] for line in lines)


def test_schema_is_json_schema_of_a_plan() -> None:
    schema = json.loads(rotator("schema").stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["required"] == ["secret", "backends"]
    backend_types = {d["properties"]["type"]["const"] for k, d in schema["$defs"].items() if k.startswith("backend-")}
    assert backend_types >= {"envfile", "vault", "aws"}


def test_the_example_plans_validate_against_the_schema_and_a_typo_does_not() -> None:
    import tomllib
    from pathlib import Path

    import jsonschema

    from rotator.reference.plan_doc import plan_schema

    validator = jsonschema.Draft202012Validator(plan_schema())
    plans = sorted((Path(__file__).resolve().parent.parent / "config").glob("*.toml"))
    assert plans
    for plan in plans:
        assert [e.message for e in validator.iter_errors(tomllib.loads(plan.read_text()))] == [], plan
    typo = tomllib.loads(
        '[secret]\nname = "x"\nnmae = 1\n[[backends]]\nname = "a"\ntype = "envfile"\nprimary = true\n'
        'path = "/x"\nvariable = "K"\n'
    )
    assert [e.message for e in validator.iter_errors(typo)] == [
        "Additional properties are not allowed ('nmae' was unexpected)"
    ]
