"""`python -m rotator.testing.adjutor`: the Adjutor stand-in as a process (its options, the
ready file, a clean stop on SIGTERM or SIGINT); the stand-in itself is `adjutor.AdjutorStandIn`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from rotator.testing._http import write_ready_file
from rotator.testing.adjutor import AdjutorStandIn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rotator.testing.adjutor", description="A local stand-in for Adjutor's API-key auth."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", help="write {url, admin_token, key, pid} here (mode 0600) once listening")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each API call")
    parser.add_argument("--cost", type=float, default=0.0, help="wallet charge per successful call")
    parser.add_argument("--balance", type=float, default=100_000.0, help="starting wallet balance")
    parser.add_argument(
        "--initial-key-env", metavar="NAME", help="take the first key from this environment variable (not argv)"
    )
    parser.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="NAME[=PATH,...]",
        help="an app of the organisation, with the API services it may call (default: all); repeatable, "
        "the first is the app the initial key belongs to",
    )
    args = parser.parse_args(argv)
    apps: list[tuple[str, list[str] | None]] = []
    for spec in args.app:
        name, sep, paths = spec.partition("=")
        if not name or name in (a[0] for a in apps):
            parser.error(f"--app {spec!r}: give each app a name of its own")
        apps.append((name, [p for p in paths.split(",") if p] if sep else None))

    initial_key = None
    if args.initial_key_env:
        initial_key = os.environ.get(args.initial_key_env)
        if not initial_key:
            parser.error(f"environment variable {args.initial_key_env} is not set")

    # Block the stop signals before any thread starts (threads inherit the mask),
    # then wait for them synchronously: no handler runs inside lock-holding code.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    first, first_paths = apps[0] if apps else (None, None)
    standin = AdjutorStandIn(
        args.host, args.port, args.latency, args.cost, initial_key, balance=args.balance, app=first, paths=first_paths
    )
    for name, paths in apps[1:]:
        standin.add_app(name, paths=paths)
    standin.start()
    try:
        if args.ready_file:
            ready: dict[str, Any] = {
                "url": standin.url,
                "admin_token": standin.admin_token,
                "key": standin.current_key,
                "pid": os.getpid(),
            }
            if apps:
                ready["apps"] = {name: standin.key_of(name) for name, _ in apps}
            write_ready_file(args.ready_file, ready)
        print(f"adjutor stand-in listening on {standin.url}", file=sys.stderr, flush=True)
        signal.sigwait(stop_signals)
    finally:
        standin.stop()
    return 0
