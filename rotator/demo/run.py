"""`rotator demo`: a whole rotation on loopback, with nothing to set up.

Starts an Adjutor stand-in (one valid key at a time; a reset revokes the old
one at once), two real consumer processes that call it continuously (one
reloads on a signed webhook and calls through `rotator.consumer_http`'s
hold-and-retry auth, one reloads on SIGHUP and calls without it), and the
stores the plan names.  Then it does what an operator does, through the same
`ArmedSession` as `rotator rotate`: arm, press "Reset app key" (rotator's watch
sees the old key refused), paste a key with a typo (refused, nothing written),
paste the right one, and report the outage beside the window, and what each
consumer saw: the helper's 0 failed calls, its held calls and longest hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from enum import StrEnum
from pathlib import Path
from typing import Any

from rich.console import Console

from rotator.demo._shared import (
    HOOK_ENV,
    Kept,
    _http_json,
    _wait_ready,
    _write_env,
    demo_targets,
    hold,
    reset_command,
    secret_file,
    stop,
    terminated_as_interrupt,
)
from rotator.journal import Journal
from rotator.pipeline.state import RotationState
from rotator.plan import load_plan
from rotator.render import ProgressPrinter, print_report
from rotator.report import Report
from rotator.testing import plans

HELPED = "api"  # the consumer that calls through the hold-and-retry helper


def demo_plan(
    root: Path, models_url: str, api_url: str, worker_url: str, hook_key_file: Path | None = None
) -> dict[str, Any]:
    """Three .env stores (one the primary) and two consumers: a webhook and a SIGHUP.

    `hook_key_file`: the webhook's HMAC key is read from this file (a kept demo's plan
    works from any shell), else from the environment variable only this process has."""
    plan = plans.plan(
        "adjutor-demo",
        description="Adjutor API key of the demo app",
        max_age_days=90,
        # The watch looks every 0.1 s: the reset is known to within ~0.1 s.
        probe=plans.adjutor_probe(models_url, check_old_key=True, watch_interval=0.1),
        **demo_targets(root, api_url, worker_url),
    )
    if hook_key_file is not None:
        plan["consumers"][0]["hmac_key"] = {"file": str(hook_key_file)}
    return plan


class DemoMode(StrEnum):
    SINGLE = "single"  # one app: the reset kills the key in use; calls fail until the reload
    ALTERNATING = "alternating"  # two apps: promote the standby, reset the app no one uses
    BOTH = "both"  # the two side by side, at the same operator pause


OPERATOR_PAUSE = 2.0  # seconds the demo's "operator" takes to copy and paste a key


def run_demo(
    *,
    keep: bool = False,
    as_json: bool = False,
    console: Console | None = None,
    mode: DemoMode = DemoMode.BOTH,
    pause: float = OPERATOR_PAUSE,
) -> int:
    """The single-app flow, the alternating flows, or both and a side-by-side table of what the consumers saw.

    What people read goes to stdout; with `as_json` the JSON goes there and the rest to stderr.
    With `keep`, each mode's stand-in and consumers stay up until Ctrl-C, with the commands to go on."""
    from rotator.demo import alternating

    stream = sys.stderr if as_json else sys.stdout
    out = console or Console(
        stderr=as_json, highlight=False, emoji=False, soft_wrap=True, width=None if stream.isatty() else 120
    )
    rows: list[alternating.Row] = []
    kept: list[Kept] = []
    with terminated_as_interrupt():
        return _run_modes(out, rows, kept, keep=keep, as_json=as_json, mode=mode, pause=pause)


def _run_modes(
    out: Console, rows: list[Any], kept: list[Kept], *, keep: bool, as_json: bool, mode: DemoMode, pause: float
) -> int:
    from rotator.demo import alternating

    code = 0
    try:
        if mode in (DemoMode.SINGLE, DemoMode.BOTH):
            code = run_single(
                keep=keep, as_json=as_json and mode is DemoMode.SINGLE, out=out, pause=pause, rows=rows, kept=kept
            )
        if mode in (DemoMode.ALTERNATING, DemoMode.BOTH) and code == 0:
            env = {**os.environ, "DEMO_HOOK_KEY": secrets.token_hex(32), "PYTHONUNBUFFERED": "1"}
            os.environ[HOOK_ENV] = env["DEMO_HOOK_KEY"]
            try:
                code = alternating.run_alternating(out, pause=pause, rows=rows, env=env, keep=keep, kept=kept)
            finally:
                os.environ.pop(HOOK_ENV, None)
        if mode is not DemoMode.SINGLE:
            out.print()
            out.print(alternating.table(rows))
            if mode is DemoMode.BOTH and code == 0:
                out.print(_comparison(rows, pause))
            if as_json:
                print(json.dumps({"pause_s": pause, "rows": [r.as_dict() for r in rows]}, indent=2))
        if kept:
            hold(out, kept)
    finally:
        for k in kept:
            stop(k.procs)
    return code


def _comparison(rows: list[Any], pause: float) -> str:
    single = [r for r in rows if r.mode == "single"]
    alt = [r for r in rows if r.mode == "alternating"]
    lost = sum(sum(r.failed.values()) for r in single)
    kept = sum(sum(r.failed.values()) for r in alt)
    return (
        f"With one app, the {pause:.0f} s the operator took to paste was an outage: {lost} failed calls. "
        f"With two alternating apps, the reset only ever touched a key no consumer used: {kept} failed calls, "
        "whatever the operator's speed."
    )


def run_single(
    *,
    keep: bool,
    as_json: bool,
    out: Console,
    pause: float = 0.0,
    rows: list[Any] | None = None,
    kept: list[Kept] | None = None,
) -> int:
    """One app: arm, reset (the key in use dies), the operator's `pause`, a typo, the right key.

    With `keep`, its processes go on running: appended to `kept` with the commands to go on."""
    root = Path(tempfile.mkdtemp(prefix="rotator-demo-"))
    procs: list[subprocess.Popen[bytes]] = []
    hook_key = secrets.token_hex(32)
    os.environ[HOOK_ENV] = hook_key
    child_env = {**os.environ, "DEMO_HOOK_KEY": hook_key, "PYTHONUNBUFFERED": "1"}
    try:
        with ExitStack():
            out.print(f"[bold]rotator demo[/] · working directory {root}")
            standin = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rotator.testing.adjutor",
                    "--port",
                    "0",
                    "--ready-file",
                    str(root / "standin.json"),
                ],
                env=child_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(standin)
            info = _wait_ready(root / "standin.json", standin, "the Adjutor stand-in")
            api_base, admin = info["url"], info["admin_token"]
            key = info["key"]
            out.print(f"started the Adjutor stand-in on {api_base} (one valid key at a time)")
            for sub in ("store/adjutor.env", "api/.env", "worker/.env"):
                _write_env(root / sub, f"# demo settings\nAPP_NAME=demo\nADJUTOR_API_KEY={key}\nLOG_LEVEL=info\n")
            urls: dict[str, str] = {}
            for name in ("api", "worker"):
                hold = ["--hold", "10"] if name == HELPED else []
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "rotator.demo.consumer_app",
                        "--env-file",
                        str(root / name / ".env"),
                        "--api",
                        api_base,
                        "--pidfile",
                        str(root / name / f"{name}.pid"),
                        "--ready-file",
                        str(root / name / "ready.json"),
                        "--hmac-key-env",
                        "DEMO_HOOK_KEY",
                        *hold,
                    ],
                    env=child_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                procs.append(proc)
                urls[name] = _wait_ready(root / name / "ready.json", proc, f"consumer {name}")["url"]
                how = "with the hold-and-retry helper" if hold else "without the helper"
                out.print(
                    f"started consumer [bold]{name}[/] (pid {proc.pid}) on {urls[name]}, calling the API every 20 ms"
                    f" {how}"
                )
            plan_path = plans.write_plan(
                root / "demo.toml",
                demo_plan(
                    root,
                    f"{api_base}/v2/decisioning/models",
                    urls["api"],
                    urls["worker"],
                    hook_key_file=secret_file(root / "hook.key", hook_key) if keep else None,
                ),
                header="Generated by `rotator demo`: every URL and path below is on this machine.",
            )
            plan = load_plan(plan_path)
            journal = Journal(f"sqlite:///{root / 'journal.db'}")
            time.sleep(0.3)  # let the consumers show a few good calls first
            report = asyncio.run(_rotate(plan, journal, api_base, admin, out, pause))
            time.sleep(0.1)
            outages = {name: _http_json(f"{url}/stats") for name, url in urls.items()}
            if rows is not None:
                rows.append(_single_row(report, outages, pause))
            journal.close()
            if as_json:
                data = {"schema": 1, **report.as_dict()}  # rotator.cli.output.SCHEMA
                data["consumers_seen"] = outages
                print(json.dumps(data, indent=2))
            print_report(out, report)
            out.print()
            for name, s in outages.items():
                secs = s.get("outage_seconds")
                lost = f"{secs * 1000:.0f} ms" if secs is not None else "none"
                line = (
                    f"consumer [bold]{name}[/]: {s['failed']} failed calls during the reset (outage {lost}), "
                    f"{s['ok']} good calls, now on {s['fingerprint']}"
                )
                if s.get("hold") is not None:
                    h = s["hold"]
                    line += (
                        f"; hold-and-retry helper: {h['held']} calls held, longest hold "
                        f"{h['longest_hold'] * 1000:.0f} ms, {h['timeouts']} timed out"
                    )
                out.print(line)
            outage = f"{report.outage * 1000:.0f} ms" if report.outage is not None else "not measured"
            out.print(
                "\nThe API refused the old key from the reset on: that is the outage "
                f"({outage}: the operator's share, reset → key pasted, plus rotator's window, key pasted → last "
                f"consumer confirmed, {(report.window or 0) * 1000:.0f} ms here). The consumer without the helper "
                "failed every call in it; the one with the helper held them until the new key was in its env file."
            )
            if keep and kept is not None:
                kept.append(_kept(root, api_base, secret_file(root / "admin.token", admin), procs))
                procs = []  # handed over: `hold` stops them at Ctrl-C
            return report.exit_code
    finally:
        stop(procs)
        os.environ.pop(HOOK_ENV, None)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _single_row(report: Report, stats: dict[str, dict[str, Any]], pause: float) -> Any:
    from rotator.demo.alternating import Row

    failed = {name: int(s["failed"]) for name, s in stats.items()}
    outage = {name: float(s.get("outage_seconds") or 0.0) for name, s in stats.items()}
    return Row("single", "reset", pause, failed, outage, report.window, report.exit_code, report.as_dict())


OPERATOR_PASTE = 0.5  # seconds the demo's operator takes to paste, once the reset is seen


def _kept(root: Path, api: str, admin_file: Path, procs: list[subprocess.Popen[bytes]]) -> Kept:
    plan = "demo.toml"  # the commands run in `root`, with ROTATOR_DB set (rotator.demo._shared.hold)
    return Kept(
        "single app",
        root,
        procs,
        [
            f"rotator rotate {plan}                       # arms, then waits for the key",
            f"{reset_command(api, Path(admin_file.name))}   # once it says Armed: 'Reset app key'; paste the key it prints",
            f"rotator history --plan {plan}",
            "rotator show ID                             # one rotation's audit trail",
        ],
    )


async def _rotate(
    plan: Any, journal: Journal, api_base: str, admin: str, out: Console, pause: float = OPERATOR_PASTE
) -> Report:
    from rotator.errors import RotatorError
    from rotator.pipeline.session import ArmedSession, Listener, SingleFlow
    from rotator.reset_watch import ResetDetected

    seen = asyncio.Event()

    class Demo(Listener):
        def reset_detected(self, reset: ResetDetected) -> None:
            out.print(f"[bold red]! the old key stopped working {reset.ago():.1f} s ago — paste the new key now[/]")
            seen.set()

        def refused(self, attempt: Any) -> None:
            out.print(f"[red]✗ {attempt.message}[/]")

    rot = RotationState(plan, journal, reason="demo", progress_fn=ProgressPrinter(out))
    session = ArmedSession(rot, Demo(), flow=SingleFlow(unavailable_keeps_armed=False))
    try:
        try:
            await session.arm()
        except RotatorError as exc:
            raise RuntimeError(f"demo could not arm: {exc}") from None
        await asyncio.sleep(0.3)  # the watch sees the old key pass a few times
        out.print("[bold]armed[/]; now pressing 'Reset app key' on the stand-in (the old key dies at once)")
        new_key = await asyncio.to_thread(
            lambda: _http_json(f"{api_base}/_admin/reset", method="POST", headers={"X-Admin-Token": admin})["key"]
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(seen.wait(), 3.0)
        if pause > 0:
            out.print(
                f"operator: copying and pasting the new key takes {pause:.1f} s; "
                "every call of the consumer without the helper fails meanwhile"
            )
            await asyncio.sleep(pause)
        typo = new_key[:-1] + ("x" if new_key[-1] != "x" else "y")
        out.print("pasting the key with a typo in it first:")
        await session.hand(typo)
        out.print("pasting the right key:")
        attempt = await session.hand(f"  {new_key}\n")
        assert attempt.report is not None
        return attempt.report
    finally:
        await session.release()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo())
