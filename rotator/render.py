"""Human-readable output: live progress lines and the final report.

Progress and reports go to stderr so that `--json` keeps stdout for the report.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rotator.report import RESUMABLE, Progress, Report, RunState, window_from

_STYLE = {"ok": "green", "failed": "bold red", "warning": "yellow", "skipped": "yellow", "running": "dim"}
_MARK = {"ok": "✓", "failed": "✗", "warning": "!", "skipped": "-", "running": "…"}


_ANSI = {"ok": "\x1b[32m", "failed": "\x1b[1;31m", "warning": "\x1b[33m", "skipped": "\x1b[33m", "running": "\x1b[2m"}


class ProgressPrinter:
    """One line per step and target as each finishes, with its time.

    Called on the event loop in the middle of the window, so it formats plain
    text and writes it directly: rich's markup rendering cost ~90 µs a line,
    36 ms over a 200-target rotation.
    """

    def __init__(self, console: Console, show_running: bool = False) -> None:
        self.file = console.file
        self.color = console.is_terminal and not console.no_color
        self.show_running = show_running

    def __call__(self, p: Progress) -> None:
        if p.status == "running" and not (self.show_running and not p.target):
            return
        mark = _MARK.get(p.status, " ")
        if self.color:
            mark = f"{_ANSI.get(p.status, '')}{mark}\x1b[0m"
        secs = f"{p.seconds * 1000:8.1f} ms" if p.seconds is not None else " " * 11
        self.file.write(f"{mark} {p.step:<8} {p.target:<24} {secs}  {p.detail}\n")
        self.file.flush()


def _version(version: str | None) -> str:
    """`v3` for a numbered version (Vault's, a journal's); other versions as they are (`fp:…`, AWS ids)."""
    if not version:
        return ""
    return f"v{version}" if version.isdigit() else version


def print_report(console: Console, report: Report) -> None:
    style = "green" if report.exit_code == 0 else "bold red"
    console.print()
    table = Table(title=f"rotation {report.id} · {report.plan}", title_justify="left", show_edge=False)
    for col in ("target", "kind", "status", "start", "end", "version / why"):
        table.add_column(col, overflow="fold")
    for t in report.targets:
        good = t.status in ("ok", "unchanged")
        st = _STYLE["ok" if good else "failed"]
        note = _version(t.version) if good else t.detail
        table.add_row(
            t.name + (" (primary)" if t.primary else ""),
            f"{t.kind}/{t.type}",
            f"[{st}]{t.status}[/]",
            _ms(t.started),
            _ms(t.finished),
            escape(note),
        )
    if report.targets:
        console.print(table)
    if report.probe:
        p = report.probe
        extra = ""
        if p.cost is not None or p.balance is not None:
            extra = f" · cost {p.cost if p.cost is not None else '?'} · balance {p.balance if p.balance is not None else '?'}"
        console.print(f"probe: {p.outcome.value} ({escape(p.detail)}) in {p.seconds * 1000:.1f} ms{extra}")
    if report.revocation:
        r = report.revocation
        ok = r.outcome.value == "accepted"
        console.print(f"old key: [{'green' if ok else 'bold red'}]{escape(r.detail)}[/]")
    if report.old_fingerprint or report.new_fingerprint:
        console.print(
            f"fingerprint: {report.old_fingerprint or '(none)'} → {report.new_fingerprint or '(not written)'}"
        )
    if report.steps:
        console.print("steps: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in report.steps.items()))
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    if report.window is not None:
        start = window_from(report.kind, report.alternating)
        console.print(f"[bold]window: {report.window * 1000:.1f} ms[/] ({start} → last target done)")
    for line in incident_lines(report.as_dict()):
        console.print(f"[bold]{escape(line)}[/]")
    for line in outage_lines(report.as_dict()):
        console.print(escape(line))
    console.print(f"[{style}]{report.state}[/]: {escape(report.message)}")
    print_timeline(console, report.as_dict())


def incident_lines(d: dict[str, Any]) -> list[str]:
    """A single-app `rotate --incident`: the leaked key and whether it is proven revoked."""
    inc = d.get("incident")
    return [str(inc["detail"])] if isinstance(inc, dict) and inc.get("detail") else []


def outage_lines(d: dict[str, Any]) -> list[str]:
    """The outage beside the window, and the refused pastes (a report's dict: live or from the journal)."""
    out = []
    bound = d.get("outage_bound")
    reset = d.get("reset") or {}
    if bound:
        most = bound.get("at_most")
        if reset.get("inferred"):
            since = (
                f" after the watch's last pass at {_clock(reset['after'])}" if reset.get("after") is not None else ""
            )
            why = (
                "the watch had not seen the reset when the key arrived; the old key was refused then,"
                f" so the reset came{since} and by the key's arrival"
            )
        elif reset.get("uncertainty") is not None:
            why = (
                f"the watch saw the old key refused {reset['uncertainty'] * 1000:.0f} ms after its last pass;"
                " the reset came in between"
            )
        else:  # refused at the watch's first look: the reset came before it, how long before is unknown
            why = "the watch saw the old key refused at its first look; the reset came before that"
        out.append(
            f"outage: at least {bound['at_least'] * 1000:.1f} ms"
            + (f", at most {most * 1000:.1f} ms" if most is not None else "")
            + f" (a bound: {why})"
            + (
                f" = operator's share {d['operator_seconds'] * 1000:.1f} ms (from the refusal seen) + window"
                if d.get("operator_seconds") is not None
                else "; window"
            )
            + f" {d['window_seconds'] * 1000:.1f} ms"
        )
    elif d.get("outage_seconds") is not None:
        how = "looked at as the key arrived" if reset.get("inferred") else "seen by the watch"
        unc = f", to within {reset['uncertainty'] * 1000:.0f} ms" if reset.get("uncertainty") is not None else ""
        share = d.get("operator_seconds")
        out.append(
            f"outage: {d['outage_seconds'] * 1000:.1f} ms (reset {how}{unc} → last target done)"
            + (f" = operator's share {share * 1000:.1f} ms (reset → key received) +" if share is not None else ";")
            + f" window {d['window_seconds'] * 1000:.1f} ms"
        )
    elif (d.get("watch") or {}).get("outcome") in ("stopped", "reset") and d.get("window_seconds") is not None:
        out.append("outage: not measured (no reset of the old key was seen)")
    refused = d.get("refused_keys") or []
    if refused:
        out.append(
            f"refused pastes: {len(refused)} before the accepted key (not in the window: its clock starts"
            " at the key that was accepted; they are in the operator's share)"
        )
        for r in refused:
            when = f" {r['after_reset'] * 1000:.0f} ms after the reset" if r.get("after_reset") is not None else ""
            out.append(f"  #{r.get('attempt', '?')} {r['outcome']}{when}: {r['why']}")
    return out


def _clock(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3] + "Z"


def print_timeline(console: Console, report: dict[str, Any]) -> None:
    """The rotation's timeline (rotator.timeline), fitted to the console's width."""
    from rotator.timeline import build, render_text

    tl = build(report)
    if tl is None:
        return
    console.print()
    for line in render_text(tl, max(console.width, 40)):
        console.print(escape(line), overflow="crop", no_wrap=True)


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v * 1000:.1f} ms"


def report_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2)


def fmt_time(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def history_lines(rows: list[Any]) -> list[str]:
    """One line per rotation, plain text: readable in a terminal, a pipe or grep.  A run
    `rotator resume` can finish (report.RESUMABLE, what `rotate` warns about) says so."""
    out = [
        f"{'id':<26} {'kind':<6} {'plan':<20} {'state':<11} {'window':>9}  {'fingerprint':<34} {'operator':<10} reason"
    ]
    for r in rows:
        window = f"{r.window_s * 1000:.0f} ms" if r.window_s is not None else "-"
        fps = f"{r.old_fp or '-'} → {r.new_fp or '-'}"
        out.append(
            f"{r.id:<26} {r.kind:<6} {r.plan:<20} {r.state:<11} {window:>9}  {fps:<34} {r.operator:<10} {r.reason or ''}"
            + (f"  (unfinished: `rotator resume {r.id}`)" if r.state in RESUMABLE else "")
            + (
                f"  (unfinished: the re-key is left: `rotator rotate {r.plan_path}`)"
                if r.state == RunState.REKEY_LEFT
                else ""
            )
        )
    return out
