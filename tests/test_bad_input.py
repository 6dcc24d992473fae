"""The bad input suite: generated plan files and pasted keys (hypothesis).

Plans: a valid plan mutated (keys dropped, unknown keys added, values replaced
by wrong types, huge values, odd unicode, deep nesting), plus arbitrary bytes,
non-UTF-8 bytes and deeply nested TOML.  Through `load_plan` in-process for most,
and `rotator check` in a subprocess for a handful: always a PlanError (exit 2)
with one line per problem starting with the file name; never a traceback.

Pasted keys: empty, whitespace, control characters, megabytes of text, binary.
Through `clean_paste` in-process for most, and `rotator rotate --key-stdin` in a
subprocess for a handful: a defined exit code (3: rejected), one line, never a
traceback, never a write (the env files are unchanged byte for byte).

The example counts below are the figures in the README's Reliability section.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from rotator.exitcodes import Exit
from rotator.plan import Plan, PlanError, load_plan
from rotator.secret import MAX_KEY_LENGTH, CleanKey, KeyRejected, clean_paste
from rotator.testing import plans
from rotator.testing.adjutor import AdjutorStandIn

try:
    from tests import leakcheck as lc
except ImportError:
    import leakcheck as lc  # type: ignore[no-redef]

SCALE = float(os.environ.get("ROTATOR_FUZZ_SCALE", "1"))  # e.g. 20 for a long hunt
PLAN_EXAMPLES = int(400 * SCALE)  # mutated plans, in-process
RAW_PLAN_EXAMPLES = int(200 * SCALE)  # arbitrary text and bytes as a plan file, in-process
KEY_EXAMPLES = int(1500 * SCALE)  # pasted keys, in-process
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BASE: dict[str, Any] = {
    "secret": {"name": "adjutor", "max_age_days": 90, "key_pattern": "^sk_(live|test)_[A-Za-z0-9]+$"},
    "probe": {"preset": "adjutor", "check_old_key": True, "timeout": 5.0, "headers": {"Authorization": "Bearer {key}"}},
    "rotation": {"deadline": 60.0, "max_threads": 32},
    "backends": [
        {"name": "store", "type": "envfile", "primary": True, "path": "/srv/app/.env", "variable": "ADJUTOR_API_KEY"},
        {
            "name": "vault",
            "type": "vault",
            "url": "https://vault.example:8200",
            "path": "apps/billing",
            "token": {"env": "VAULT_TOKEN"},
            "retries": 2,
        },
        {"name": "aws", "type": "aws", "secret_id": "prod/adjutor", "region": "eu-west-1", "json_key": "api_key"},
    ],
    "consumers": [
        {
            "name": "hook",
            "type": "webhook",
            "url": "https://app.example/reload",
            "hmac_key": {"env": "HOOK_KEY"},
            "reads_from": ["store"],
        },
        {"name": "proc", "type": "signal", "pidfile": "/run/app.pid", "signal": "HUP"},
        {"name": "cmd", "type": "command", "argv": ["systemctl", "reload", "app"], "env": {"A": "b"}},
    ],
    "schedules": [{"job": "sync", "cron": "*/15 * * * *"}],
}

ODD = [
    "",
    " ",
    "\x00",
    "a\nb",
    "\r\n",
    "\t",
    "\u202eevil",  # right-to-left override
    "\u200b",  # zero-width space
    "\ufeff",  # byte order mark
    "e\u0301\u0301\u0301",  # stacked combining marks
    "😀" * 50,
    "Ω" * 1000,
    "x" * 200_000,  # huge
    "../../etc/passwd",
    "{key}",
    "$(reboot)",
    "\x7f",
    "\ud800",  # a lone surrogate: not encodable, TOML refuses its escape
]


# -- a small TOML writer (inline tables everywhere: all TOML 1.0) ------------------


def toml_value(v: Any) -> str:
    if isinstance(v, Deep):
        return v.toml()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string, \uXXXX escapes included
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(type(v))


def to_toml(plan: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in plan.items() if v is not None)


@dataclass(frozen=True)
class Deep:
    """A value nested `depth` arrays or inline tables deep (written flat: no recursion here)."""

    depth: int
    kind: str

    def toml(self) -> str:
        if self.kind == "list":
            return "[" * self.depth + "1" + "]" * self.depth
        return "{k = " * self.depth + "1" + "}" * self.depth


# -- strategies ------------------------------------------------------------------

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.text(max_size=40),
    st.sampled_from(ODD),
)
values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=12,
) | st.builds(Deep, st.integers(1, 3000), st.sampled_from(["list", "dict"]))
keys = st.one_of(st.text(min_size=1, max_size=20), st.sampled_from(["name", "type", "primary", "path", "__class__"]))


@st.composite
def mutated_plans(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A copy of BASE with 1-4 mutations; returns (TOML text, what was done)."""
    plan = copy.deepcopy(BASE)
    done = []
    for _ in range(draw(st.integers(1, 4))):
        node: Any = plan
        path: list[Any] = []
        while True:  # walk down to a random container
            children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
            children = [(k, v) for k, v in children if isinstance(v, dict | list)]
            if not children or draw(st.integers(0, 2)) == 0:
                break
            k, node = draw(st.sampled_from(children))
            path.append(k)
        op = draw(st.sampled_from(["drop", "unknown", "replace"]))
        if isinstance(node, dict) and node and op in ("drop", "replace"):
            k = draw(st.sampled_from(sorted(node)))
            if op == "drop":
                del node[k]
            else:
                node[k] = draw(values)
            done.append(f"{op} {[*path, k]}")
        elif isinstance(node, dict):
            node[draw(keys)] = draw(values)
            done.append(f"unknown key in {path}")
        elif node:
            i = draw(st.integers(0, len(node) - 1))
            node[i] = draw(values)
            done.append(f"replace {[*path, i]}")
    return to_toml(plan), done


def assert_plan_error(path: Path, data: bytes) -> None:
    """`load_plan` of `data`: a Plan, or a PlanError of one-line problems naming the file; nothing else."""
    path.write_bytes(data)
    try:
        result = load_plan(path)
    except PlanError as exc:
        assert exc.problems
        for line in exc.problems:
            assert line.startswith(f"{path}: "), line[:300]
            assert line.isprintable(), line[:300]  # no line break, no control character
        return
    assert isinstance(result, Plan)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plans") / "plan.toml"


def test_the_base_plan_is_valid(scratch: Path) -> None:
    scratch.write_text(to_toml(BASE))
    plan = load_plan(scratch)
    assert [b.name for b in plan.backends] == ["store", "vault", "aws"]


@settings(FAST, max_examples=PLAN_EXAMPLES)
@given(mutated_plans())
def test_mutated_plans_fail_with_one_line_per_problem(scratch: Path, mutated: tuple[str, list[str]]) -> None:
    text, done = mutated
    note(f"mutations: {done}")
    assert_plan_error(scratch, text.encode("utf-8", "surrogatepass"))


@settings(FAST, max_examples=RAW_PLAN_EXAMPLES)
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.text(max_size=2000).map(lambda t: t.encode("utf-8", "surrogatepass")),
        mutated_plans()
        .flatmap(lambda m: st.tuples(st.just(m[0].encode("utf-8", "surrogatepass")), st.binary(min_size=1, max_size=4)))
        .map(lambda t: t[0][: len(t[0]) // 2] + b"\xff" + t[1] + t[0][len(t[0]) // 2 :]),  # not UTF-8
        st.integers(1, 100_000).map(lambda n: b"a = " + b"[" * n + b"]" * n),  # deep nesting
        st.integers(1, 100_000).map(lambda n: b"a = " + b"{b = " * n + b"1" + b"}" * n),
    )
)
def test_arbitrary_bytes_as_a_plan(scratch: Path, data: bytes) -> None:
    assert_plan_error(scratch, data)


def test_problems_are_all_reported_and_unknown_keys_never_pass(scratch: Path) -> None:
    plan = json.loads(json.dumps(BASE))
    del plan["secret"]["name"]
    plan["backends"][0]["colour"] = "blue"
    plan["backends"][1]["timeout"] = "soon"
    plan["consumers"][2]["argv"] = []
    plan["secret"]["key_pattern"] = "a{4294967296}"
    plan["oops\nsecond line"] = 1
    scratch.write_text(to_toml(plan))
    with pytest.raises(PlanError) as exc:
        load_plan(scratch)
    where = [line.split(": ")[1] for line in exc.value.problems]
    assert sorted(where) == sorted(
        [
            "secret.name",
            "secret.key_pattern",
            "oops\\nsecond line",
            "backends[0].colour",
            "backends[1].timeout",
            "consumers[2].argv",
        ]
    ), exc.value.problems


CHECKED = {
    "wrong-types.toml": to_toml({**BASE, "secret": {"name": 7}, "rotation": {"deadline": "long"}}).encode(),
    "missing.toml": to_toml({"probe": BASE["probe"]}).encode(),
    "unknown.toml": to_toml({**BASE, "secrets": {}, "backend": []}).encode(),
    "huge.toml": to_toml({**BASE, "secret": {"name": "x" * 500_000}}).encode(),
    "unicode.toml": to_toml({**BASE, "secret": {"name": "\u202e😀\u200b"}, "\ufeffkey": "\u0301"}).encode(),
    "deep.toml": b"a = " + b"[" * 50_000 + b"]" * 50_000,
    "binary.toml": bytes(range(256)) * 8,
    "latin1.toml": '[secret]\nname = "café"\n'.encode("latin-1"),
}


def test_rotator_check_in_a_subprocess(tmp_path: Path) -> None:
    files = []
    for name, data in CHECKED.items():
        (tmp_path / name).write_bytes(data)
        files.append(str(tmp_path / name))
    for f in files:  # one at a time: exit 2, every stderr line names the file
        r = lc.cli("check", f)
        assert r.returncode == Exit.PLAN_INVALID, (f, r.stderr[-500:])
        assert r.stdout == "" and "Traceback" not in r.stderr
        lines = r.stderr.splitlines()
        assert lines and all(line.startswith(f"{f}: ") for line in lines), (f, r.stderr[:500])
    r = lc.cli("check", *files)  # all at once: each file's problems, still exit 2
    assert r.returncode == Exit.PLAN_INVALID and "Traceback" not in r.stderr
    assert {line.split(": ")[0] for line in r.stderr.splitlines()} == set(files)


# -- pasted keys ------------------------------------------------------------------

pastes = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]), max_size=50),
    st.text(alphabet=" \t\r\n\"'`", max_size=20).map(lambda t: t + "Bearer" + t),
    st.builds(lambda a, b, c: a + "sk_test_" + b + c, st.text(max_size=5), st.text(max_size=40), st.text(max_size=5)),
    st.integers(MAX_KEY_LENGTH - 2, 3_000_000).map(lambda n: "k" * n),  # megabytes of text
    st.binary(min_size=1, max_size=64).map(lambda b: b"sk_test_" + b),
)


@settings(FAST, max_examples=KEY_EXAMPLES)
@given(pastes)
def test_pasted_keys_are_cleaned_or_rejected_in_one_line(raw: str | bytes) -> None:
    try:
        clean = clean_paste(raw)
    except KeyRejected as exc:
        message = str(exc)
        assert message and message.isprintable() and len(message) < 200
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        core = text.strip()
        if len(core) >= 8:
            assert core not in message  # the rejected value is never echoed
        return
    assert isinstance(clean, CleanKey)
    value = clean.secret.reveal()
    assert value and len(value) <= MAX_KEY_LENGTH
    assert value.isprintable() and value.isascii() and not any(ch.isspace() for ch in value)
    assert not value.lower().startswith("bearer ")
    text = raw.decode() if isinstance(raw, bytes) else raw
    assert value in text  # only trimmed, never altered


PASTES: dict[str, bytes] = {
    "empty": b"",
    "newline": b"\n",
    "whitespace": b" \t \r\n \n",
    "quotes only": b'""\n',
    "bearer only": b"Bearer \n",
    "control chars": b"sk_test_abc\x07def\x1b[31m\n",
    "NUL": b"sk_test_abc\x00def\n",
    "inner space": b"sk_test_abc def\n",
    "megabytes": b"sk_test_" + b"A" * 3_000_000 + b"\n",
    "binary": bytes(range(256)) * 16,
    "not UTF-8": b"sk_test_\xff\xfe\xfd\n",
    "curly quotes from a document": "“sk_test_abc”\n".encode(),
    "accents": "sk_test_ünïcödé-😀\n".encode(),
    "not a key at all (the probe refuses it)": b"hello-world\n",
}


def test_pasted_keys_through_rotate(tmp_path: Path, standin: AdjutorStandIn) -> None:
    """`rotate --key-stdin` with each bad paste: exit 3, one line, no traceback, nothing written."""
    old = standin.current_key
    (tmp_path / "app").mkdir()
    (tmp_path / "store.env").write_text(f"# the store\nADJUTOR_API_KEY={old}\n")
    (tmp_path / "app" / ".env").write_text(f"PORT=1\nADJUTOR_API_KEY='{old}'\n")
    plan = plans.write_plan(
        tmp_path / "plan.toml",
        plans.plan(
            "pastes",
            probe=plans.adjutor_probe(standin.models_url, retries=0),
            backends=[
                plans.envfile("store", tmp_path / "store.env", primary=True),
                plans.envfile("app", tmp_path / "app/.env"),
            ],
            consumers=[plans.command("reloader", [sys.executable, "-c", f"open('{tmp_path}/reloaded', 'w')"])],
        ),
    )
    standin.reset()

    def files() -> dict[str, bytes]:
        return {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    before = files()
    for name, paste in PASTES.items():
        r = lc.cli("rotate", str(plan), "--key-stdin", "--json", input=paste)
        assert r.returncode == Exit.KEY_REFUSED, (name, r.stderr[-500:])
        line = lc.one_line(r.stderr)
        assert line.startswith("rotator: ") or "refused" in line, (name, line)
        assert json.loads(r.stdout)["state"] == "refused", name
        assert files() == before, name  # nothing written, not even a temp file
    assert not (tmp_path / "reloaded").exists()


def test_an_old_key_no_header_can_carry_does_not_crash_the_revocation_check() -> None:
    """The old key comes from a store, not from clean_paste: it may hold anything."""
    import asyncio

    import httpx

    from rotator.plan import ProbeSpec
    from rotator.probe import ProbeOutcome, Prober
    from rotator.secret import Secret

    async def check() -> Any:
        async with httpx.AsyncClient() as client:
            prober = Prober(ProbeSpec(preset="adjutor", url="http://127.0.0.1:9/models"), client)
            return await prober.old_key_revoked(Secret("sk_live_café"))

    result = asyncio.run(check())
    assert result.outcome is ProbeOutcome.UNAVAILABLE and "header" in result.detail


# -- forged webhooks at a consumer -------------------------------------------------

HOOK_EXAMPLES = int(500 * SCALE)


@settings(FAST, max_examples=HOOK_EXAMPLES)
@given(
    ts=st.one_of(
        st.text(max_size=30),
        st.integers().map(str),
        st.integers(1, 4000).map(lambda n: "9" * n),
        st.just("1e308"),
        st.just(" 17 "),
    ),
    sig=st.one_of(st.text(max_size=80), st.binary(max_size=40).map(lambda b: "v1=" + b.hex())),
    body=st.binary(max_size=200),
)
def test_forged_webhooks_are_refused_never_crash_the_consumer(ts: str, sig: str, body: bytes) -> None:
    """`rotator.consumer.verify_webhook` on headers an attacker chose: InvalidSignature, nothing else."""
    import time

    from rotator.consumer import SIGNATURE_HEADER, TIMESTAMP_HEADER, InvalidSignature, sign, verify_webhook

    headers = {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sig}
    with pytest.raises(InvalidSignature):
        verify_webhook(b"the-shared-key", headers, body)
    # ...while the real thing, the same body, passes.
    now = int(time.time())
    good = {TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: sign(b"the-shared-key", now, body)}
    assert verify_webhook(b"the-shared-key", good, body) == now
