"""The window benchmark's tables in benchmarks/README.md, rendered from a results JSON.

The README holds a copy between two markers; `python -m benchmarks.readme_tables`
re-renders it from `results/latest.json`, and tests/test_docs.py checks that the copy
equals the rendering, so no figure is ever copied by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
RESULTS = HERE / "results" / "latest.json"
BEGIN = "<!-- BEGIN window tables: rendered from results/latest.json by `python -m benchmarks.readme_tables` -->"
END = "<!-- END window tables -->"


def render_tables(results: dict[str, Any]) -> str:
    """The tables of one window run (the same text as results/latest.md)."""
    from benchmarks.window.report import render_tables as render

    return render(results)


def current_copy(text: str) -> str:
    """What the README holds between the markers."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip("\n") + "\n"


def rendered(text: str, results: dict[str, Any]) -> str:
    """The README's text with the tables between the markers rendered anew."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n\n" + render_tables(results).strip("\n") + "\n\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    results = json.loads(RESULTS.read_text())
    README.write_text(rendered(README.read_text(), results))
    print(f"{README}: tables rendered from {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
