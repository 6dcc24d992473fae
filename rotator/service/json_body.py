"""What a request body may be, checked before it is parsed: flat JSON objects whose fields
have the types the API reads (`routes._json_body` refuses anything else in one line)."""

from __future__ import annotations

MAX_JSON_DEPTH = 16  # nesting a request body may have: the API's bodies are flat objects
# The fields the API reads, by JSON type: a value of another type is refused (422), never dropped.
FIELD_TYPES: dict[str, type] = {
    "key": str,
    "reason": str,
    "operator": str,
    "flow": str,
    "choice": str,
    "check": bool,
    "accept_unprobed": bool,
}
JSON_TYPE_NAME = {str: "a string", bool: "true or false"}


def json_depth(raw: bytes) -> int:
    """How deeply `raw` nests arrays and objects (strings skipped), without parsing it:
    a 20,000-deep body must be refused before `json.loads` recurses into it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


__all__ = ["FIELD_TYPES", "JSON_TYPE_NAME", "MAX_JSON_DEPTH", "json_depth", "json_type"]
