"""`python -m rotator` for the suite without paying for its imports each time.

Half of the suite's CPU went to starting the CLI: 546 runs at 0.73 s of CPU each,
0.5 s of it importing SQLAlchemy, aiohttp, httpx, pydantic, structlog, boto3 and the
rest (issue 28).  So each pytest worker starts one *fork server* that has imported
those once, and `command()` is what tests run instead of `python -m rotator`:

    tests/forkserver.py CLIENT SOCKET ARGS...     (a stub: Python with -S, stdlib only)

The stub hands its stdin, stdout and stderr, its environment, its working directory
and ARGS to the server.  The server forks a *runner*, which forks the *rotator
process*: that one takes the stub's descriptors as 0, 1 and 2, its environment and
directory, resets its signals, and runs `runpy.run_module("rotator")` as `-m` does.
Everything of rotator itself is imported afresh in that process (the server
imports no rotator module), so a missing import in rotator still fails a test.

To the test the stub *is* the CLI: its exit status is the rotator process's (a death
by signal N kills the stub with N), SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGUSR1/2 are
forwarded, and when the stub dies (SIGKILL) the runner kills the rotator process at
once.  What differs from an exec: `Popen.pid` is the stub's, and the rotator process
has no controlling terminal (tests that need a terminal or rotator's own PID run the
real `python -m rotator`).  `ROTATOR_TEST_EXEC=1` runs every command that way.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ENV = "ROTATOR_TEST_EXEC"
EXEC = [sys.executable, "-m", "rotator"]  # the real thing
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_HEADER = struct.Struct("!I")
_path = ""  # the server's socket
_server_pythonpath = os.environ.get("PYTHONPATH", "")  # in the server: what it started with


_lock = threading.Lock()
_server: list[tuple[subprocess.Popen[bytes], str]] = []


def command(own_pid: bool = False) -> list[str]:
    """What to run for `python -m rotator`: the stub of this process's fork server (started on
    first use, gone with the process), or the real thing (`EXEC`) when the test needs `Popen.pid`
    to be rotator's own (`own_pid`) or under ROTATOR_TEST_EXEC=1."""
    if own_pid or os.environ.get(ENV):
        return EXEC
    with _lock:
        if not _server or _server[0][0].poll() is not None:
            path = os.path.join(tempfile.mkdtemp(prefix="rotator-fork-"), "socket")
            proc = subprocess.Popen([sys.executable, __file__, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert proc.stdout is not None
            if proc.stdout.readline() != b"ready\n":
                raise RuntimeError(f"the fork server did not start (exit {proc.wait()})")
            _server[:] = [(proc, path)]
            atexit.register(_stop, proc)
        startup = {**_startup_env(os.environ), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        return [sys.executable, "-S", __file__, "CLIENT", _server[0][1], json.dumps(startup)]


def _startup_env(env: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    """What in an environment changes how Python starts, beyond what the rotator process
    applies itself: PYTHONUNBUFFERED, and PYTHONPATH entries added to the server's (put on
    sys.path, with their `sitecustomize` run: the crash tests' kill hook, a toy flow)."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON") and k not in ("PYTHONUNBUFFERED", "PYTHONPATH")}


def _added_paths(env: os._Environ[str] | dict[str, str], server: str) -> list[str] | None:
    """PYTHONPATH's entries beyond the server's, or None when one of the server's is missing."""
    mine, theirs = _entries(env.get("PYTHONPATH", "")), _entries(server)
    if not set(theirs) <= set(mine):
        return None
    return [p for p in mine if p not in theirs]


def _entries(pythonpath: str) -> list[str]:
    return [p for p in pythonpath.split(os.pathsep) if p]


def cpu() -> float:
    """Seconds of CPU the commands this process ran through its server have used (for tests.costs)."""
    if not _server:
        return 0.0
    try:
        with open(_cpu_file(_server[0][1]), encoding="ascii") as f:
            return sum(float(line) for line in f if line.endswith("\n"))
    except FileNotFoundError:
        return 0.0


def settled(stub: int, timeout: float = 10.0) -> None:
    """Wait until the command of the stub with PID `stub` has ended too.  A stub ends after
    its command, except when killed: then its runner kills the command a moment later."""
    if not _server:
        return
    until = time.monotonic() + timeout
    while os.path.exists(_running(_server[0][1], stub)):
        if time.monotonic() > until:
            raise AssertionError(f"the command of stub {stub} still runs {timeout} s after the stub ended")
        time.sleep(0.005)


def _running(socket_path: str, stub: int) -> str:
    return os.path.join(os.path.dirname(socket_path), f"running-{stub}")


def _cpu_file(socket_path: str) -> str:
    return os.path.join(os.path.dirname(socket_path), "cpu")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()  # the server exits when its stdin ends
    proc.wait(10)
    shutil.rmtree(os.path.dirname(_server[0][1]), ignore_errors=True)


# -- the stub (runs with -S: nothing here but the standard library) --------------------------------


def client(path: str, startup: str, args: list[str]) -> None:
    """Be `python -m rotator ARGS` for whoever started this process: through the server when
    Python would start as it did (`startup`), or else by exec (a test's kill hook, say)."""
    server = json.loads(startup)
    pythonpath = server.pop("PYTHONPATH")
    if _startup_env(os.environ) != server or _added_paths(os.environ, pythonpath) is None:
        os.execv(sys.executable, [*EXEC, *args])
    pending: list[int] = []
    target: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if target:
            os.kill(target[0], signum)
        else:
            pending.append(signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    body = json.dumps({"argv": args, "env": dict(os.environ), "cwd": os.getcwd(), "stub": os.getpid()}).encode()
    socket.send_fds(conn, [_HEADER.pack(len(body))], [0, 1, 2])
    conn.sendall(body)
    replies = conn.makefile("rb")
    target.append(int(replies.readline()))
    for signum in pending:
        os.kill(target[0], signum)
    kind, _, value = replies.readline().decode().partition(" ")
    if kind == "signal":
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        if int(value) not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(int(value), signal.SIG_DFL)
        os.kill(os.getpid(), int(value))
    os._exit(int(value) if kind == "exit" else 1)


# -- the server ------------------------------------------------------------------------------------

PROBE = (
    "rotator.cli.status",
    "rotator.cli.rotate",
    "rotator.cli.alternating",
    "rotator.pipeline",
    "rotator.journal",
    "rotator.service",
)


def _third_party() -> list[str]:
    """The modules a fresh CLI imports that are not rotator's own, in import order.

    Found by importing rotator's command modules and every plugin in a forked child,
    so this process itself never imports a rotator module."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        before = set(sys.modules)
        import importlib
        from importlib.metadata import entry_points

        for name in PROBE:
            importlib.import_module(name)
        for group in ("rotator.backends", "rotator.consumers", "rotator.notifiers"):
            for ep in entry_points(group=group):
                try:
                    ep.load()
                except Exception:  # noqa: BLE001 - a plugin that does not load is its own test's business
                    pass
        ours = ("rotator", "plugins", "rotator_plugins", "tests", "__main__")
        names = [n for n in sys.modules if n not in before and n.split(".")[0] not in ours]
        with os.fdopen(write, "w") as f:
            f.write("\n".join(names))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        names = f.read().split()
    os.waitpid(pid, 0)
    return names


def _preload() -> None:
    import gc
    import importlib

    for name in _third_party():
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a private submodule that imports only through its package
            pass
    gc.collect()
    gc.freeze()  # the forked processes share these pages and the collector skips them


def _serve(path: str) -> dict[str, Any]:
    """Fork a runner per connection; return only in a rotator process, with its request."""
    import selectors

    global _path
    _path = path
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # runners are reaped by the kernel
    print("ready", flush=True)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)  # the worker's end: closed when it exits
    while True:
        for key, _ in sel.select():
            if key.fileobj is sys.stdin:
                os._exit(0)
            conn, _ = listener.accept()
            if os.fork() == 0:
                sel.close()
                listener.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                return _run_one(conn)
            conn.close()


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    head, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
    while len(head) < _HEADER.size:
        head += conn.recv(_HEADER.size - len(head))
    (size,) = _HEADER.unpack(head)
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            os._exit(1)
        body += chunk
    return json.loads(body), fds


def _run_one(conn: socket.socket) -> dict[str, Any]:
    """The runner: fork the rotator process, report how it ended, kill it if the stub dies."""
    import select

    request, fds = _receive(conn)
    running = _running(_path, request["stub"])
    with open(running, "w", encoding="ascii"):
        pass  # until the command is reaped: see settled()
    pid = os.fork()
    if pid == 0:
        conn.close()
        _become(request, fds)
        return request
    for fd in fds:
        os.close(fd)
    conn.sendall(f"{pid}\n".encode())
    pidfd = os.pidfd_open(pid)
    poll = select.poll()
    poll.register(conn, select.POLLIN | select.POLLHUP)
    poll.register(pidfd, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poll.poll()}
        if pidfd in ready:
            break
        if conn.fileno() in ready and not conn.recv(1):  # the stub is gone: so is its command
            os.kill(pid, signal.SIGKILL)
            break
    _, status, usage = os.wait4(pid, 0)
    os.unlink(running)
    with open(_cpu_file(_path), "a", encoding="ascii") as f:
        f.write(f"{usage.ru_utime + usage.ru_stime:.3f}\n")  # one short append: whole lines
    reply = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.waitstatus_to_exitcode(status)}"
    try:
        conn.sendall(reply.encode() + b"\n")
    except OSError:
        pass
    os._exit(0)


def _become(request: dict[str, Any], fds: list[int]) -> None:
    """Turn this forked process into `python -m rotator` as the stub was started."""
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as the interpreter sets it at start-up
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        if fd > 2:
            os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    _stdio(unbuffered=bool(os.environ.get("PYTHONUNBUFFERED")))
    sys.path[0] = os.getcwd()
    added = _added_paths(os.environ, _server_pythonpath) or []
    sys.path[1:1] = added  # where site puts PYTHONPATH: after the script's directory
    if added and "sitecustomize" not in sys.modules:
        try:
            import sitecustomize  # noqa: F401 - run as site would at start-up
        except ModuleNotFoundError as exc:
            if exc.name != "sitecustomize":
                raise
    sys.argv = ["-m", *request["argv"]]


def _stdio(unbuffered: bool) -> None:
    """sys.stdin, stdout and stderr on descriptors 0, 1 and 2, as the interpreter makes them
    (stderr line-buffered; stdout unbuffered too under PYTHONUNBUFFERED)."""
    import io

    enc, errors = sys.stdout.encoding, sys.stdout.errors

    def writer(fd: int, **kw: Any) -> io.TextIOWrapper:
        raw = io.FileIO(fd, "w", closefd=False)
        out = raw if unbuffered else io.BufferedWriter(raw)
        return io.TextIOWrapper(out, encoding=enc, write_through=unbuffered, **kw)

    reader = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding=enc, errors=errors)
    sys.stdin = sys.__stdin__ = reader  # type: ignore[misc]
    sys.stdout = sys.__stdout__ = writer(1, errors=errors)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = writer(2, errors="backslashreplace", line_buffering=True)  # type: ignore[misc]


def main() -> None:
    if sys.argv[1] == "CLIENT":
        client(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    _serve(sys.argv[1])
    import runpy

    runpy.run_module("rotator", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
