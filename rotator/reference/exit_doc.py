"""The exit-code table, from the exit-code enum and the comment beside each code."""

from __future__ import annotations

from rotator.exitcodes import Exit, meanings


def exit_codes_rows() -> list[tuple[int, str, str]]:
    """(code, name, meaning) for every exit code, in order."""
    found = meanings()
    return [(int(code), code.name.lower().replace("_", "-"), found.get(code, "")) for code in Exit]


def exit_codes_markdown() -> str:
    rows = ["| code | name | meaning |", "|---|---|---|"]
    for code, name, text in exit_codes_rows():
        cell = text.replace("|", "\\|")
        rows.append(f"| {code} | `{name}` | {cell} |")
    return "\n".join(rows) + "\n"


def exit_codes_text() -> str:
    """For `rotator help exit-codes`: one code a line."""
    return "\n".join(f"{code:>3}  {name:<18} {text}" for code, name, text in exit_codes_rows()) + "\n"
