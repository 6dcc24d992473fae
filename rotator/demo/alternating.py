"""`rotator demo`'s alternating half: two Adjutor apps, so no reset ever touches a key in use.

Starts a stand-in whose organisation has two apps (``payments-blue`` and
``payments-green``, each its own key; resetting one revokes only that one's),
two consumer processes on blue's key, and an alternating plan whose primary
(an env file) keeps green's key in its standby variable.  Then, with the
operator taking `pause` seconds to copy and paste each new key:

* the one-time set-up: reset green, store its key as the standby;
* a planned rotation: promote green (every consumer moves to a key that already
  works), then reset blue, which no consumer uses any more;
* an incident (green's key leaked): promote blue, reset green (the leaked key
  dies at that click), prove it refused.

Each consumer's failed calls are counted from its own side (its ``/stats``,
every failure timestamped) before and after each flow.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from rotator.demo._shared import (
    Kept,
    _http_json,
    _wait_ready,
    _write_env,
    demo_targets,
    reset_command,
    secret_file,
    stop,
)
from rotator.testing import plans
from rotator.testing.adjutor import ADMIN_HEADER

if TYPE_CHECKING:
    from rich.console import Console

    from rotator.journal import Journal
    from rotator.pipeline.ask import ResetAsk
    from rotator.plan import Plan
    from rotator.report import Report
    from rotator.secret import Secret

BLUE, GREEN = "payments-blue", "payments-green"
CONSUMERS = ("api", "worker")


@dataclass
class Row:
    """One line of the side-by-side table: a flow, the operator's pause, what each consumer saw."""

    mode: str
    flow: str
    pause: float
    failed: dict[str, int]
    outage: dict[str, float]  # seconds per consumer, from its first failed call to its next good one
    window: float | None  # rotator's window (key received -> last consumer confirmed); a promote's for alternating
    exit_code: int = 0
    report: dict[str, Any] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "flow": self.flow,
            "pause_s": self.pause,
            "failed_calls": self.failed,
            "outage_seconds": self.outage,
            "window_s": self.window,
            "exit_code": self.exit_code,
            "report": self.report,
        }


def delta(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> tuple[dict[str, int], dict[str, float]]:
    """Failed calls and outage seconds per consumer between two `/stats` snapshots."""
    failed = {n: int(after[n]["failed"]) - int(before[n]["failed"]) for n in after}
    outage = {n: float(after[n].get("outage_seconds") or 0.0) if failed[n] else 0.0 for n in after}
    return failed, outage


def table(rows: list[Row]) -> Table:
    """mode | flow | operator pause | failed calls per consumer | outage (the longest consumer's)."""
    names = sorted({n for r in rows for n in r.failed})
    t = Table(title="the consumers' view: calls that failed because of the reset", title_justify="left")
    t.add_column("mode")
    t.add_column("flow")
    t.add_column("operator pause", justify="right")
    for n in names:
        t.add_column(f"failed calls: {n}", justify="right")
    t.add_column("outage", justify="right")
    for r in rows:
        worst = max(r.outage.values(), default=0.0)
        t.add_row(
            r.mode,
            r.flow,
            f"{r.pause:.0f} s",
            *(f"[{'green' if r.failed.get(n, 0) == 0 else 'red'}]{r.failed.get(n, 0)}[/]" for n in names),
            "none" if worst == 0 else f"{worst:.2f} s",
        )
    return t


class DemoOperator:
    """The operator, played by the demo: resets the app rotator names, takes `pause` seconds, pastes."""

    def __init__(self, out: Console, api: str, admin: str, pause: float) -> None:
        self.out, self.api, self.admin, self.pause = out, api, admin, pause

    async def key(self, ask: ResetAsk) -> Secret:
        from rotator.secret import clean_paste

        if ask.refused:
            self.out.print(f"[red]✗ {escape(ask.refused)}[/]")
        self.out.print(f"[bold]rotator asks[/]: Adjutor dashboard → {escape(ask.instruction)}")
        key = await asyncio.to_thread(self._reset, ask.app)
        self.out.print(
            f"operator: pressed 'Reset app key' on {ask.app}; copying and pasting the new key takes {self.pause:.0f} s"
        )
        await asyncio.sleep(self.pause)
        return clean_paste(f"{key}\n").secret

    def notice(self, line: str) -> None:
        self.out.print(f"[bold red]! {escape(line)}[/]")

    def _reset(self, app: str) -> str:
        req = urllib.request.Request(  # noqa: S310 - the loopback stand-in we started
            f"{self.api}/_admin/reset",
            data=json.dumps({"app": app}).encode(),
            method="POST",
            headers={ADMIN_HEADER: self.admin, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            return str(json.loads(resp.read())["key"])


def alternating_plan(
    root: Path, models_url: str, api_url: str, worker_url: str, hook_key_file: Path | None = None
) -> dict[str, Any]:
    """The demo's plan in alternating mode: the primary env file holds the standby too.

    `hook_key_file`: the webhook's HMAC key is read from this file (a kept demo's plan works
    from any shell), else from the environment variable only this process has."""
    plan = plans.plan(
        "payments-demo",
        description="Adjutor API key of the demo's two apps",
        strategy="alternating",
        apps=[BLUE, GREEN],
        probe=plans.adjutor_probe(models_url),
        **demo_targets(root, api_url, worker_url),
    )
    if hook_key_file is not None:
        plan["consumers"][0]["hmac_key"] = {"file": str(hook_key_file)}
    return plan


def run_alternating(
    out: Console,
    *,
    pause: float,
    rows: list[Row],
    env: dict[str, str],
    keep: bool = False,
    kept: list[Kept] | None = None,
) -> int:
    """Start the two-app world, run set-up, planned rotation and incident; append their rows.
    Returns the exit code: 0 when every flow finished.  With `keep`, its processes go on
    running: appended to `kept` with the commands to go on by hand."""
    from rotator.journal import Journal
    from rotator.plan import load_plan

    root = Path(tempfile.mkdtemp(prefix="rotator-demo-alt-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        out.print(f"\n[bold]alternating mode[/]: two apps ({BLUE}, {GREEN}) · working directory {root}")
        argv = [
            sys.executable, "-m", "rotator.testing.adjutor", "--port", "0",
            "--ready-file", str(root / "standin.json"), "--app", BLUE, "--app", GREEN,
        ]  # fmt: skip
        standin = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(standin)
        info = _wait_ready(root / "standin.json", standin, "the Adjutor stand-in")
        (root / "standin.json").unlink()  # it holds both apps' keys
        api, admin, blue_key = info["url"], info["admin_token"], info["apps"][BLUE]
        out.print(f"started the Adjutor stand-in on {api}: two apps, each its own key; a reset revokes only that app's")
        for sub in ("store/adjutor.env", "api/.env", "worker/.env"):
            _write_env(root / sub, f"# demo settings\nAPP_NAME=demo\nADJUTOR_API_KEY={blue_key}\nLOG_LEVEL=info\n")
        urls = {name: _start_consumer(root, name, api, env, procs) for name in CONSUMERS}
        out.print(f"started consumers {', '.join(CONSUMERS)} on {BLUE}'s key, calling the API every 20 ms")
        plan_path = plans.write_plan(
            root / "alternating.toml",
            alternating_plan(
                root,
                f"{api}/v2/decisioning/models",
                urls["api"],
                urls["worker"],
                hook_key_file=secret_file(root / "hook.key", env["DEMO_HOOK_KEY"]) if keep else None,
            ),
            header="Generated by `rotator demo` (alternating mode): every URL and path below is on this machine.",
        )
        plan = load_plan(plan_path)
        journal = Journal(f"sqlite:///{root / 'journal.db'}")
        operator = DemoOperator(out, api, admin, pause)
        code = 0
        try:
            time.sleep(0.3)  # a few good calls first
            flows = [
                ("set-up", "one-time set-up: reset the second app and keep its key as the standby", 0.0),
                (
                    "planned",
                    "planned rotation: promote the standby, then reset the app no consumer uses any more",
                    pause,
                ),
                ("incident", "incident (the active key leaked): promote first, then reset the leaked app", pause),
            ]
            for flow, title, flow_pause in flows:
                out.print(f"\n[bold]{title}[/]")
                operator.pause = flow_pause
                before = _stats(urls)
                report = asyncio.run(_flow(plan, journal, out, operator, flow))
                time.sleep(0.1)  # a call under way when the flow ended is counted
                failed, outage = delta(before, _stats(urls))
                promote = (report.alternating or {}).get("promote") or {}
                out.print(("[green]✓ " if report.exit_code == 0 else "[red]✗ ") + f"{escape(report.message)}[/]")
                out.print(
                    "  consumers: "
                    + ", ".join(f"{n} {failed[n]} failed calls" for n in CONSUMERS)
                    + (f"; promote window {promote['window_s'] * 1000:.0f} ms" if promote.get("window_s") else "")
                )
                if flow != "set-up":
                    rows.append(
                        Row(
                            "alternating",
                            flow,
                            flow_pause,
                            failed,
                            outage,
                            promote.get("window_s"),
                            report.exit_code,
                            report.as_dict(),
                        )
                    )
                if report.exit_code != 0:
                    code = report.exit_code
                    break
        finally:
            journal.close()
        if keep and kept is not None:
            kept.append(_kept(root, api, secret_file(root / "admin.token", admin), procs))
            procs = []  # handed over: stopped at Ctrl-C
        return code
    finally:
        stop(procs)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


async def _flow(plan: Plan, journal: Journal, out: Console, operator: DemoOperator, flow: str) -> Report:
    from rotator import pipeline
    from rotator.pipeline import alternating, arm
    from rotator.pipeline.state import RotationState
    from rotator.render import ProgressPrinter

    kind = "rekey" if flow == "set-up" else "rotate"
    state = RotationState(plan, journal, kind=kind, reason=f"demo: {flow}", progress_fn=ProgressPrinter(out))
    try:
        alt = await pipeline.arm_alternating(state)
        out.print(f"slots: {escape(alt.describe())}")
        if flow == "set-up":
            return await pipeline.rekey_standby(state, alt, operator)
        out.print(escape(alternating.plan_line(alt, incident=flow == "incident")))
        if flow == "incident":
            return await pipeline.incident(state, alt, operator)
        return await pipeline.rotate_alternating(state, alt, operator)
    finally:
        await arm.disarm(state)


def _start_consumer(root: Path, name: str, api: str, env: dict[str, str], procs: list[subprocess.Popen[bytes]]) -> str:
    argv = [
        sys.executable, "-m", "rotator.demo.consumer_app", "--env-file", str(root / name / ".env"), "--api", api,
        "--pidfile", str(root / name / f"{name}.pid"), "--ready-file", str(root / name / "ready.json"),
        "--hmac-key-env", "DEMO_HOOK_KEY",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs.append(proc)
    return str(_wait_ready(root / name / "ready.json", proc, f"consumer {name}")["url"])


def _stats(urls: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {name: _http_json(f"{url}/stats") for name, url in urls.items()}


def _kept(root: Path, api: str, admin_file: Path, procs: list[subprocess.Popen[bytes]]) -> Kept:
    plan = "alternating.toml"  # the commands run in `root`, with ROTATOR_DB set (rotator.demo._shared.hold)
    return Kept(
        "alternating apps",
        root,
        procs,
        [
            f"rotator status {plan}                       # which app is active, both keys' ages",
            f"rotator rotate {plan}                       # promotes, then names the app to reset",
            f"{reset_command(api, Path(admin_file.name), 'APP')}   # the app it names; paste the key it prints",
            f"rotator rollback {plan}                     # after a promote, before its re-key",
            f"rotator rekey {plan}                        # re-key the standby app",
            f"rotator rotate {plan} --incident            # the active key leaked",
        ],
    )
