"""Plan files: one TOML file per secret, checked without touching the network.

Every problem is reported as one line, ``FILE: key.path: what is wrong``,
and unknown keys are errors so that a typo never passes silently.
"""

from __future__ import annotations

import enum
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import re2
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rotator.errors import PlanError
from rotator.files import NotRegular, TooLarge, read_regular
from rotator.notify.base import NotifierSettings
from rotator.plugin import BackendSettings, ConsumerSettings, SecretRef
from rotator.proxy.config import ProxySpec
from rotator.registry import UnknownPlugin, backend_class, consumer_class, notifier_class
from rotator.secret import ADJUTOR_KEY_PATTERN, key_regex

MAX_PLAN_BYTES = 1_000_000
MAX_KEY_PARTS = 16  # a plan's deepest real key has 3 or 4 parts (probe.headers.Authorization)
ADJUTOR_PROBE_URL = "https://adjutor.lendsqr.com/v2/decisioning/models"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


PLACEHOLDER = "CHANGE-ME"  # what `rotator init` writes where the operator must put a value


class Strategy(enum.StrEnum):
    """How a plan's key is replaced.

    ``single``: one Adjutor app; its key is reset and every consumer fails until it
    has the new one.  ``alternating``: two apps with the same API services; the
    consumers move to the standby app's key (which works already) before the other
    app is reset, so no call fails whatever the operator's speed.
    """

    SINGLE = "single"
    ALTERNATING = "alternating"


AppName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class SecretSpec(_Strict):
    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.:/-]+$",
        description="the secret's name: journal and lock key",
    )
    description: str = Field(default="", max_length=2000, description="free text, for people")
    strategy: Strategy = Field(
        default=Strategy.SINGLE,
        description="single: one app; alternating: two apps, the standby key kept on the primary",
    )
    apps: list[AppName] = Field(
        default_factory=list,
        max_length=20,
        description="alternating: the two Adjutor apps, as the dashboard names them",
    )
    max_age_days: int | None = Field(
        default=None, ge=1, le=3650, description="the age-check job warns when the key is older (default: never)"
    )
    reminder_lead_days: int = Field(default=7, ge=0, le=365, description="warn this many days before max age")
    key_pattern: str | None = Field(
        default=ADJUTOR_KEY_PATTERN,
        description="a pasted key that does not match is warned about (the probe decides); RE2 syntax, linear time",
    )

    @field_validator("key_pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            key_regex(v)  # RE2, as the paste is matched: linear time, so no pattern can hang the window
        return v


class ProbeSpec(_Strict):
    """An HTTP request that must succeed with the new key before it is written."""

    preset: Literal["adjutor"] | None = Field(
        default=None, description="adjutor: GET /v2/decisioning/models with a Bearer key, expecting status success"
    )
    url: str | None = Field(default=None, max_length=2000, description="the request's URL (never holds {key})")
    method: Literal["GET", "POST", "HEAD", "PUT", "PATCH", "DELETE"] = Field(default="GET", description="HTTP method")
    headers: dict[str, str] = Field(
        default_factory=dict, description="{key} in a value is replaced by the key being probed"
    )
    accept_status: list[int] = Field(default_factory=list, description="empty means any 2xx")
    refuse_status: list[int] = Field(
        default_factory=lambda: [401, 403], description="these refuse the key: nothing is written"
    )
    expect_json: dict[str, str | int | bool] = Field(
        default_factory=dict, description="top-level JSON fields the body must have"
    )
    timeout: float = Field(default=5.0, gt=0, le=120, description="seconds per attempt")
    retries: int = Field(default=2, ge=0, le=10, description="retries of unavailable answers (5xx, timeouts) only")
    backoff: float = Field(default=0.2, ge=0, le=30, description="seconds before the first retry")
    check_old_key: bool = Field(
        default=False, description="after the rotation, the old key must be refused (proof of revocation)"
    )
    enabled: bool = Field(default=True, description="false: keys are written unprobed")
    paths: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="more paths on the url's host that every key must be accepted on "
        "(alternating: a promote never moves consumers to an app lacking one of these API services)",
    )
    watch_interval: float = Field(
        default=0.5, description="seconds between probes of the old key while armed (reset detection); 0 = off"
    )

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        for i, path in enumerate(v):
            if not re.fullmatch(r"/[^\s?#{}]*(\?[^\s#{}]*)?", path):
                raise ValueError(f"[{i}] {path!r}: a path starting with / (no spaces, no #, no {{key}})")
        if len(set(v)) != len(v):
            raise ValueError("a path is listed twice")
        return v

    def urls(self) -> list[str]:
        """Every URL a key must be accepted on: `url`, then each of `paths` on its host."""
        if not self.url:
            return []
        origin = urlsplit(self.url)
        return [self.url, *(f"{origin.scheme}://{origin.netloc}{p}" for p in self.paths)]

    @field_validator("watch_interval")
    @classmethod
    def _watch_interval(cls, v: float) -> float:
        # Under 0.1 s is 10+ calls a second to the operator's API for a time good to 0.1 s anyway.
        if v != 0 and not 0.1 <= v <= 60:
            raise ValueError("0 (off) or between 0.1 and 60 seconds")
        return v

    @model_validator(mode="after")
    def _apply_preset(self) -> ProbeSpec:
        if self.preset == "adjutor":
            if self.url is None:
                self.url = ADJUTOR_PROBE_URL
            if not self.headers:
                self.headers = {"Authorization": "Bearer {key}"}
            if not self.expect_json:
                self.expect_json = {"status": "success"}
        if self.enabled and not self.url:
            raise ValueError('give url, or preset = "adjutor"')
        if self.url and not re.match(r"^https?://", self.url):
            raise ValueError("url must start with http:// or https://")
        if self.enabled and not any("{key}" in v for v in self.headers.values()) and "{key}" not in (self.url or ""):
            raise ValueError('no header or url uses {key}; e.g. headers = { Authorization = "Bearer {key}" }')
        if self.url and "{key}" in self.url:
            raise ValueError("the key must not go in the url (it would reach access logs); put {key} in a header")
        return self


class ScheduleSpec(_Strict):
    job: Literal["sync", "age-check"] = Field(
        description="sync: copy the primary to drifted backends; age-check: key-age warnings"
    )
    cron: str | None = Field(default=None, max_length=200, description="a crontab expression, e.g. */15 * * * *")
    every: int | None = Field(
        default=None, ge=1, le=366 * 86400, description="seconds between runs, instead of cron (e.g. 30)"
    )
    notify: SecretRef | None = Field(default=None, description="webhook URL (e.g. Slack) for warnings, by env or file")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        from apscheduler.triggers.cron import CronTrigger

        if v is None:
            return v
        try:
            CronTrigger.from_crontab(v)
        except ValueError as exc:
            raise ValueError(f"not a crontab expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every is None):
            raise ValueError('give exactly one of cron = "..." or every = SECONDS')
        return self

    @property
    def when(self) -> str:
        """The timing as an operator reads it: the cron expression, or "every 30s"."""
        return self.cron if self.cron is not None else f"every {self.every}s"


class RotationSpec(_Strict):
    deadline: float = Field(default=120.0, gt=0, le=3600, description="seconds for the whole fan-out and signals")
    max_threads: int = Field(
        default=64, ge=1, le=1024, description="threads for blocking SDK calls (at least twice the targets are used)"
    )
    drain: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="alternating: seconds between every consumer confirming the promoted key and the ask to "
        "reset the retired app, so that calls already in flight on the retired key (sent before the consumer "
        "reloaded, checked by the API up to one call later) end before that key dies; at least your API calls' "
        "duration",
    )


class _PlanFile(_Strict):
    secret: SecretSpec
    probe: ProbeSpec = Field(default_factory=lambda: ProbeSpec(enabled=False))
    rotation: RotationSpec = Field(default_factory=RotationSpec)
    backends: list[dict[str, Any]] = Field(min_length=1)
    consumers: list[dict[str, Any]] = Field(default_factory=list)
    schedules: list[ScheduleSpec] = Field(default_factory=list)
    notify: list[dict[str, Any]] = Field(default_factory=list)
    proxy: ProxySpec | None = None  # `rotator proxy PLAN` (rotator.proxy)


@dataclass
class Plan:
    path: Path
    secret: SecretSpec
    probe: ProbeSpec
    rotation: RotationSpec
    backends: list[BackendSettings]
    consumers: list[ConsumerSettings]
    schedules: list[ScheduleSpec] = field(default_factory=list)
    notify: list[NotifierSettings] = field(default_factory=list)  # rotator.notify: after a run
    proxy: ProxySpec | None = None  # the [proxy] section: `rotator proxy PLAN`

    @property
    def name(self) -> str:
        return self.secret.name

    @property
    def primary(self) -> BackendSettings:
        return next(b for b in self.backends if b.primary)

    @property
    def others(self) -> list[BackendSettings]:
        return [b for b in self.backends if not b.primary]

    @property
    def alternating(self) -> bool:
        return self.secret.strategy is Strategy.ALTERNATING

    def placeholders(self) -> list[tuple[str, str]]:
        """(where, what it is) for each setting still holding PLACEHOLDER (a plan `rotator init` wrote)."""
        found: list[tuple[str, str]] = []
        entries: list[tuple[str, BaseModel]] = [("secret", self.secret)]
        entries += [(f"backends[{i}]", b) for i, b in enumerate(self.backends)]
        entries += [(f"consumers[{i}]", c) for i, c in enumerate(self.consumers)]
        for where, model in entries:
            for name, info in type(model).model_fields.items():
                value = getattr(model, name)
                values = value if isinstance(value, list) else [value]
                if any(PLACEHOLDER in str(v).upper() for v in values):
                    found.append((f"{where}.{name}", info.description or name))
        return found

    def hints(self) -> list[str]:
        """One line each of advice `rotator check` prints for a valid plan (not problems)."""
        left = self.placeholders()
        if left:
            return [
                f"{self.path}: hint: {where} is a placeholder ({PLACEHOLDER}): set it to {what}" for where, what in left
            ]
        if self.alternating:
            return []
        return [
            f"{self.path}: hint: this plan resets the key in use, so consumers fail until they have the new one; "
            '[secret] strategy = "alternating" with apps = ["APP", "OTHER-APP"] (a second Adjutor app with the '
            "same API services, its key kept as a standby on the primary) makes a reset fail no call"
        ]


def _loc(parts: tuple[int | str, ...] | list[int | str]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "(top)"


_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown key",
}


def _problems(
    prefix: str, err: ValidationError, base: tuple[int | str, ...] = (), model: type[BaseModel] | None = None
) -> list[str]:
    out = []
    for e in err.errors(include_url=False, include_input=False):
        loc = [p for p in e["loc"] if not (isinstance(p, str) and ("function-" in p or p.startswith("[")))]
        msg = _MESSAGES.get(e["type"], e["msg"])
        msg = msg.removeprefix("Value error, ")
        if e["type"] == "extra_forbidden" and model is not None and (near := _did_you_mean(model, loc)):
            msg += f" (did you mean `{near}`?)"
        out.append(f"{prefix}: {_loc(base + tuple(loc))}: {msg}")
    return out


def _did_you_mean(model: type[BaseModel], loc: list[int | str]) -> str | None:
    """The closest key the model at `loc` knows, for a mistyped one (`check_old_keys`)."""
    import difflib

    if not loc:
        return None
    *path, key = loc
    for part in path:
        if isinstance(part, int):
            continue
        field_ = model.model_fields.get(str(part))
        sub = getattr(field_, "annotation", None) if field_ is not None else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return None
        model = sub
    names = [f.alias or n for n, f in model.model_fields.items()]
    near = difflib.get_close_matches(str(key), names, n=1, cutoff=0.75)
    return near[0] if near else None


# -- keys too deep to parse -------------------------------------------------------
# tomllib checks every prefix of a dotted key against what is defined so far, so a key
# of n parts costs n**2 (20,000 parts, 40 KB: 40 s).  Such a key is found before
# parsing by one RE2 automaton (a DFA: linear time whatever the text): the text as a
# run of TOML tokens (strings and comments whole, so their dots do not count, or any
# other character) followed by more than MAX_KEY_PARTS key parts joined by dots.
_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_Q = r"""(?:[^"\\]|\\[\s\S])"""
_TOKEN = (
    rf'"""(?:{_Q}|"{_Q}|""{_Q})*"""(?:""|")?'  # a closing """ may follow two quotes of the content
    r"|'''(?:[^']|'[^']|''[^'])*'''(?:''|')?"
    r'|"(?:[^"\\\n]|\\.)*"'
    r"|'[^'\n]*'"
    r"|#[^\n]*(?:\n|\z)"
    r"""|[^"'#]"""
)


def _deep_key_set() -> Any:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 64 << 20
    found = re2.Set.MatchSet(options)  # anchored at the start; tells only whether it matches
    found.Add(rf"(?:{_TOKEN})*?{_PART}(?:[ \t]*\.[ \t]*{_PART}){{{MAX_KEY_PARTS}}}")
    found.Compile()
    return found


_DEEP_KEY = _deep_key_set()


def _too_deep(text: str) -> int | None:
    """The line of a dotted key with more than MAX_KEY_PARTS parts, or None.

    Measured: 0.1 ms for a 1 KB plan, 2 ms for 1.3 MB of strings full of dots; the
    40 KB key of 20,000 parts 0.5 ms.  The line is found by halving the text (about 20
    more passes, only for a plan that is refused)."""
    data = text.encode()
    if not _DEEP_KEY.Match(data):
        return None
    lo, hi = 0, len(data)
    while lo < hi:
        mid = (lo + hi) // 2
        if _DEEP_KEY.Match(data[:mid]):
            hi = mid
        else:
            lo = mid + 1
    return data.count(b"\n", 0, lo) + 1


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
    if (line := _too_deep(text)) is not None:
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
    label = str(path)
    problems: list[str] = []
    try:
        pf = _PlanFile.model_validate(data)
    except ValidationError as exc:
        problems = _problems(label, exc, model=_PlanFile)
        # Still check the targets we can, so one run shows every problem.
        pf = None
    backends: list[BackendSettings] = []
    consumers: list[ConsumerSettings] = []
    notifiers: list[NotifierSettings] = []
    for section, getter, out in (
        ("backends", backend_class, backends),
        ("consumers", consumer_class, consumers),
        ("notify", notifier_class, notifiers),
    ):
        entries = data.get(section, [])
        if not isinstance(entries, list):
            continue
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
                out.append(cls.Settings.model_validate(entry))  # type: ignore[arg-type]
            except ValidationError as exc:
                problems.extend(_problems(label, exc, (section, i), cls.Settings))
    # Checks across targets read the entries as written, so they are reported in the
    # same pass as each target's own problems (not only once those are fixed).
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
    # One namespace for both kinds: arm checks, results, the journal and reads_from
    # all name a target, so a consumer named like a backend would hide it.
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
