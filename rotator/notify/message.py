"""From a report to a `Message`: what a notification says, for every notifier alike.

Reads the report as JSON data (``Report.as_dict()``, or the journal's copy), so
a field renamed there is looked up under both names here rather than breaking
notifications.  Every piece of text is scrubbed twice: of every live secret
value (`rotator.secret.scrub`) and of anything shaped like an Adjutor key, so a
key that reached a detail string by some new path still never leaves.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rotator.notify.base import Fact, Message, Outcome
from rotator.report import window_from
from rotator.secret import REDACTED, scrub

SCHEMA = 1
MAX_LINES = 20  # per-target lines shown; a 200-target failure is summarised, not pasted
_KEY_SHAPED = re.compile(r"sk_(?:live|test)_[A-Za-z0-9]{6,}")
_GOOD = {"ok", "unchanged", "confirmed", "done"}


def clean(text: object) -> str:
    """One line of scrubbed text."""
    out = scrub(" ".join(str(text).split()))
    return _KEY_SHAPED.sub(REDACTED, out)


def _first(d: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        if d.get(n) is not None:
            return d[n]
    return None


def _ms(seconds: object) -> str | None:
    try:
        value = float(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def drift_line(d: Mapping[str, Any]) -> str:
    """One repaired backend: its fingerprint before → after, and what it recorded of the change."""
    seen = []
    if d.get("changed_at"):
        seen.append(f"changed {clean(d['changed_at'])}")
    if d.get("changed_by"):
        seen.append(f"by {clean(d['changed_by'])}")
    if d.get("version_before"):
        seen.append(f"version {clean(d['version_before'])}")
    told = f" ({', '.join(seen)})" if seen else " (the backend records no time of change)"
    return f"{clean(d.get('backend'))}: {clean(d.get('before') or 'absent')} → {clean(d.get('after') or '?')}{told}"


def drift_repaired(plan_name: str, report: Mapping[str, Any], *, link: str | None = None) -> Message:
    """A sync found backends that differed from the primary and wrote them back: news
    (who edited a secondary?), unlike the syncs that find nothing, which send nothing."""
    link = clean(link) if link else None
    drift = [d for d in report.get("drift") or [] if isinstance(d, Mapping)]
    names = ", ".join(clean(d.get("backend")) for d in drift)
    ok = report.get("exit_code") == 0
    title = f"{plan_name}: a sync repaired drift in {names}"
    summary = (
        f"{len(drift)} backend(s) held a different key than the primary and were set back to the primary's key: "
        "check who changed them"
        + ("" if ok else f"; not every target is in line: {clean(report.get('message') or '')}")
    )
    rid = report.get("id")
    facts = [Fact("Sync", clean(rid))] if rid else []
    facts.append(Fact("Primary's key", clean(report.get("new_fingerprint") or report.get("new_fp") or "?")))
    lines = [drift_line(d) for d in drift][:MAX_LINES]
    lines += [f"warning: {clean(w)}" for w in report.get("warnings") or []]
    data = {
        "schema": SCHEMA,
        "event": "sync.drift_repaired",
        "plan": plan_name,
        "rotation_id": clean(rid) if rid else None,
        "kind": "sync",
        "outcome": Outcome.WARNING.value,
        "state": clean(report.get("state") or ""),
        "exit_code": report.get("exit_code"),
        "message": summary,
        "drift": [
            {k: (clean(v) if isinstance(v, str) else v) for k, v in d.items() if k != "type"} | {"type": d.get("type")}
            for d in drift
        ],
        "link": link,
    }
    return Message(title, Outcome.WARNING, summary, tuple(facts), tuple(lines), link, data)


def from_report(plan_name: str, report: Mapping[str, Any], *, link: str | None = None) -> Message:
    """The notification for one rotation, resume or sync (a sync that repaired drift: `drift_repaired`)."""
    if report.get("kind") == "sync" and report.get("drift"):
        return drift_repaired(plan_name, report, link=link)
    link = clean(link) if link else None
    kind = clean(report.get("kind") or "rotation")
    state = clean(report.get("state") or "unknown")
    exit_code = report.get("exit_code")
    ok = exit_code == 0
    outcome = Outcome.SUCCESS if ok else Outcome.FAILURE
    title = f"{plan_name}: {kind} {state}" + ("" if ok or exit_code is None else f" (exit {exit_code})")
    summary = clean(report.get("message") or state)

    facts: list[Fact] = []
    rid = report.get("id")
    if rid:
        facts.append(Fact("Rotation", clean(rid)))
    window = _ms(_first(report, "window_seconds", "window_s", "window"))
    if window:
        start = window_from(str(report.get("kind") or ""), report.get("alternating"))
        facts.append(Fact("Window", f"{window} ({start} → last target done)"))
    outage = _ms(_first(report, "outage_seconds", "outage_s", "outage"))
    bound = report.get("outage_bound") if isinstance(report.get("outage_bound"), dict) else None
    if outage and not bound:
        facts.append(Fact("Outage", f"{outage} (old key stopped working → last target done)"))
    elif bound and _ms(bound.get("at_least")):
        most = _ms(bound.get("at_most"))
        facts.append(Fact("Outage", f"at least {_ms(bound['at_least'])}" + (f", at most {most}" if most else "")))
    for label, names in (("Operator", ("operator",)), ("Reason", ("reason",))):
        value = _first(report, *names)
        if value:
            facts.append(Fact(label, clean(value)))
    old_fp = _first(report, "old_fingerprint", "old_fp")
    new_fp = _first(report, "new_fingerprint", "new_fp")
    if old_fp or new_fp:
        facts.append(Fact("Fingerprint", f"{clean(old_fp or '?')} → {clean(new_fp or '?')}"))
    old_key = report.get("old_key_check")
    if isinstance(old_key, Mapping) and old_key.get("detail"):
        facts.append(Fact("Old key", clean(old_key["detail"])))

    targets = [t for t in report.get("targets") or [] if isinstance(t, Mapping)]
    bad = [t for t in targets if str(t.get("status")) not in _GOOD]
    if targets:
        counts: dict[str, int] = {}
        for t in targets:
            counts[clean(t.get("status"))] = counts.get(clean(t.get("status")), 0) + 1
        facts.append(Fact("Targets", ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))))
    lines = [f"{clean(t.get('name'))}: {clean(t.get('status'))}: {clean(t.get('detail') or '')}" for t in bad]
    lines += [f"warning: {clean(w)}" for w in report.get("warnings") or []]
    if len(lines) > MAX_LINES:
        lines = [*lines[: MAX_LINES - 1], f"... and {len(lines) - MAX_LINES + 1} more (rotator show {clean(rid)})"]

    data = {
        "schema": SCHEMA,
        "event": f"{kind}.{'succeeded' if ok else 'failed'}",
        "plan": plan_name,
        "rotation_id": clean(rid) if rid else None,
        "kind": kind,
        "outcome": outcome.value,
        "state": state,
        "exit_code": exit_code,
        "message": summary,
        "operator": clean(report.get("operator") or ""),
        "reason": clean(report.get("reason") or ""),
        "old_fingerprint": clean(old_fp) if old_fp else None,
        "new_fingerprint": clean(new_fp) if new_fp else None,
        "window_seconds": _first(report, "window_seconds", "window_s", "window"),
        "outage_seconds": _first(report, "outage_seconds", "outage_s", "outage"),
        "targets": [
            {"name": clean(t.get("name")), "status": clean(t.get("status")), "detail": clean(t.get("detail") or "")}
            for t in targets
        ],
        "link": link,
    }
    return Message(title, outcome, summary, tuple(facts), tuple(lines), link, data)


def warning(plan_name: str, text: str, *, link: str | None = None) -> Message:
    """A notice that is not about one rotation (e.g. the key-age reminder)."""
    link = clean(link) if link else None
    summary = clean(text)
    data = {"schema": SCHEMA, "event": "warning", "plan": plan_name, "outcome": "warning", "message": summary}
    return Message(f"{plan_name}: warning", Outcome.WARNING, summary, link=link, data={**data, "link": link})
