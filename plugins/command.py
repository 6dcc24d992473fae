"""The ``command`` consumer: run a program to make a service reload.

For everything without a webhook or a signal handler: ``systemctl reload app``,
``docker compose up -d app``, ``kubectl rollout restart``.  The program runs
without a shell (argv as given) and learns which key to expect from
``ROTATOR_FINGERPRINT``, ``ROTATOR_SECRET_NAME`` and ``ROTATOR_ROTATION_ID``; it
never gets the key.  It inherits only a few harmless variables from rotator's
environment, because that environment holds credentials (Vault tokens, AWS keys,
webhook signing keys) a reload command has no use for; add what it needs with `env`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
from pathlib import Path

from pydantic import Field, field_validator

from rotator.plugin import Check, Consumer, ConsumerSettings, PluginError, RotationEvent
from rotator.secret import scrub

__all__ = ["CommandConsumer"]

INHERITED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_DETAIL = 200


def _last_line(data: bytes) -> str:
    """The last non-blank line of `data`, one line, at most 200 characters, secrets redacted."""
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return ""
    text = scrub(" ".join(lines[-1].split()))
    return text[:_MAX_DETAIL] + ("…" if len(text) > _MAX_DETAIL else "")


class CommandConsumer(Consumer):
    """Runs argv (no shell) with the fingerprint in its environment; exit 0 means reloaded."""

    class Settings(ConsumerSettings):
        type: str = "command"
        argv: list[str] = Field(min_length=1, description='program and arguments, e.g. ["systemctl", "reload", "app"]')
        env: dict[str, str] = Field(default_factory=dict, description="extra environment variables")
        cwd: Path | None = Field(default=None, description="working directory")

        @field_validator("argv")
        @classmethod
        def _argv(cls, v: list[str]) -> list[str]:
            if not v[0].strip():
                raise ValueError("argv[0] must name a program")
            if any("\0" in a for a in v):
                raise ValueError("an argument holds a NUL character")
            return v

        @field_validator("env")
        @classmethod
        def _env(cls, v: dict[str, str]) -> dict[str, str]:
            for name, value in v.items():
                if not _ENV_NAME.match(name):
                    raise ValueError(f"{name!r} is not a valid environment variable name")
                if name.startswith("ROTATOR_"):
                    raise ValueError(f"{name}: ROTATOR_* variables are set by rotator")
                if "\0" in value:
                    raise ValueError(f"the value of {name} holds a NUL character")
            return v

        @field_validator("cwd")
        @classmethod
        def _cwd(cls, v: Path | None) -> Path | None:
            return None if v is None else v.expanduser()

    settings: Settings

    @property
    def _program(self) -> str:
        return str(self.settings.argv[0])

    def describe(self) -> str:
        text = shlex.join(self.settings.argv)
        return text if len(text) <= 200 else text[:199] + "…"

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in INHERITED_ENV or k.startswith("LC_")}
        env.setdefault("PATH", DEFAULT_PATH)
        env.update(self.settings.env)
        return env

    def _resolve(self) -> str | None:
        """The program's path as exec would find it, or None."""
        program = self._program
        if "/" in program:
            path = Path(program)
            if not path.is_absolute() and self.settings.cwd is not None:
                path = self.settings.cwd / path
            return str(path) if path.is_file() and os.access(path, os.X_OK) else None
        return shutil.which(program, path=self._base_env()["PATH"])

    async def preflight(self) -> Check:
        cwd = self.settings.cwd
        if cwd is not None and not cwd.is_dir():
            return Check(False, f"cwd {cwd} is not a directory; create it or fix cwd")
        resolved = self._resolve()
        if resolved is None:
            where = "" if "/" in self._program else " on PATH"
            return Check(False, f"{self._program} is not an executable file{where}; fix argv[0] or install it")
        return Check(True, f"{resolved} is executable")

    async def signal(self, event: RotationEvent) -> str:
        env = {
            **self._base_env(),
            "ROTATOR_FINGERPRINT": event.fingerprint,
            "ROTATOR_SECRET_NAME": event.secret_name,
            "ROTATOR_ROTATION_ID": event.rotation_id,
        }
        program = self._program
        timeout = float(self.settings.timeout)
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.settings.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=self.settings.cwd,
                start_new_session=True,  # its own process group, so a timeout kills its children too
            )
        except FileNotFoundError:
            raise PluginError(f"{program} not found (or cwd missing); fix argv[0] or cwd", retryable=False) from None
        except PermissionError:
            raise PluginError(
                f"{program} is not executable by this user; fix argv[0] or its mode", retryable=False
            ) from None
        except OSError as exc:
            raise PluginError(f"cannot run {program}: {exc.strerror}", retryable=False) from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await asyncio.shield(proc.wait())
            with contextlib.suppress(TimeoutError, OSError):  # drain and close the pipes
                await asyncio.wait_for(proc.communicate(), 1.0)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise PluginError(
                f"{program} did not finish within {timeout:g}s and was killed; raise timeout or see why it hangs"
            ) from None
        code = proc.returncode
        assert code is not None
        if code == 0:
            said = _last_line(out)
            return f"{program} exited 0" + (f": {said}" if said else "")
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            raise PluginError(f"{program} was killed by {name}; see its log")
        said = _last_line(err) or "(nothing on stderr)"
        # 126/127: the shell convention for "cannot execute" / "not found" inside a wrapper.
        raise PluginError(f"{program} exited with {code}: {said}", retryable=code not in (126, 127))
