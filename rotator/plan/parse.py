"""Reading a plan file and checking it whole: the tables, every plugin's settings, and the checks across them.

Every problem is reported as one line, ``FILE: key.path: what is wrong``, and all of
them in one pass.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rotator.errors import PlanError
from rotator.files import NotRegular, TooLarge, read_regular
from rotator.notify.base import NotifierSettings
from rotator.plan.deep_keys import MAX_KEY_PARTS, too_deep
from rotator.plan.model import Plan, PlanFile
from rotator.plan.problems import error_lines
from rotator.plan.secret import SecretSpec, Strategy
from rotator.plugin import BackendSettings, ConsumerSettings
from rotator.registry import UnknownPlugin, backend_class, consumer_class, notifier_class

MAX_PLAN_BYTES = 1_000_000


def load_plan(path: str | Path) -> Plan:
    """Read and check a plan; raise PlanError listing every problem found."""
    path = Path(path)
    label = str(path)
    try:
        raw_bytes = read_regular(path, MAX_PLAN_BYTES)
    except FileNotFoundError:
        raise PlanError([f"{label}: file not found"]) from None
    except NotRegular as exc:  # a named pipe would block the read forever
        raise PlanError([f"{label}: not a regular file ({exc.kind}); give the path of a plan file"]) from None
    except TooLarge as exc:
        raise PlanError([f"{label}: {exc.size} bytes; a plan is at most {MAX_PLAN_BYTES}"]) from None
    except OSError as exc:
        raise PlanError([f"{label}: cannot read: {exc.strerror}"]) from None
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise PlanError([f"{label}: not UTF-8 text"]) from None
    if (line := too_deep(text)) is not None:
        raise PlanError(
            [f"{label}: line {line}: a dotted key with more than {MAX_KEY_PARTS} parts; a plan's keys are a few deep"]
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError([f"{label}: not valid TOML: {exc}"]) from None
    except RecursionError:
        raise PlanError([f"{label}: nested too deeply"]) from None
    try:
        return parse_plan(data, path)
    except RecursionError:
        raise PlanError([f"{label}: nested too deeply"]) from None


def _strategy_problems(label: str, spec: SecretSpec, backends: list[BackendSettings]) -> list[str]:
    """An alternating plan names two different apps and a primary that can hold the standby."""
    if spec.strategy is Strategy.SINGLE:
        if spec.apps:
            return [f'{label}: secret.apps: only used with strategy = "alternating" (this plan is "single")']
        return []
    if len(spec.apps) != 2:
        return [
            f'{label}: secret.apps: strategy = "alternating" needs exactly two apps, as the dashboard names them '
            f'(found {len(spec.apps)}), e.g. apps = ["payments-blue", "payments-green"]'
        ]
    problems: list[str] = []
    if spec.apps[0].strip().casefold() == spec.apps[1].strip().casefold():
        problems.append(f"{label}: secret.apps[1]: {spec.apps[1]!r} is the same app twice; name two different apps")
    for i, b in enumerate(backends):
        if b.primary:
            why = backend_class(b.type).standby_problem(b)
            if why:
                problems.append(f"{label}: backends[{i}]: {why} (alternating keeps the standby key on the primary)")
    return problems


def parse_plan(data: dict[str, Any], path: Path) -> Plan:
    """Check a plan's parsed TOML; raise PlanError listing every problem found."""
    label = str(path)
    problems: list[str] = []
    try:
        pf: PlanFile | None = PlanFile.model_validate(data)
    except ValidationError as exc:
        problems = error_lines(label, exc, model=PlanFile)
        # Still check the targets we can, so one run shows every problem.
        pf = None
    backends: list[BackendSettings] = _settings(label, data, "backends", backend_class, problems)
    consumers: list[ConsumerSettings] = _settings(label, data, "consumers", consumer_class, problems)
    notifiers: list[NotifierSettings] = _settings(label, data, "notify", notifier_class, problems)
    primaries = _across_targets(label, data, problems)
    if pf is not None and not problems:
        p = next(b for b in backends if b.primary)
        if not backend_class(p.type).can_be_primary:
            problems.append(f"{label}: backends[{primaries[0]}].primary: a {p.type} backend cannot be the primary")
        problems.extend(_strategy_problems(label, pf.secret, backends))
    if problems:
        raise PlanError(problems)
    assert pf is not None
    return Plan(
        path=path,
        secret=pf.secret,
        probe=pf.probe,
        rotation=pf.rotation,
        backends=backends,
        consumers=consumers,
        schedules=pf.schedules,
        notify=notifiers,
        proxy=pf.proxy,
    )


def _settings(
    label: str, data: dict[str, Any], section: str, getter: Callable[[str], Any], problems: list[str]
) -> list[Any]:
    """Each entry of a plugin section (backends, consumers, notify) as its plugin's settings; problems appended."""
    out: list[Any] = []
    entries = data.get(section, [])
    if not isinstance(entries, list):
        return out  # the plan file's model reports it
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        type_name = entry.get("type")
        if not isinstance(type_name, str):
            problems.append(f"{label}: {section}[{i}].type: required")
            continue
        try:
            cls = getter(type_name)
        except UnknownPlugin as exc:
            problems.append(f"{label}: {section}[{i}].type: {exc}")
            continue
        try:
            out.append(cls.Settings.model_validate(entry))
        except ValidationError as exc:
            problems.extend(error_lines(label, exc, (section, i), cls.Settings))
    return out


def _across_targets(label: str, data: dict[str, Any], problems: list[str]) -> list[int]:
    """The checks across targets, appended to `problems`; returns the primaries' indexes.

    They read the entries as written, so they are reported in the same pass as each
    target's own problems (not only once those are fixed)."""
    raw = {
        sec: [e for e in data.get(sec, []) if isinstance(e, dict)] if isinstance(data.get(sec), list) else []
        for sec in ("backends", "consumers")
    }
    primaries = [i for i, b in enumerate(raw["backends"]) if b.get("primary") is True]
    if raw["backends"] and len(primaries) != 1:
        problems.append(f"{label}: backends: exactly one backend needs primary = true (found {len(primaries)})")
    names = {b["name"] for b in raw["backends"] if isinstance(b.get("name"), str)}
    for i, c in enumerate(raw["consumers"]):
        deps = c.get("reads_from")
        for j, dep in enumerate(deps if isinstance(deps, list) else []):
            if isinstance(dep, str) and dep not in names:
                problems.append(f"{label}: consumers[{i}].reads_from[{j}]: no backend named {dep!r}")
    problems.extend(_unique_names(label, raw))
    return primaries


def _unique_names(label: str, raw: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One namespace for both kinds: arm checks, results, the journal and reads_from
    all name a target, so a consumer named like a backend would hide it."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for section in ("backends", "consumers"):
        for i, item in enumerate(raw[section]):
            name = item.get("name")
            if not isinstance(name, str):
                continue
            if name in seen:
                problems.append(
                    f"{label}: {section}[{i}].name: {name!r} is already the name of {seen[name]}; "
                    "names must be unique across backends and consumers"
                )
            else:
                seen[name] = f"{section}[{i}]"
    return problems
