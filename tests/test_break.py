"""Faults found by trying to break rotator (issue "Eleven faults…"): each one as
the real run that showed it, against real rotator processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rotator.exitcodes import Exit
from rotator.plan import PlanError, load_plan
from rotator.secret import fingerprint
from rotator.testing import plans
from rotator.testing.adjutor import AdjutorStandIn

try:
    from tests import leakcheck as lc
except ImportError:
    import leakcheck as lc  # type: ignore[no-redef]

OLD = "sk_test_" + "0ld" * 10
COLLEAGUE = "sk_live_ChangedByColleague"


def envfile_primary(tmp: Path) -> Path:
    """Two .env stores; the primary is the one a colleague edits."""
    return plans.write_plan(
        tmp / "plan.toml",
        plans.plan(
            "break-cas",
            backends=[plans.envfile("store", tmp / "store.env", primary=True), plans.envfile("app", tmp / "app.env")],
        ),
    )


def test_envfile_primary_changed_after_arm_is_a_conflict(tmp_path: Path) -> None:
    """A colleague's edit of the primary between arm and key is never overwritten: exit 9."""
    for name in ("store.env", "app.env"):
        (tmp_path / name).write_text(f"# keep me\nADJUTOR_API_KEY={OLD}\n")
    plan = envfile_primary(tmp_path)
    new = lc.canary()

    run = lc.start("rotate", str(plan), "--key-stdin", "--json", logs=tmp_path / "logs")
    lc.wait_for("arm", lc.armed("break-cas"), proc=run)
    (tmp_path / "store.env").write_text(f"# keep me\nADJUTOR_API_KEY={COLLEAGUE}\n")
    run.send(new + "\n")
    code = run.wait(60)

    assert code == Exit.CONFLICT, run.err
    report = json.loads(run.out)
    assert report["state"] == "conflict"
    assert "changed since arm" in report["message"]
    assert COLLEAGUE in (tmp_path / "store.env").read_text()  # the colleague's value kept
    assert lc.env_fp(tmp_path / "app.env") == fingerprint(OLD)  # nothing past the check
    assert not lc.find(run.out + run.err, [new], "output")


def test_envfile_primary_unchanged_still_rotates_and_force_overrides(tmp_path: Path) -> None:
    for name in ("store.env", "app.env"):
        (tmp_path / name).write_text(f"ADJUTOR_API_KEY={OLD}\nOTHER=1\n")
    plan = envfile_primary(tmp_path)

    # Other lines edited after arm: not a conflict, and kept.
    new = lc.canary()
    run = lc.start("rotate", str(plan), "--key-stdin", "--json", logs=tmp_path / "a")
    lc.wait_for("arm", lc.armed("break-cas"), proc=run)
    (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={OLD}\nOTHER=2\n")
    run.send(new + "\n")
    assert run.wait(60) == Exit.DONE, run.err
    assert "OTHER=2" in (tmp_path / "store.env").read_text()
    assert lc.env_fp(tmp_path / "store.env") == fingerprint(new)

    # --force writes over a changed primary.
    newer = lc.canary()
    run = lc.start("rotate", str(plan), "--key-stdin", "--json", "--force", logs=tmp_path / "b")
    first = lc.latest("break-cas")
    assert first is not None
    lc.wait_for("arm", lambda: (row := lc.armed("break-cas")()) is not None and row.id != first.id, proc=run)
    (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={COLLEAGUE}\n")
    run.send(newer + "\n")
    assert run.wait(60) == Exit.DONE, run.err
    assert lc.env_fp(tmp_path / "store.env") == fingerprint(newer)


def same_name(tmp: Path, consumer: str = "app-env") -> Path:
    """A consumer named `consumer`; "app-env" is also a backend's name."""
    return plans.write_plan(
        tmp / "plan.toml",
        plans.plan(
            "break-names",
            backends=[
                plans.envfile("store", tmp / "store.env", primary=True),
                plans.envfile("app-env", tmp / "missing-dir/.env"),
            ],
            consumers=[plans.webhook(consumer, "http://127.0.0.1:9/reload", hmac_env="BREAK_HOOK_KEY")],
        ),
    )


def test_consumer_named_like_a_backend_is_a_plan_error(tmp_path: Path) -> None:
    (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={OLD}\n")
    plan = same_name(tmp_path)
    with pytest.raises(PlanError) as err:
        load_plan(plan)
    assert any("consumers[0].name" in p and "backends[1]" in p for p in err.value.problems), err.value.problems

    r = lc.cli("check", str(plan), env=lc.rotator_env(BREAK_HOOK_KEY="k"))
    assert r.returncode == Exit.PLAN_INVALID, r.stderr
    assert "consumers[0].name: 'app-env' is already the name of backends[1]" in r.stderr

    r = lc.cli("rotate", str(plan), "--key-stdin", input=lc.canary() + "\n", env=lc.rotator_env(BREAK_HOOK_KEY="k"))
    assert r.returncode == Exit.PLAN_INVALID, r.stderr
    assert (tmp_path / "store.env").read_text() == f"ADJUTOR_API_KEY={OLD}\n"


def test_arm_checks_are_kept_per_target_even_for_a_plan_built_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Plan built without load_plan's checks: the failing backend's check is not masked."""
    import asyncio

    from rotator.journal import Journal
    from rotator.pipeline import arm as arm_step
    from rotator.pipeline.state import RotationState

    (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={OLD}\n")
    plan = same_name(tmp_path, consumer="hook")
    monkeypatch.setenv("BREAK_HOOK_KEY", "k")
    p = load_plan(plan)
    p.consumers[0].name = "app-env"  # what the plan check now refuses

    async def arm() -> bool:
        rot = RotationState(p, Journal(), reason="test")
        try:
            return (await arm_step.run(rot)).ok
        finally:
            await arm_step.disarm(rot)

    assert asyncio.run(arm()) is False


# -- 5: a consumer that prints the key encoded ------------------------------------

ENCODER = r"""
import base64, pathlib, sys
key = next(l.split("=", 1)[1] for l in pathlib.Path(sys.argv[1]).read_text().splitlines()
           if l.startswith("ADJUTOR_API_KEY=")).encode()
form, code = sys.argv[2], int(sys.argv[3])
kind, _, offset = form.partition("@")
pad = b"xy"[: int(offset or 0)]  # the key `offset` bytes into what is encoded
text = {
    "base64": lambda: base64.b64encode(pad + key),
    "urlsafe-base64": lambda: base64.urlsafe_b64encode(pad + key),
    "hex": lambda: key.hex().encode(),
    "HEX": lambda: key.hex().upper().encode(),
    "reversed": lambda: key[::-1],
    "raw": lambda: key,
}[kind]().decode()
print(f"reloaded; token={text}", file=sys.stderr if code else sys.stdout)
sys.exit(code)
"""

ENCODED_FORMS = [
    *(f"{kind}@{o}" for kind in ("base64", "urlsafe-base64") for o in range(3)),
    "hex",
    "HEX",
    "reversed",
    "raw",
]


def test_a_key_printed_encoded_by_a_command_consumer_is_scrubbed(tmp_path: Path) -> None:
    """Each consumer prints the new key in one encoding (on stdout and exit 0, or on stderr
    and exit 1): none of it reaches the progress lines, the --json report, `show` or journal.db."""
    import sys

    (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={OLD}\n")
    (tmp_path / "encode.py").write_text(ENCODER)
    encoders = [
        plans.command(
            f"c{i}-{code}",
            [sys.executable, tmp_path / "encode.py", tmp_path / "store.env", form, str(code)],
            retries=0,
            reads_from=["store"],
        )
        for i, form in enumerate(ENCODED_FORMS)
        for code in (0, 1)
    ]
    store = plans.envfile("store", tmp_path / "store.env", primary=True)
    plans.write_plan(tmp_path / "plan.toml", plans.plan("break-encoded", backends=[store], consumers=encoders))
    new = lc.canary()

    r = lc.cli("-vv", "rotate", str(tmp_path / "plan.toml"), "--key-stdin", "--json", input=new + "\n")
    assert r.returncode == Exit.PARTIAL, r.stderr
    report = json.loads(r.stdout)
    details = {t["name"]: t.get("detail", "") for t in report["targets"] if t["name"] != "store"}
    assert len(details) == 2 * len(ENCODED_FORMS)
    assert all("[REDACTED]" in d for d in details.values()), details  # base64 keeps its edge characters
    assert lc.env_fp(tmp_path / "store.env") == fingerprint(new)
    shown = lc.cli("show", report["id"], "--json")
    hits = lc.find(r.stdout, [new], "--json report") + lc.find(r.stderr, [new], "progress and logs")
    hits += lc.find(shown.stdout, [new], "show --json") + lc.scan_journal([new])
    assert not hits, "\n".join(hits)


def test_scrub_covers_every_form_the_leak_suite_searches_for() -> None:
    """In-process: each form of `leakcheck.forms`, inside other text, for a key made before the
    matchers were built and for one made after (it must be covered at once)."""
    from rotator.secret import REDACTED, Secret, scrub

    first = Secret(lc.canary())
    scrub("build the matchers")
    later = Secret(lc.canary())
    others = [Secret(lc.canary()) for _ in range(300)]  # more than one compiled chunk
    for s in (first, later, others[-1]):
        for name, form in lc.forms(s.reveal()).items():
            for text in (f"got {form}", f"a={form}&b=1", f"{form}", f"[{form}]\n"):
                out = scrub(text)
                assert not lc.find(out, [s.reveal()], name), (name, out)
                assert REDACTED in out
    assert scrub("nothing secret in fp=3f2a9c0d11aa22bb") == "nothing secret in fp=3f2a9c0d11aa22bb"
    # Text decoded with surrogateescape (a command's undecodable output) is scrubbed, not an error.
    assert scrub(f"\udcff é {first.reveal()}") == f"\udcff é {REDACTED}"


# -- 7: a plan path that is not a regular file ------------------------------------


def test_check_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    """`rotator check` on a named pipe used to wait forever for a writer."""
    import os

    fifo = tmp_path / "plan.toml"
    os.mkfifo(fifo)
    for args in (("check", str(fifo)), ("rotate", str(fifo), "--key-stdin")):
        r = lc.cli(*args, input=lc.canary() + "\n", timeout=20)
        assert r.returncode == Exit.PLAN_INVALID, r.stderr
        assert lc.one_line(r.stderr).endswith(
            f"{fifo}: not a regular file (a named pipe); give the path of a plan file"
        )
    for path, kind in ((tmp_path, "a directory"), (Path("/dev/null"), "a character device")):
        with pytest.raises(PlanError) as err:
            load_plan(path)
        assert err.value.problems == [f"{path}: not a regular file ({kind}); give the path of a plan file"]


# -- 8: deeply dotted keys ----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a" + ".a" * 19_999 + " = 1\n",  # 40 KB: 40 s in tomllib (quadratic in the parts of one key)
        '[secret]\nname = "x"\n\n[' + ".".join(['"q"'] * 20_000) + "]\n",  # quoted parts, a table header
        "x = { " + " . ".join(["b"] * 20_000) + " = 1 }\n",  # spaces around dots, in an inline table
    ],
    ids=["bare", "quoted-header", "inline"],
)
def test_deeply_dotted_keys_are_refused_at_once(tmp_path: Path, text: str) -> None:
    plan = tmp_path / "deep.toml"
    plan.write_text(text)
    r = lc.cli("check", str(plan), timeout=20)  # the guard only: it answers within a second now
    assert r.returncode == Exit.PLAN_INVALID, r.stderr
    line = lc.one_line(r.stderr)
    assert "a dotted key with more than 16 parts" in line and str(plan) in line, line


def test_dots_in_strings_comments_and_values_are_not_key_parts(tmp_path: Path) -> None:
    """Only keys count: a string, a comment or a float may hold any number of dots."""
    many = ".".join(["a"] * 40)
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f'# {many}\n[secret]\nname = "dots"\ndescription = "{many}"\n\n'
        f'[[backends]]\nname = "store"\ntype = "envfile"\nprimary = true\npath = "{tmp_path}/{many}.env"\n'
        f"variable = 'ADJUTOR_API_KEY'  # {many}\n"
        f'\n[[consumers]]\nname = "c"\ntype = "command"\nargv = ["""/bin/true""", """{many}""", \'\'\'{many}\'\'\']\n'
        f'env = {{ A = """\n{many} \\""" #\n{many}""""", B = \'\'\'\n{many}\n\'\'\'\'\' }}\n'
    )
    p = load_plan(plan)
    assert p.secret.description == many
    assert p.consumers[0].env == {"A": f'{many} """ #\n{many}""', "B": f"{many}\n''"}  # type: ignore[attr-defined]


# -- 9: a key_pattern that backtracks -----------------------------------------------


def nested(tmp: Path, pattern: str, probe_url: str) -> Path:
    """A plan whose key_pattern is `pattern`."""
    return plans.write_plan(
        tmp / "plan.toml",
        plans.plan(
            "break-pattern",
            key_pattern=pattern,
            probe=plans.adjutor_probe(probe_url, retries=0),
            backends=[plans.envfile("store", tmp / "store.env", primary=True)],
        ),
    )


def test_a_nested_quantifier_pattern_never_blocks_the_window(tmp_path: Path, standin: AdjutorStandIn) -> None:
    """`^sk_live_(a+)+$` against `sk_live_` + 40 `a` + `!`: 2**40 steps for a backtracking engine,
    one linear pass for RE2; the paste is judged by the probe at once."""
    (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={standin.current_key}\n")
    plan = nested(tmp_path, "^sk_live_(a+)+$", standin.models_url)
    assert lc.cli("check", str(plan)).returncode == Exit.DONE

    before = (tmp_path / "store.env").read_text()
    r = lc.cli("rotate", str(plan), "--key-stdin", "--json", input="sk_live_" + "a" * 40 + "!\n", timeout=60)
    assert r.returncode == Exit.KEY_REFUSED, r.stderr
    assert "does not look like an Adjutor key" in r.stderr
    assert json.loads(r.stdout)["state"] == "refused"
    assert (tmp_path / "store.env").read_text() == before

    new = standin.reset()  # a matching key is still taken
    nested(tmp_path, "^sk_test_([A-Za-z0-9]+)+$", standin.models_url)
    r = lc.cli("rotate", str(plan), "--key-stdin", input=new + "\n", timeout=60)
    assert r.returncode == Exit.DONE, r.stderr
    assert "does not look like" not in r.stderr


@pytest.mark.parametrize(
    ("pattern", "why"),
    [("^sk_(?=live)[a-z_]+$", "invalid perl operator: (?="), (r"^(sk)_\1$", "invalid escape sequence: \\1")],
)
def test_a_pattern_re2_cannot_run_is_refused_at_check(tmp_path: Path, pattern: str, why: str) -> None:
    plan = nested(tmp_path, pattern, "http://127.0.0.1:9/")
    r = lc.cli("check", str(plan))
    assert r.returncode == Exit.PLAN_INVALID, r.stderr
    line = lc.one_line(r.stderr)
    assert "secret.key_pattern: not a regular expression RE2 runs" in line and why in line, line
