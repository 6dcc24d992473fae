"""Validation errors as one line each, ``FILE: key.path: what is wrong``, with a guess for a mistyped key."""

from __future__ import annotations

import difflib

from pydantic import BaseModel, ValidationError


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


def error_lines(
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
