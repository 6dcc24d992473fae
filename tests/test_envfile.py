"""The envfile backend: one variable rewritten, every other byte kept, file 0600 and atomic."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from rotator_plugins.envfile import EnvFileBackend, EnvFileError, encode_value, lookup, parse_dotenv, update_dotenv

from rotator.plugin import PluginContext, PluginError
from rotator.secret import Secret

try:
    import dotenv
except ImportError:  # pragma: no cover - python-dotenv is in the test extra
    dotenv = None  # type: ignore[assignment]

KEY = "sk_live_abc123"
VAR = "ADJUTOR_API_KEY"


# --- helpers ---------------------------------------------------------------------


def backend(path: Path, **extra: Any) -> EnvFileBackend:
    data = {"name": "env", "type": "envfile", "path": str(path), "variable": VAR, **extra}
    return EnvFileBackend(EnvFileBackend.Settings.model_validate(data), PluginContext(max_threads=2))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def write(b: EnvFileBackend, value: str) -> None:
    run(b.write(Secret(value), token="rot-1/env", expected_version=None))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def dotenv_value(text: str, key: str) -> str | None:
    assert dotenv is not None
    return dotenv.dotenv_values(stream=io.StringIO(text))[key]


def shell_value(path: Path, key: str, shell: str = "bash") -> str:
    script = f'set -a; . "$1"; printf %s "${{{key}}}"'
    out = subprocess.run([shell, "-c", script, shell, str(path)], capture_output=True, check=True)
    return out.stdout.decode()


def representable(value: str) -> bool:
    """Values that no quoting makes python-dotenv and a shell read alike (documented refusals)."""
    if value.endswith("\\") or re.search(r"\$\{[^}:]*(?::-[^}]*)?\}", value):
        return False
    return not (("'" in value or "\\\\" in value) and ("$" in value or "`" in value))


# Printable, no line breaks, rich in what quoting gets wrong.
SPECIALS = list("#'\"$\\` =;!*~{}()&|<>?:-")
printable = st.characters(exclude_categories=("Cc", "Cs", "Co", "Cn")).filter(str.isprintable)
values = st.text(st.sampled_from(SPECIALS) | printable, max_size=40)

other_keys = st.sampled_from(["OTHER", "DB_URL", "export_me", "PORT", "A1"])
comment_lines = st.text(printable | st.sampled_from(SPECIALS), max_size=30).map(lambda t: "#" + t)
blank_lines = st.sampled_from(["", "   ", "\t"])


@st.composite
def assignment_lines(draw: st.DrawFn) -> str:
    key = draw(other_keys)
    value = draw(values.filter(representable))
    prefix = draw(st.sampled_from(["", "export "]))
    suffix = draw(st.sampled_from(["", "  # trailing note"]))
    return f"{prefix}{key}={encode_value(value)}{suffix}"


surrounding = st.lists(st.one_of(comment_lines, blank_lines, assignment_lines()), max_size=8)
old_line_shapes = st.sampled_from(
    [
        "{var}=sk_live_old",
        "export {var}=sk_live_old",
        "{var}='sk_live_old' # rotated by hand",
        '{var}="sk_live_old"',
        "{var}=sk_live_old # note",
        "{var}='sk_live_old'#glued",
        "{var} # declared, no value",
        "{var} = sk_live_old",
        "{var}=",
    ]
)


# --- quoting -------------------------------------------------------------------------


def test_adjutor_key_is_written_bare() -> None:
    assert encode_value(KEY) == KEY
    assert update_dotenv("", VAR, KEY) == f"{VAR}={KEY}\n"


@given(values)
@settings(max_examples=400)
def test_encode_refuses_only_what_no_quoting_can_carry(value: str) -> None:
    if not representable(value):
        with pytest.raises(EnvFileError) as info:
            encode_value(value)
        assert value not in str(info.value) or len(value) < 2
        return
    text = f"# head\nA=1\n{VAR}={encode_value(value)}\nB='two'\nC=\"three\"\n"
    assert lookup(text, VAR) == value
    if dotenv is not None:
        assert dotenv_value(text, VAR) == value
        assert dotenv_value(text, "B") == "two"
        assert dotenv_value(text, "C") == "three"


@pytest.mark.parametrize(
    "value",
    [
        KEY,
        "a b#c",
        "it's",
        'say "hi"',
        "a\\b",
        "a\\\\b",
        "$HOME and $(id)",
        "`uname`",
        "x # y",
        "'",
        '"',
        "\\'",
        "~/x",
        "",
    ],
)
@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_shell_source_reads_tricky_values_back(tmp_path: Path, value: str, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    path = tmp_path / "app.env"
    path.write_text(f"# app\nexport OTHER='x y'\n{VAR}=placeholder\n")
    write(backend(path), value)
    assert shell_value(path, VAR, shell) == value
    assert shell_value(path, "OTHER", shell) == "x y"
    if dotenv is not None:
        assert dotenv_value(path.read_text(), VAR) == value


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "end\\", "${HOME}", "${X:-y}", "$x'y", "a\\\\$b", "bell\x07"])
def test_unwritable_values_are_refused_without_echoing_them(tmp_path: Path, value: str) -> None:
    path = tmp_path / "app.env"
    path.write_text(f"{VAR}=old\n")
    before = path.read_bytes()
    with pytest.raises(PluginError) as info:
        write(backend(path), value)
    message = str(info.value)
    assert "\n" not in message and value not in message and str(path) in message
    assert info.value.retryable is False
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["app.env"]


# --- round trips through the file ---------------------------------------------------------


@given(
    before=surrounding,
    after=surrounding,
    shape=st.none() | old_line_shapes,
    value=values.filter(representable),
    final_newline=st.booleans(),
)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_write_then_read_gives_value_and_keeps_other_lines(
    before: list[str], after: list[str], shape: str | None, value: str, final_newline: bool
) -> None:
    lines = [*before, *([shape.format(var=VAR)] if shape else []), *after]
    original = "\n".join(lines) + ("\n" if final_newline and lines else "")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "app.env"
        path.write_text(original)
        b = backend(path)
        write(b, value)
        new = path.read_text()
        stored = run(b.read()).secret
        assert (stored.reveal() if stored else "") == value
        assert lookup(new, VAR) == value
        if dotenv is not None:
            assert dotenv_value(new, VAR) == value
            old_values = dotenv.dotenv_values(stream=io.StringIO(original), interpolate=False)
            new_values = dotenv.dotenv_values(stream=io.StringIO(new), interpolate=False)
            assert {k: v for k, v in new_values.items() if k != VAR} == {
                k: v for k, v in old_values.items() if k != VAR
            }
        new_lines = new.split("\n")
        if shape is None:
            # Appended on a line of its own; everything before is byte-for-byte the same.
            assert new.startswith(original)
            tail = new[len(original) :]
            assert tail.strip("\n") == f"{VAR}={encode_value(value)}"
        else:
            i = len(before)
            assert new_lines[:i] == lines[:i]
            assert new_lines[i + 1 : i + 1 + len(after)] == after
            old_line = lines[i]
            # Only the value changed: prefix (export, spacing) and inline comment stay.
            if "sk_live_old" in old_line:
                head = old_line.split("sk_live_old")[0].rstrip("'\"")
            else:
                head = old_line.split("#")[0].rstrip()
            assert new_lines[i].startswith(head)
            if "#" in old_line:
                assert new_lines[i].endswith(old_line[old_line.index("#") :])
        assert mode(path) == 0o600
        assert sorted(os.listdir(d)) == ["app.env"]


def test_every_binding_of_the_variable_is_updated_and_the_last_wins(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text(f"{VAR}=sk_live_one\nX=1\nexport {VAR}='sk_live_two'  # second\n")
    write(backend(path), KEY)
    assert path.read_text() == f"{VAR}={KEY}\nX=1\nexport {VAR}={KEY}  # second\n"


def test_crlf_file_keeps_its_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_bytes(b"# win\r\nA=1\r\n")
    write(backend(path), KEY)
    assert path.read_bytes() == f"# win\r\nA=1\r\n{VAR}={KEY}\r\n".encode()


def test_file_without_final_newline_gets_the_variable_on_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text("A=1")
    write(backend(path), KEY)
    assert path.read_text() == f"A=1\n{VAR}={KEY}\n"


def test_multiline_value_mentioning_the_variable_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    original = f'CERT="line one\n{VAR}=not-a-binding\nline three"\n{VAR}=sk_live_old\n'
    path.write_text(original)
    write(backend(path), KEY)
    assert path.read_text() == original.replace(f"{VAR}=sk_live_old", f"{VAR}={KEY}")
    if dotenv is not None:
        assert dotenv_value(path.read_text(), "CERT") == f"line one\n{VAR}=not-a-binding\nline three"


def test_unparseable_line_for_the_variable_fails_preflight_and_write(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text(f"{VAR}='unterminated\nA=1\n")
    b = backend(path)
    check = run(b.preflight())
    assert check.ok is False and "line 1" in check.detail and "\n" not in check.detail
    with pytest.raises(PluginError):
        write(b, KEY)


def test_parser_reports_broken_lines() -> None:
    parsed = parse_dotenv("A=1\nB='x' junk\nC=3\n")
    assert [b.key for b in parsed.bindings] == ["A", "C"]
    assert parsed.error_lines == [2]


# --- file handling -----------------------------------------------------------------------------


def test_written_file_is_0600_and_keeps_owner(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text(f"{VAR}=sk_live_old\n")
    path.chmod(0o644)
    if os.geteuid() == 0:
        os.chown(path, 1234, 2345)
    write(backend(path), KEY)
    assert mode(path) == 0o600
    if os.geteuid() == 0:
        assert (path.stat().st_uid, path.stat().st_gid) == (1234, 2345)


def test_no_temp_file_is_left_when_the_rename_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "app.env"
    path.write_text(f"{VAR}=sk_live_old\n")

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(PluginError) as info:
        write(backend(path), KEY)
    assert "No space left" in str(info.value) and KEY not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["app.env"]
    assert path.read_text() == f"{VAR}=sk_live_old\n"


def test_backup_only_when_configured(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text(f"{VAR}=sk_live_old\n")
    write(backend(path), KEY)
    assert sorted(os.listdir(tmp_path)) == ["app.env"]

    b = backend(path, backup=True)
    write(b, "sk_live_newer")
    bak = tmp_path / "app.env.bak"
    assert sorted(os.listdir(tmp_path)) == ["app.env", "app.env.bak"]
    assert bak.read_text() == f"{VAR}={KEY}\n"
    assert mode(bak) == 0o600
    # A retried write of the same key leaves the backup holding the previous file.
    write(b, "sk_live_newer")
    assert bak.read_text() == f"{VAR}={KEY}\n"


def test_absent_file_fails_preflight_unless_create(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    check = run(backend(path).preflight())
    assert check.ok is False
    assert check.detail == f"{path} does not exist; create it or set create = true"
    with pytest.raises(PluginError):
        write(backend(path), KEY)
    assert not path.exists()

    b = backend(path, create=True)
    assert run(b.preflight()).ok is True
    assert run(b.read()).secret is None
    write(b, KEY)
    assert path.read_text() == f"{VAR}={KEY}\n"
    assert mode(path) == 0o600


def test_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "app.env"
    os.mkfifo(fifo)
    check = run(backend(fifo).preflight())
    assert check.ok is False and "not a regular file" in check.detail
    (tmp_path / "dir.env").mkdir()
    assert run(backend(tmp_path / "dir.env").preflight()).ok is False


def test_missing_directory_fails_preflight(tmp_path: Path) -> None:
    check = run(backend(tmp_path / "nope" / "app.env", create=True).preflight())
    assert check.ok is False and "does not exist" in check.detail


def test_preflight_reports_presence_and_loose_mode(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text("A=1\n")
    path.chmod(0o640)
    check = run(backend(path).preflight())
    assert check.ok is True and "absent" in check.detail
    assert any("0640" in w for w in check.warnings)
    path.write_text(f"A=1\n{VAR}={KEY}\n")
    check = run(backend(path).preflight())
    assert check.ok is True and "present (line 2)" in check.detail
    assert KEY not in check.detail


def test_read_returns_the_stored_value(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text(f"export {VAR}='{KEY}' # current\n")
    stored = run(backend(path).read())
    assert stored.secret == Secret(KEY) and stored.version == f"fp:{Secret(KEY).fingerprint}"
    path.write_text("A=1\n")
    absent = run(backend(path).read())
    assert absent.secret is None and absent.version == "absent"


def test_write_checks_the_version_read_at_arm(tmp_path: Path) -> None:
    """Check-and-set on the variable's value: a changed value is a Conflict, a retry is not."""
    from rotator.plugin import Conflict

    path = tmp_path / "app.env"
    path.write_text(f"{VAR}={KEY}\nOTHER=1\n")
    b = backend(path)
    armed = run(b.read()).version
    path.write_text(f"{VAR}=sk_live_ChangedByColleague\nOTHER=1\n")
    with pytest.raises(Conflict, match="changed since arm"):
        run(b.write(Secret("sk_live_new1"), token="t", expected_version=armed))
    assert "ChangedByColleague" in path.read_text()
    path.write_text(f"{VAR}={KEY}\nOTHER=2\n")  # other lines changed: no conflict
    run(b.write(Secret("sk_live_new1"), token="t", expected_version=armed))
    run(b.write(Secret("sk_live_new1"), token="t", expected_version=armed))  # the same write retried
    assert path.read_text() == f"{VAR}=sk_live_new1\nOTHER=2\n"


def test_symlink_outside_the_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "real.env").write_text("A=1\n")
    conf = tmp_path / "conf"
    conf.mkdir()
    link = conf / "app.env"
    link.symlink_to(outside / "real.env")
    b = backend(link)
    check = run(b.preflight())
    assert check.ok is False and "symlink" in check.detail and "\n" not in check.detail
    with pytest.raises(PluginError) as info:
        write(b, KEY)
    assert info.value.retryable is False
    assert (outside / "real.env").read_text() == "A=1\n"


def test_symlink_inside_the_directory_is_written_through(tmp_path: Path) -> None:
    (tmp_path / "real.env").write_text("A=1\n")
    link = tmp_path / "app.env"
    link.symlink_to("real.env")
    write(backend(link), KEY)
    assert link.is_symlink()
    assert (tmp_path / "real.env").read_text() == f"A=1\n{VAR}={KEY}\n"
    assert sorted(os.listdir(tmp_path)) == ["app.env", "real.env"]


def test_settings_are_checked() -> None:
    good = {"name": "env", "type": "envfile", "path": "/tmp/x.env", "variable": VAR}
    EnvFileBackend.Settings.model_validate(good)
    for bad in ({"variable": "1BAD"}, {"variable": "A-B"}, {"variable": ""}, {"mode": 0o644}, {"path": "/tmp/"}):
        with pytest.raises(ValidationError):
            EnvFileBackend.Settings.model_validate({**good, **bad})
    with pytest.raises(ValidationError):
        EnvFileBackend.Settings.model_validate({"name": "env", "type": "envfile", "variable": VAR})
    assert EnvFileBackend.can_be_primary is True


# --- what a SIGKILLed write leaves (issue 16, item 6) ------------------------------

_KILLED_WRITER = """
import os, sys, time
from pathlib import Path
import rotator_plugins._files as files

def hang(src, dst):  # the temp file is written, fsynced and closed: stop before the rename
    print("written", flush=True)
    time.sleep(600)

os.replace = hang
files.atomic_write(Path(sys.argv[1]), sys.argv[2].encode(), None)
"""


def killed_write(path: Path, text: str) -> Path:
    """Run `atomic_write` in a real process, SIGKILL it between the temp file and the
    rename; return the temp file it left (0600, `text` inside)."""
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path), text], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "written\n"
    finally:
        proc.kill()
        proc.wait()
    (left,) = path.parent.glob(f".{path.name}.*.rotator-tmp")
    assert mode(left) == 0o600 and left.read_text() == text
    return left


def test_a_write_removes_at_once_what_a_killed_write_left(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(f"{VAR}=sk_live_old\n")
    left = killed_write(env, f"{VAR}={KEY}\n")
    b = backend(env)
    detail = run(b.write(Secret(KEY), token="rot-2/env", expected_version=None)).detail
    assert not left.exists(), "the new key stayed in a temp file beside .env"
    assert "removed 1 temp file(s)" in detail
    assert lookup(env.read_text(), VAR) == KEY
    assert list(tmp_path.iterdir()) == [env]


def test_a_resume_that_finds_the_key_written_still_removes_the_leftover(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(f"{VAR}={KEY}\n")  # the rename of an earlier attempt landed; a later one was killed
    left = killed_write(env, f"{VAR}={KEY}\n")
    detail = run(backend(env).write(Secret(KEY), token="rot-1/env", expected_version=None)).detail
    assert "already current" in detail and not left.exists()


def test_arm_removes_a_killed_writers_leftover_at_once(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(f"{VAR}=sk_live_old\n")
    left = killed_write(env, f"{VAR}={KEY}\n")
    check = run(backend(env).preflight())
    assert check.ok and not left.exists()
    assert any("interrupted write" in w for w in check.warnings)


def test_a_live_writers_temp_file_is_left_alone(tmp_path: Path) -> None:
    """Another live process (a second rotator writing the same file) owns its temp file."""
    env = tmp_path / ".env"
    env.write_text(f"{VAR}=sk_live_old\n")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        live = tmp_path / f"..env.{other.pid}-abcd1234.rotator-tmp"
        live.write_text("in progress")
        write(backend(env), KEY)
        assert live.exists()
    finally:
        other.kill()
        other.wait()
    write(backend(env), KEY)  # its writer is gone now
    assert not live.exists()
