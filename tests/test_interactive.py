"""The hidden prompt, as an operator meets it: a real terminal (pty), a wrong
paste asked again, the right one rotated, and the key never echoed."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from rotator.testing import plans
from rotator.testing.adjutor import AdjutorStandIn


class Terminal:
    def __init__(self, argv: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 30.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.seen.count(text) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {text!r}; screen so far:\n{self.seen.decode(errors='replace')}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    assert text in self.seen, f"process ended before {text!r}:\n{self.seen.decode(errors='replace')}"
                self.seen += chunk

    def expect_prompt_after(self, marker: bytes, timeout: float = 30.0) -> None:
        """The key prompt itself shown after `marker`: not the copy the reset watch's counter
        keeps at the end of its line ("...paste the new key now\x1b[0m  new key: "), which it
        redraws every 0.1 s, before or after the re-ask's own (which flushes what was typed)."""
        self.expect(marker, timeout)
        prompt = re.compile(rb"(?<!  )new key: ")
        deadline = time.monotonic() + timeout
        while not prompt.search(self.seen, self.seen.index(marker)):
            self.expect(b"new key: ", max(deadline - time.monotonic(), 0.01), count=self.seen.count(b"new key: ") + 1)

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    pass
        if self.proc.poll() is None:  # still running: killed, so that the assertion shows the screen
            self.proc.kill()
        return self.proc.wait(timeout=10)


def test_prompt_asks_again_after_a_wrong_key_and_never_echoes(tmp_path: Path, standin: AdjutorStandIn) -> None:
    old = standin.current_key
    for name in ("store.env", "app.env"):
        (tmp_path / name).write_text(f"ADJUTOR_API_KEY={old}\n")
    plan = plans.write_plan(
        tmp_path / "plan.toml",
        plans.plan(
            "adjutor-tty",
            probe=plans.adjutor_probe(standin.models_url),
            backends=[
                plans.envfile("store", tmp_path / "store.env", primary=True),
                plans.envfile("app", tmp_path / "app.env"),
            ],
        ),
    )
    term = Terminal([sys.executable, "-m", "rotator", "rotate", str(plan), "--reason", "tty test"])
    term.expect(b"Reset app key")
    term.expect(b"new key:")
    new = standin.reset()
    wrong = new[:-3] + "zzz"
    term.type(wrong)
    term.expect(b"paste it again")
    assert (tmp_path / "app.env").read_text() == f"ADJUTOR_API_KEY={old}\n"  # nothing written
    # The re-ask's prompt: a paste typed before it is flushed, as getpass does (typing at the
    # counter's copy of the prompt, drawn just before the re-ask's, was seen to be lost).
    term.expect_prompt_after(b"paste it again")
    term.type(f'"{new}"')
    assert term.wait() == 0, term.seen.decode(errors="replace")
    screen = term.seen.decode(errors="replace")
    assert "window:" in screen and "done" in screen
    assert new not in screen and wrong not in screen  # hidden input: never echoed
    assert (tmp_path / "app.env").read_text() == f"ADJUTOR_API_KEY={new}\n"
