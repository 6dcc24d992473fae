"""Plans for tests, the demo and benchmarks, built as data and written as TOML.

A scenario says what it is about (``envfile("store", path, primary=True)``,
``webhook("api", url, hmac_env="HOOK_KEY")``) instead of pasting a plan and
formatting holes into it; the defaults are the common case (the variable
``ADJUTOR_API_KEY``, Adjutor's probe preset).  `to_toml` writes the layout a
person writes (one ``[[backends]]`` table each, secrets as ``{ env = "NAME" }``),
so a kept demo plan reads like config/adjutor.example.toml.

Every builder returns a plain dict: add or override any key a plugin takes
(``envfile(..., create=True)``) or change it afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

VARIABLE = "ADJUTOR_API_KEY"

Table = dict[str, Any]


def env(name: str) -> Table:
    """A secret setting named by environment variable: ``{ env = "NAME" }``."""
    return {"env": name}


def adjutor_probe(url: str, **extra: Any) -> Table:
    """Adjutor's probe preset against `url` (the stand-in's ``models_url``)."""
    return {"preset": "adjutor", "url": url, **extra}


def envfile(name: str, path: str | Path, *, variable: str = VARIABLE, primary: bool = False, **extra: Any) -> Table:
    return _target(name, "envfile", primary, path=str(path), variable=variable, **extra)


def vault(name: str, url: str, path: str, *, token_env: str, primary: bool = False, **extra: Any) -> Table:
    """A KV v2 secret at ``secret/<path>`` (field ``api_key``, the plugin's default) by token."""
    return _target(name, "vault", primary, url=url, path=path, token=env(token_env), **extra)


def aws(name: str, secret_id: str, *, primary: bool = False, **extra: Any) -> Table:
    return _target(name, "aws", primary, secret_id=secret_id, **extra)


def webhook(name: str, url: str, *, hmac_env: str, **extra: Any) -> Table:
    return {"name": name, "type": "webhook", "url": url, "hmac_key": env(hmac_env), **extra}


def signal(name: str, *, signal: str = "HUP", **extra: Any) -> Table:
    """A signal consumer; give ``pidfile=`` or ``pid=``."""
    return {"name": name, "type": "signal", "signal": signal, **extra}


def command(name: str, argv: Sequence[str | Path], **extra: Any) -> Table:
    return {"name": name, "type": "command", "argv": [str(a) for a in argv], **extra}


def plan(
    name: str,
    *,
    backends: Iterable[Table],
    consumers: Iterable[Table] = (),
    probe: Table | None = None,
    rotation: Table | None = None,
    schedules: Iterable[Table] = (),
    **secret: Any,
) -> Table:
    """A whole plan; `secret` adds keys of ``[secret]`` (``max_age_days=90``)."""
    data: Table = {"secret": {"name": name, **secret}}
    if probe is not None:
        data["probe"] = probe
    if rotation is not None:
        data["rotation"] = rotation
    data["backends"] = list(backends)
    if consumers := list(consumers):
        data["consumers"] = consumers
    if schedules := list(schedules):
        data["schedules"] = schedules
    return data


def write_plan(path: str | Path, data: Mapping[str, Any], *, header: str = "") -> Path:
    """Write `data` as TOML to `path` (a header becomes ``#`` comment lines); returns the path."""
    target = Path(path)
    comments = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    target.write_text(comments + to_toml(data))
    return target


def to_toml(data: Mapping[str, Any]) -> str:
    """`data` as TOML: scalars first, then tables, then arrays of tables; a dict
    inside a table is written inline (``token = { env = "T" }``)."""
    out = [f"{k} = {_value(v)}" for k, v in data.items() if not _is_table(v) and not _is_tables(v)]
    for key, value in data.items():
        if _is_table(value):
            out += ["", f"[{_key(key)}]", *(f"{_key(k)} = {_value(v)}" for k, v in value.items())]
        elif _is_tables(value):
            for table in value:
                out += ["", f"[[{_key(key)}]]", *(f"{_key(k)} = {_value(v)}" for k, v in table.items())]
    return "\n".join(out).lstrip("\n") + "\n"


def _target(name: str, type_: str, primary: bool, **settings: Any) -> Table:
    return {"name": name, "type": type_, **({"primary": True} if primary else {}), **settings}


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no TOML form a plan can use")
        return repr(value)
    if isinstance(value, str | Path):
        return _string(str(value))
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    return (
        '"'
        + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c) for c in text)
        + '"'
    )
