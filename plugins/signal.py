"""The ``signal`` consumer: send a Unix signal (SIGHUP by default) to a running service.

The classic reload: nginx, gunicorn, many daemons re-read their configuration
and secrets on SIGHUP.  The risk is signalling the wrong process: a pid from a
stale pidfile may by now belong to something else.  So the process is
identified at arm by pid *and* start time (``/proc/PID/stat`` field 22), and
the signal is refused unless the same process is still there; with a pidfd the
check and the send cannot be separated by a pid reuse.
"""

from __future__ import annotations

import asyncio
import os
import signal as signal_mod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field, field_validator, model_validator

from rotator.plugin import Check, Confirmation, Consumer, ConsumerSettings, PluginError, RotationEvent

from ._http_confirm import check_http_url, describe_error, display_url, poll_fingerprint

__all__ = ["SignalConsumer"]

_PROC = Path("/proc")
# Signals that end a process by default; with them "still alive afterwards" cannot hold.
_ENDING = {"TERM", "INT", "QUIT", "ABRT"}
_REFUSED = {"KILL", "STOP"}


@dataclass(frozen=True)
class ProcessId:
    """A process, not just a pid: the pid and its start time (None without /proc)."""

    pid: int
    start: int | None
    name: str = "?"


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(name, state, start time in clock ticks) from /proc/PID/stat; None if no such process."""
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The name (field 2) is in parentheses and may itself hold spaces and ")".
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return name, fields[0], int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def _alive(proc: ProcessId) -> bool:
    """The same process is still running (not exited, not a zombie, pid not reused)."""
    if not _PROC.is_dir():
        try:
            os.kill(proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    st = _stat(proc.pid)
    return st is not None and st[2] == proc.start and st[1] not in ("Z", "X", "x")


class SignalConsumer(Consumer):
    """Signals a process named by pid or pidfile, after checking it is the one seen at arm."""

    class Settings(ConsumerSettings):
        type: str = "signal"
        pid: int | None = Field(default=None, ge=1, description="the process id (or give pidfile)")
        pidfile: Path | None = Field(default=None, description="file holding the pid, read at arm and at signal")
        signal: str = Field(default="HUP", description="signal name: HUP, USR1, USR2, TERM, ...")
        expect_cmdline: str | None = Field(
            default=None, min_length=1, max_length=500, description="text the process's command line must contain"
        )
        confirm_url: str | None = Field(
            default=None, max_length=2000, description='GET answers {"fingerprint": "..."} of the key in use'
        )
        alive_after: float = Field(
            default=0.2, ge=0, le=60, description="seconds after the signal to check the process still runs"
        )

        @field_validator("signal")
        @classmethod
        def _signal_name(cls, v: str) -> str:
            name = v.strip().upper().removeprefix("SIG")
            if f"SIG{name}" not in signal_mod.Signals.__members__:
                raise ValueError(f"{v!r} is not a signal name (e.g. HUP, USR1, TERM)")
            if name in _REFUSED:
                raise ValueError(f"SIG{name} cannot make a process reload; use HUP, USR1 or USR2")
            return name

        @field_validator("confirm_url")
        @classmethod
        def _http(cls, v: str | None) -> str | None:
            return None if v is None else check_http_url(v)

        @field_validator("pidfile")
        @classmethod
        def _expand(cls, v: Path | None) -> Path | None:
            return None if v is None else v.expanduser()

        @model_validator(mode="after")
        def _consistent(self) -> SignalConsumer.Settings:
            if (self.pid is None) == (self.pidfile is None):
                raise ValueError("give exactly one of pid or pidfile")
            if self.signal in _ENDING and self.alive_after > 0:
                raise ValueError(
                    f"SIG{self.signal} ends the process, so it cannot be alive afterwards; set alive_after = 0"
                    " (and confirm_url to confirm the restarted service)"
                )
            return self

    settings: Settings

    def __init__(self, settings: Any, ctx: Any) -> None:
        super().__init__(settings, ctx)
        self._armed: ProcessId | None = None
        self._signalled: ProcessId | None = None
        self._signalled_at = 0.0

    @property
    def _signum(self) -> signal_mod.Signals:
        return signal_mod.Signals[f"SIG{self.settings.signal}"]

    @property
    def can_confirm(self) -> bool:
        return self.settings.alive_after > 0 or self.settings.confirm_url is not None

    def _source(self) -> str:
        return f"pidfile {self.settings.pidfile}" if self.settings.pidfile else f"pid {self.settings.pid}"

    def describe(self) -> str:
        return f"SIG{self.settings.signal} to {self._source()}"

    def _read_pid(self) -> int:
        if self.settings.pid is not None:
            return int(self.settings.pid)
        path = self.settings.pidfile
        assert path is not None
        try:
            text = path.read_text(errors="replace").strip()
        except FileNotFoundError:
            raise PluginError(f"pidfile {path} does not exist; is the service running?", retryable=False) from None
        except OSError as exc:
            raise PluginError(f"cannot read pidfile {path}: {exc.strerror}", retryable=False) from None
        first = text.split()[0] if text else ""
        if not first.isdigit() or int(first) < 1:
            raise PluginError(f"pidfile {path} does not hold a pid; fix pidfile", retryable=False)
        return int(first)

    def _identify(self) -> ProcessId:
        """The process the settings name now; refuses a missing or unexpected one."""
        pid = self._read_pid()
        if not _PROC.is_dir():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                raise PluginError(
                    f"no process {pid} ({self._source()}); is the service running?", retryable=False
                ) from None
            except PermissionError:
                pass
            return ProcessId(pid, None)
        st = _stat(pid)
        if st is None or st[1] in ("Z", "X", "x"):
            raise PluginError(f"no process {pid} ({self._source()}); is the service running?", retryable=False)
        name, _, start = st
        expect = self.settings.expect_cmdline
        if expect and expect not in _cmdline(pid):
            raise PluginError(
                f"process {pid} ({name}, from {self._source()}) does not have {expect!r} in its command line;"
                " check the pidfile or fix expect_cmdline",
                retryable=False,
            )
        return ProcessId(pid, start, name)

    async def open(self) -> None:
        """Remember which process is the target, so a pid reused later is caught."""
        try:
            self._armed = self._identify()
        except PluginError:
            self._armed = None  # preflight says why

    async def preflight(self) -> Check:
        try:
            proc = self._identify()
        except PluginError as exc:
            return Check(False, str(exc))
        if self._armed is None:
            self._armed = proc
        elif self._armed != proc:
            return Check(
                False, f"{self._source()} named process {self._armed.pid} at arm and now names {proc.pid}; re-arm"
            )
        try:
            os.kill(proc.pid, 0)
        except PermissionError:
            return Check(
                False, f"not allowed to signal process {proc.pid} ({proc.name}); run rotator as its user or root"
            )
        except ProcessLookupError:
            return Check(False, f"process {proc.pid} ({self._source()}) exited; is the service running?")
        warnings: list[str] = []
        if proc.start is None:
            warnings.append("no /proc here: a reused pid cannot be detected; prefer expect_cmdline and a fresh pidfile")
        if self.settings.confirm_url:
            url = self.settings.confirm_url
            try:
                await self.ctx.http.get(url, timeout=self.settings.timeout)
            except httpx.HTTPError as exc:
                warnings.append(f"confirm_url {display_url(url)}: {describe_error(exc)}")
            self.ctx.keep_warm(lambda: self.ctx.http.get(url, timeout=self.settings.timeout))
        ok = None if proc.start is None else True
        return Check(ok, f"process {proc.pid} ({proc.name}) can be sent SIG{self.settings.signal}", warnings)

    def _send(self, proc: ProcessId) -> None:
        """Send the signal to exactly `proc`: through a pidfd checked after opening, when possible."""
        if proc.start is None or not hasattr(os, "pidfd_open"):
            os.kill(proc.pid, self._signum)
            return
        fd = os.pidfd_open(proc.pid)
        try:
            # The pidfd names whatever held the pid when it was opened; if that is still
            # the process seen at arm now, it was then too (a start time cannot go back).
            if not _alive(proc):
                raise ProcessLookupError(proc.pid)
            signal_mod.pidfd_send_signal(fd, self._signum)
        finally:
            os.close(fd)

    async def signal(self, event: RotationEvent) -> str:
        now = self._identify()
        armed = self._armed or now
        sig = f"SIG{self.settings.signal}"
        if now.pid != armed.pid:
            raise PluginError(
                f"{self._source()} named process {armed.pid} at arm but now names {now.pid} (restarted?);"
                f" not sending {sig}: check the service and signal it by hand",
                retryable=False,
            )
        if now.start != armed.start:
            raise PluginError(
                f"process {now.pid} is not the one seen at arm (its start time changed: the pid was reused);"
                f" not sending {sig}: check the service and signal it by hand",
                retryable=False,
            )
        try:
            self._send(now)
        except ProcessLookupError:
            raise PluginError(
                f"process {now.pid} exited before {sig} was sent; is the service running?", retryable=False
            ) from None
        except PermissionError:
            raise PluginError(
                f"not allowed to send {sig} to process {now.pid}; run rotator as its user or root", retryable=False
            ) from None
        self._signalled = now
        self._signalled_at = asyncio.get_running_loop().time()
        return f"sent {sig} to process {now.pid} ({now.name})"

    async def confirm(self, fingerprint: str, deadline: float) -> Confirmation:
        proc = self._signalled
        if proc is None:
            return Confirmation(False, detail="no signal was sent")
        loop = asyncio.get_running_loop()
        sig = f"SIG{self.settings.signal}"
        after = self.settings.alive_after
        if self.settings.confirm_url:
            # The consumer reporting the new fingerprint is the proof; waiting alive_after
            # as well would only lengthen the window.  It must still be alive then.
            result = await poll_fingerprint(
                self.ctx.send, self.settings.confirm_url, fingerprint, deadline, request_timeout=self.settings.timeout
            )
            if not _alive(proc):
                return Confirmation(False, detail=f"process {proc.pid} ({proc.name}) exited after {sig}; see its log")
            if result.confirmed:
                result.detail = f"process {proc.pid} still running; {result.detail}"
            return result
        if after > 0:
            wait = min(self._signalled_at + after, deadline) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not _alive(proc):
                return Confirmation(False, detail=f"process {proc.pid} ({proc.name}) exited after {sig}; see its log")
            return Confirmation(
                True,
                None,
                f"process {proc.pid} still running {after:g}s after {sig} (no confirm_url: fingerprint not checked)",
            )
        return Confirmation(False, detail="nothing to confirm with: set alive_after or confirm_url")
