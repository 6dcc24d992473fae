"""The plan reference and the plan's JSON Schema, from the plan models and the plugins' settings."""

from __future__ import annotations

import enum
import html
import json
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from rotator import registry
from rotator.plan import ProbeSpec, RotationSpec, ScheduleSpec, SecretSpec
from rotator.plugin import SecretRef

SCHEMA_ID = "https://rotator.invalid/plan.schema.json"

# (table, model, what the table is for) in the order a plan is written
SECTIONS: list[tuple[str, type[BaseModel], str]] = [
    ("[secret]", SecretSpec, "what is rotated, and how (required)"),
    ("[probe]", ProbeSpec, "the request a new key must pass before anything is written"),
    ("[rotation]", RotationSpec, "limits of one rotation"),
    ("[[schedules]]", ScheduleSpec, "jobs `rotator serve` runs (exactly one of `cron` and `every`)"),
]


def _plugins() -> dict[str, dict[str, type[BaseModel]]]:
    """Each plugin kind's installed types and their settings models, sorted by name."""
    kinds: dict[str, dict[str, type[BaseModel]]] = {"backends": {}, "consumers": {}, "notify": {}}
    for name in sorted(registry.backend_points()):
        kinds["backends"][name] = registry.backend_class(name).Settings
    for name in sorted(registry.consumer_points()):
        kinds["consumers"][name] = registry.consumer_class(name).Settings
    for name in sorted(registry.notifier_points()):
        kinds["notify"][name] = registry.notifier_class(name).Settings
    return kinds


def _name(tp: Any) -> str:
    """A type as a plan's author reads it: `str`, `"GET" | "POST"`, `list[int]`, `{ env | file }`."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _name(args[0])
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (Union, UnionType):
        return " | ".join(_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_name(a) for a in args)}]"
    if tp is type(None):
        return "none"
    if tp is SecretRef:
        return "{ env | file }"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(json.dumps(m.value) for m in tp)
    if tp is Path:
        return "path"
    return getattr(tp, "__name__", str(tp))


def _type(info: FieldInfo) -> str:
    return _name(info.annotation)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if value is PydanticUndefined or value is None:
        return "none"
    if hasattr(value, "value"):  # an enum
        value = value.value
    text = json.dumps(value, default=str)
    if "|" in text:  # a table cell cannot hold `|` inside a code span: HTML, the bar as an entity
        return "<code>" + html.escape(text).replace("|", "&#124;") + "</code>"
    return f"`{text}`"


def _cell(text: str) -> str:
    """Table-cell text: `|` escaped, `<field>` shown as written rather than taken for HTML."""
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def field_table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    """A Markdown table of a model's fields: key, type, default, meaning."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        rows.append(f"| `{name}` | {_cell(_type(info))} | {_default(info)} | {_cell(info.description or '')} |")
    return rows


def plan_reference_markdown() -> str:
    """Every table of a plan and every setting of every installed plugin, with its default."""
    out: list[str] = []
    for table, model, what in SECTIONS:
        out += [f"## `{table}`", "", f"{what[0].upper()}{what[1:]}.", "", *field_table(model), ""]
    common = ("name", "type", "timeout", "retries", "primary", "confirm_timeout", "reads_from")
    titles = {"backends": "[[backends]]", "consumers": "[[consumers]]", "notify": "[[notify]]"}
    for kind, types in _plugins().items():
        out += [f"## `{titles[kind]}`", ""]
        if types:
            first = next(iter(types.values()))
            base = first.__mro__[1] if kind != "notify" else None
            if base is not None and issubclass(base, BaseModel):
                shared = [n for n in common if n in base.model_fields]
                out += [
                    "Keys every entry has:",
                    "",
                    *field_table(base, skip=tuple(n for n in base.model_fields if n not in shared)),
                    "",
                ]
        for type_name, model in types.items():
            skip = common if kind != "notify" else ("type",)
            out += [f'### `type = "{type_name}"`', "", *field_table(model, skip=skip), ""]
    return "\n".join(out).rstrip() + "\n"


def _entry_schema(type_name: str, model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["properties"]["type"] = {"const": type_name, "title": "Type"}
    schema.setdefault("required", [])
    if "type" not in schema["required"]:
        schema["required"].append("type")
    schema["title"] = f"{type_name} ({model.__name__})"
    return schema


def plan_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for a plan file, for editors that validate TOML as it is typed."""
    defs: dict[str, Any] = {}

    def ref(model: type[BaseModel], key: str) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[key] = schema
        return {"$ref": f"#/$defs/{key}"}

    def one_of(types: dict[str, type[BaseModel]], prefix: str) -> dict[str, Any]:
        options = []
        for name, model in types.items():
            schema = _entry_schema(name, model)
            defs.update(schema.pop("$defs", {}))
            key = f"{prefix}-{name}"
            defs[key] = schema
            options.append({"$ref": f"#/$defs/{key}"})
        return {"type": "array", "items": {"oneOf": options}}

    plugins = _plugins()
    properties = {
        "secret": ref(SecretSpec, "secret"),
        "probe": ref(ProbeSpec, "probe"),
        "rotation": ref(RotationSpec, "rotation"),
        "backends": {**one_of(plugins["backends"], "backend"), "minItems": 1},
        "consumers": one_of(plugins["consumers"], "consumer"),
        "schedules": {"type": "array", "items": ref(ScheduleSpec, "schedule")},
        "notify": one_of(plugins["notify"], "notify"),
    }
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "rotator plan",
        "description": "One TOML file per secret: what is rotated, the probe, the backends and the consumers.",
        "type": "object",
        "additionalProperties": False,
        "required": ["secret", "backends"],
        "properties": properties,
        "$defs": defs,
    }
    return json.loads(json.dumps(schema, default=str))


def plan_schema_text() -> str:
    return json.dumps(plan_schema(), indent=2, sort_keys=True) + "\n"


def alternating_settings_markdown() -> str:
    """Where each backend that can hold a standby keeps it: its `standby_*` and `slots_*` settings."""
    rows = ["| backend | setting | meaning (and default) |", "|---|---|---|"]
    for type_name, model in _plugins()["backends"].items():
        for name, info in model.model_fields.items():
            if name.startswith(("standby_", "slots_")):
                rows.append(f"| `{type_name}` | `{name}` | {_cell(info.description or '')} |")
    return "\n".join(rows) + "\n"
