"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temp directory,
listening on 127.0.0.1 on a free port (its unix socket in the same directory),
trust authentication, fsync off; stopped and removed afterwards.

Uses Debian's `postgresql` package (/usr/lib/postgresql/N/bin) or whatever
`initdb` is on PATH.  initdb refuses to run as root, so as root the cluster is
run by the `postgres` user (from its own temp directory, which it owns).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

SUPERUSER = "rotator"


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, newest version first."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.parent.name.split(".")],
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(on_path)
    for initdb in candidates:
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").exists() and (bindir / "postgres").exists():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """`with PostgresServer() as pg: url = pg.new_database()`"""

    def __init__(self, bindir: Path | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.bindir = found
        self.port = 0
        self.root: Path | None = None
        self._user: str | None = None
        self._started = False

    # -- running commands as the cluster's owner ----------------------------
    def _cmd(self, *args: str) -> list[str]:
        if self._user is None:
            return list(args)
        return ["runuser", "-u", self._user, "--", *args]

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            self._user = "postgres"
            pwd.getpwnam(self._user)  # KeyError if the package did not create the user
        self.root = Path(tempfile.mkdtemp(prefix="rotator-pg-"))
        if self._user is not None:
            ent = pwd.getpwnam(self._user)
            os.chown(self.root, ent.pw_uid, ent.pw_gid)
        self.root.chmod(0o700)
        data = self.root / "data"
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        last: Exception | None = None
        for _ in range(5):  # the free port may be taken between picking and binding
            self.port = _free_port()
            try:
                self._pg_ctl_start()
            except RuntimeError as exc:
                last = exc
                continue
            self._started = True
            return self
        self.stop()
        raise RuntimeError(f"PostgreSQL did not start: {last}\n{self.log()}")

    def _pg_ctl_start(self) -> None:
        assert self.root is not None
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.root / "data"),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            timeout=90,
        )

    def halt(self) -> None:
        """Stop the server (fast shutdown: every session ends), keeping its data and port."""
        assert self.root is not None
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        self._started = False

    def resume(self) -> None:
        """Start the halted server again on the same port, with the same data."""
        self._pg_ctl_start()
        self._started = True

    def restart(self) -> None:
        """What an operator's `systemctl restart postgresql` does: every session ends."""
        self.halt()
        self.resume()

    def log(self) -> str:
        try:
            return (self.root / "server.log").read_text() if self.root else ""
        except OSError:
            return ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "rotator") -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self._started and self.root is not None:
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            self._started = False
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
