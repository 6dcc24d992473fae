"""The clipboard key source on a real X server (Xvfb) with xclip, probing against the Adjutor stand-in.

Reads like the operator's minute: rotator is armed and watching; the operator
copies a URL, a sentence, the current key (all ignored), then a wrong key
(taken, refused by the probe, watching goes on), then the reset's new key
(taken, accepted); the clipboard is cleared only if it still holds the key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from rotator.clipboard import XCLIP, ClipboardSource, ClipboardUnavailable, Ignored, Mode, Tool, detect
from rotator.plan import ProbeSpec
from rotator.probe import ProbeOutcome, Prober
from rotator.secret import Secret
from rotator.testing.adjutor import AdjutorStandIn, new_key
from tests import forkserver
from tests.leakcheck import find, scan_tree
from tests.xserver import XServer, need, xserver_fixture

xserver = pytest.fixture(scope="module")(xserver_fixture)


async def until(what: str, cond: Callable[[], object], timeout: float = 20.0) -> None:
    """Wait for `cond` (no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def copy(x: XServer, value: str) -> None:
    await asyncio.to_thread(x.copy, value)


def prober(standin: AdjutorStandIn, client: httpx.AsyncClient) -> Prober:
    return Prober(ProbeSpec(url=standin.models_url, headers={"Authorization": "Bearer {key}"}, retries=0), client)


def ps_args() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("native", [True, False], ids=["xfixes", "poll"])
def test_takes_the_new_key_ignores_the_rest_and_keeps_watching_after_a_refusal(
    native: bool,
    xserver: XServer,
    standin: AdjutorStandIn,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    old = standin.current_key
    wrong = new_key()
    before = "sk_test_" + "B" * 40  # on the clipboard before arming: not new, not taken
    xserver.copy(before)
    seen: list[str] = []

    async def operator_minute() -> tuple[Secret, Secret, str]:
        async with (
            httpx.AsyncClient() as client,
            ClipboardSource(current=Secret(old), env=xserver.env, native=native) as clip,
        ):
            assert clip.tool is XCLIP
            assert clip.mode is (Mode.NOTIFY if native else Mode.POLL)
            assert clip.describe() == (
                "xclip (XFIXES change notifications)" if native else "xclip (a read every 50 ms)"
            )
            taking = asyncio.create_task(clip.next_key())
            for value, reason in (
                ("https://app.adjutor.io/business/apps/1", Ignored.URL),
                ("Your new API key has been copied", Ignored.NOT_A_KEY),
                (old, Ignored.CURRENT),
                ("pk_live_" + "x" * 30, Ignored.PATTERN),
            ):
                await copy(xserver, value)
                await until(reason, lambda r=reason: clip.ignored.get(r))  # type: ignore[misc]
                assert not taking.done()
            await copy(xserver, wrong)
            first = await asyncio.wait_for(taking, 20)
            assert (await prober(standin, client).probe(first)).outcome is ProbeOutcome.REFUSED
            clip.refused(first)

            taking = asyncio.create_task(clip.next_key())
            await copy(xserver, "not a key at all")
            await until("the sentence", lambda: clip.ignored.get(Ignored.NOT_A_KEY, 0) >= 2)
            await copy(xserver, f"  {wrong}\n")  # the refused key again, with paste noise: still refused
            await until("the refused key", lambda: clip.ignored.get(Ignored.REFUSED))
            assert not taking.done()
            new = standin.reset()
            await copy(xserver, new + "\n")
            second = await asyncio.wait_for(taking, 20)
            assert (await prober(standin, client).probe(second)).outcome is ProbeOutcome.ACCEPTED
            # Seven copies: with XFIXES each was announced (not found by the 0.5 s safety read).
            assert clip.notifications >= (7 if native else 0) and (native or clip.notifications == 0)
            seen.append(repr(clip))
            seen.append(ps_args())
            return first, second, new

    first, second, new = asyncio.run(operator_minute())
    assert first == Secret(wrong)
    assert second == Secret(new) and second.reveal() == new
    out, err = capfd.readouterr()
    canaries = [old, wrong, new, before]
    hits = find("\n".join([*seen, out, err, caplog.text]), canaries, "output, logs, reprs, process args")
    assert hits == [], hits
    assert scan_tree(tmp_path, canaries) == []


def test_include_initial_takes_what_is_already_there(xserver: XServer) -> None:
    key = new_key()
    xserver.copy(key)

    async def go() -> Secret:
        async with ClipboardSource(current=None, env=xserver.env, include_initial=True) as clip:
            return await asyncio.wait_for(clip.next_key(), 20)

    assert asyncio.run(go()).reveal() == key


@pytest.mark.parametrize("native", [True, False], ids=["xfixes", "poll"])
def test_clear_if_unchanged(xserver: XServer, native: bool) -> None:
    key = new_key()

    async def go() -> None:
        async with ClipboardSource(current=None, env=xserver.env, native=native) as clip:
            taking = asyncio.create_task(clip.next_key())
            await copy(xserver, key)
            taken = await asyncio.wait_for(taking, 20)
            # The operator copied something else meanwhile: theirs, left alone.
            await copy(xserver, "lunch at noon")
            assert await clip.clear_if_unchanged(taken) is False
            assert xserver.paste() == "lunch at noon"
            await copy(xserver, key + "\n")
            assert await clip.clear_if_unchanged(taken) is True
            assert xserver.paste() in ("", None)

    asyncio.run(go())


def test_cancel_stops_at_once_and_kills_the_child(xserver: XServer) -> None:
    # A clipboard owner that never answers (a hung app) is what a slow read looks like;
    # `sleep` plays the tool so the read is certainly in flight when Ctrl-C comes.
    hung = Tool("hung", Mode.POLL, read=("sleep", "30"), clear=("true",))

    def my_sleeps() -> list[str]:
        r = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(os.getpid())], capture_output=True, text=True)
        return [line for line in r.stdout.splitlines() if "sleep 30" in line]

    async def go() -> None:
        clip = ClipboardSource(tool=hung, env=xserver.env, include_initial=True)
        clip._started = True  # skip start()'s first read: it would time out
        task = asyncio.create_task(clip.next_key())
        await until("the read in flight", my_sleeps)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert my_sleeps() == []
        await clip.aclose()

    asyncio.run(go())


CTRL_C_SCRIPT = """
import asyncio, sys
from rotator.clipboard import ClipboardSource, Mode, Tool

async def main():
    clip = ClipboardSource(tool=Tool("hung", Mode.POLL, read=("sleep", "30"), clear=("true",)), include_initial=True)
    clip._started = True
    async with clip:
        await clip.next_key()

try:
    asyncio.run(main())
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_in_a_real_process_kills_the_read() -> None:
    import signal
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT], stderr=subprocess.PIPE)
    try:

        def children() -> list[int]:
            r = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True)
            return [int(p) for p in r.stdout.split()]

        end = time.monotonic() + 30
        while not (kids := children()):
            assert time.monotonic() < end and proc.poll() is None, "the read never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
        assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
        for pid in kids:  # killed and reaped, not left to run its 30 s
            assert not os.path.exists(f"/proc/{pid}") or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_display_that_is_not_there_is_one_line() -> None:
    need()  # skips locally, fails in CI, without xclip

    async def go() -> None:
        async with ClipboardSource(env={**os.environ, "DISPLAY": ":987"}):
            pass

    with pytest.raises(ClipboardUnavailable) as exc:
        asyncio.run(go())
    assert "cannot reach the display :987" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("env", "platform", "names"),
    [
        ({"DISPLAY": ":5", "PATH": "/nonexistent"}, "linux", "install xclip"),
        ({"WAYLAND_DISPLAY": "wayland-0", "PATH": "/nonexistent"}, "linux", "install wl-clipboard"),
        ({"PATH": "/usr/bin:/bin"}, "linux", "neither WAYLAND_DISPLAY nor DISPLAY"),
        ({"PATH": "/nonexistent"}, "darwin", "pbpaste"),
        ({"PATH": "/nonexistent"}, "win32", "not supported yet"),
    ],
)
def test_nothing_available_names_what_to_install(env: dict[str, str], platform: str, names: str) -> None:
    with pytest.raises(ClipboardUnavailable) as exc:
        detect(env, platform)
    assert names in str(exc.value) and "\n" not in str(exc.value)


def test_detect_picks_xclip_on_x11_and_xsel_when_only_xsel(tmp_path: Path) -> None:
    need()  # skips locally, fails in CI, without xclip
    xclip_dir = str(Path(shutil.which("xclip") or "/usr/bin/xclip").parent)
    assert detect({"DISPLAY": ":5", "PATH": xclip_dir}, "linux") is XCLIP
    only = tmp_path / "bin"
    only.mkdir()
    (only / "xsel").symlink_to("/usr/bin/true")
    assert detect({"DISPLAY": ":5", "PATH": str(only)}, "linux").name == "xsel"


def test_without_a_key_pattern_urls_and_sentences_are_still_ignored(xserver: XServer) -> None:
    token = "ghp_" + new_key()[8:]  # another vendor's token shape: only hygiene and the URL rule apply

    async def go() -> Secret:
        async with ClipboardSource(current=None, key_pattern=None, env=xserver.env) as clip:
            taking = asyncio.create_task(clip.next_key())
            await copy(xserver, "https://example.com/callback?code=abc")
            await until("the URL", lambda: clip.ignored.get(Ignored.URL))
            await copy(xserver, "two words")
            await until("the sentence", lambda: clip.ignored.get(Ignored.NOT_A_KEY))
            await copy(xserver, token)
            return await asyncio.wait_for(taking, 20)

    assert asyncio.run(go()).reveal() == token


def copy_bytes(x: XServer, data: bytes) -> None:
    subprocess.run(
        ["xclip", "-i", "-selection", "clipboard"],
        input=data,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=x.env,
        check=True,
        timeout=30,
    )


HUGE = b"A" * (10 * 1024 * 1024)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("native", [True, False], ids=["xfixes", "poll"])
def test_ten_megabytes_on_the_clipboard_do_not_delay_the_key(xserver: XServer, native: bool, when: str) -> None:
    """Issue 24: 10 MB copied before or after arm is read only up to a bound, ignored, and the
    key copied after it is taken promptly (it hung the watch for good before)."""
    import time

    key = new_key()

    async def go() -> tuple[Secret, float, ClipboardSource]:
        if when == "before":
            await asyncio.to_thread(copy_bytes, xserver, HUGE)
        clip = ClipboardSource(env=xserver.env, native=native)
        await asyncio.wait_for(clip.start(), 10)  # a huge value delays arm by one bounded read at most
        try:
            taking = asyncio.create_task(clip.next_key())
            if when == "after":
                await asyncio.to_thread(copy_bytes, xserver, HUGE)
                await until("the huge value looked at", lambda: clip.reads >= 2 or getattr(clip, "slow_reads", 0))
            await asyncio.sleep(0.3)
            assert not taking.done()
            t0 = time.monotonic()
            await copy(xserver, key)
            got = await asyncio.wait_for(taking, 10)
            return got, time.monotonic() - t0, clip
        finally:
            await clip.aclose()

    got, took, clip = asyncio.run(go())
    assert got.reveal() == key
    # With XFIXES a copy restarts a read in flight; polling waits out at most one cut-off read.
    from rotator.clipboard import READ_TIMEOUT

    assert took < (1.0 if native else READ_TIMEOUT + 1.0), (took, clip.reads, clip.slow_reads)


CLIP_PLAN = """
[secret]
name = "clip"

[probe]
preset = "adjutor"
url = "{url}"

[[backends]]
name = "store"
type = "envfile"
primary = true
path = "{tmp}/store.env"
variable = "ADJUTOR_API_KEY"
"""


@pytest.mark.parametrize("moment", ["armed", "reading-huge"])
def test_ctrl_c_with_a_huge_clipboard_is_130_and_one_line(
    xserver: XServer, standin: AdjutorStandIn, tmp_path: Path, moment: str
) -> None:
    """Ctrl-C while armed on the clipboard (a 10 MB value on it, or being read) ends with
    exit 130 and one line: no traceback, no "Event loop is closed"."""
    import signal
    import time

    (tmp_path / "store.env").write_text(f"ADJUTOR_API_KEY={standin.current_key}\n")
    (tmp_path / "store.env").chmod(0o600)
    plan = tmp_path / "plan.toml"
    plan.write_text(CLIP_PLAN.format(url=standin.models_url, tmp=tmp_path))
    if moment == "armed":
        copy_bytes(xserver, HUGE)
    env = {**xserver.env, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*forkserver.command(), "rotate", str(plan), "--key-from", "clipboard"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        err = b""
        assert proc.stderr is not None
        os.set_blocking(proc.stderr.fileno(), False)
        end = time.monotonic() + 60
        while b"watching the clipboard" not in err:
            assert time.monotonic() < end and proc.poll() is None, err.decode()
            err += proc.stderr.read() or b""
            time.sleep(0.05)
        if moment == "reading-huge":
            copy_bytes(xserver, HUGE)
            time.sleep(0.3)  # a read of it in flight
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 130
        os.set_blocking(proc.stderr.fileno(), True)
        err += proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = err.decode()
    assert "Traceback" not in text and "Event loop is closed" not in text, text
    tail = text.split("watching the clipboard", 1)[1].strip().splitlines()
    assert len([line for line in tail if line.startswith("rotator:")]) == 1, text
