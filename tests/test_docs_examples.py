"""What the docs show works: every plan in docs/ and config/ passes `rotator check`, and
every `rotator ...` command in the docs' and the README's ```sh blocks uses a command and
options that exist."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import click
import pytest

from rotator.cli import cli
from tests import forkserver

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
PLAN_TABLES = {"secret", "probe", "rotation", "backends", "consumers", "schedules", "notify"}
BLOCK = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[a-z]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)


def blocks(lang: str) -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        for m in BLOCK.finditer(page.read_text()):
            if m.group("lang") == lang:
                body = "\n".join(line.removeprefix(m.group("indent")) for line in m.group("body").splitlines())
                found.append((page, body))
    return found


def plan_blocks() -> list[tuple[Path, str]]:
    """TOML blocks that are plans or parts of one (not a pyproject snippet, not an include)."""
    out = []
    for page, body in blocks("toml"):
        if "--8<--" in body:
            continue  # an included file: checked where it lives (config/)
        if set(tomllib.loads(body)) & PLAN_TABLES:
            out.append((page, body))
    return out


def complete(body: str, tmp: Path) -> str:
    """A plan fragment made whole with the least it lacks: a secret, an env-file primary."""
    data = tomllib.loads(body)
    extra = ""
    if "secret" not in data:
        extra += '\n[secret]\nname = "docs-example"\n'
    if "backends" not in data:
        extra += f'\n[[backends]]\nname = "docs-env"\ntype = "envfile"\nprimary = true\npath = "{tmp}/.env"\nvariable = "API_KEY"\n'
    return body + "\n" + extra


def test_the_docs_show_plans_and_the_check_finds_them() -> None:
    assert len(plan_blocks()) >= 3
    assert len(list((ROOT / "config").glob("*.toml"))) >= 5


def test_every_plan_in_docs_and_config_passes_rotator_check(tmp_path: Path) -> None:
    files = sorted(str(p) for p in (ROOT / "config").glob("*.toml"))
    for i, (page, body) in enumerate(plan_blocks()):
        f = tmp_path / f"{page.stem}-{i}.toml"
        f.write_text(complete(body, tmp_path))
        files.append(str(f))
    proc = subprocess.run([*forkserver.command(), "check", *files], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(": ok (") == len(files), proc.stdout


def test_the_example_plans_name_their_schema() -> None:
    for plan in (ROOT / "config").glob("*.toml"):
        assert plan.read_text().startswith("#:schema ../docs/reference/plan.schema.json\n"), plan


# --- commands ------------------------------------------------------------------------

SEPARATORS = re.compile(r"&&|\|\||;|\||\$\(|\)|`|\"")
PREFIXES = {"sudo", "exec", "eval", "time", "nice", "-n", "5"}


def invocations(line: str) -> list[list[str]]:
    """Each `rotator ...` a shell line runs (in a pipeline, after `&&`, inside `$(...)`)."""
    line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0]
    found = []
    for segment in SEPARATORS.split(line):
        try:
            words = shlex.split(segment)
        except ValueError:  # an unbalanced quote: a shell fragment, read word by word
            words = segment.split()
        while words and (words[0] in PREFIXES or re.fullmatch(r"[A-Z_]+=\S*", words[0])):
            words = words[1:]
        if words and words[0].rsplit("/", 1)[-1] == "rotator":
            found.append(words[1:])
    return found


def shown_commands() -> list[tuple[Path, list[str]]]:
    found = []
    for lang in ("sh", "bash", "console"):
        for page, body in blocks(lang):
            for line in body.replace("\\\n", " ").splitlines():
                found += [(page, args) for args in invocations(line.removeprefix("$ "))]
    return found


def options_of(command: click.Command) -> set[str]:
    names = {"-h", "--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def problem(args: list[str]) -> str | None:
    """Why `rotator ARGS` would not parse (unknown command or option), else None."""
    group_opts = options_of(cli)
    i = 0
    while i < len(args) and args[i].startswith("-"):
        name = args[i].split("=")[0]
        if name not in group_opts:
            return f"unknown global option {name}"
        i += 2 if name == "--db" and "=" not in args[i] else 1
    if i == len(args):
        return None
    name = args[i]
    command = cli.commands.get(name)
    if command is None:
        return f"unknown command {name!r}"
    known = options_of(command) | group_opts
    for arg in args[i + 1 :]:
        if arg.startswith("-") and arg != "-" and not re.fullmatch(r"-\d+", arg):
            if arg.split("=")[0] not in known:
                return f"{name}: unknown option {arg}"
    return None


def test_the_docs_show_commands() -> None:
    assert len(shown_commands()) >= 20


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_shown_uses_options_that_exist(page: Path) -> None:
    wrong = [f"rotator {' '.join(args)}: {why}" for p, args in shown_commands() if p == page if (why := problem(args))]
    assert not wrong, "\n".join(wrong)


def test_the_check_catches_a_wrong_option() -> None:
    assert problem(["rotate", "PLAN", "--dry-run"]) is None
    assert problem(["rotate", "PLAN", "--dryrun"]) == "rotate: unknown option --dryrun"
    assert problem(["rotat", "PLAN"]) == "unknown command 'rotat'"
    assert invocations('eval "$(rotator completion bash)"  # rotator x') == [["completion", "bash"]]
    assert invocations("docker build -t rotator . && .venv/bin/rotator -v check p.toml") == [["-v", "check", "p.toml"]]
