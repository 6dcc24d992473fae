"""MkDocs hook: the reference pages' generated parts, from the code at build time.

A page says `<!-- generated: NAME -->` where a table goes; NAME is one of GENERATORS.
Nothing generated is kept by hand in docs/ (the JSON Schema's copy, which editors
fetch as a file, is compared with `rotator schema` by tests/test_docs.py).
"""

from __future__ import annotations

import re
from typing import Any


def _generators() -> dict[str, Any]:
    from rotator.reference.exit_doc import exit_codes_markdown
    from rotator.reference.http_doc import http_api_markdown, http_status_markdown
    from rotator.reference.json_doc import json_shapes_markdown
    from rotator.reference.plan_doc import alternating_settings_markdown, plan_reference_markdown

    return {
        "plan": plan_reference_markdown,
        "exit-codes": exit_codes_markdown,
        "http-api": http_api_markdown,
        "http-status": http_status_markdown,
        "json-shapes": json_shapes_markdown,
        "alternating-settings": alternating_settings_markdown,
    }


MARKER = re.compile(r"<!-- generated: ([a-z-]+) -->")


def on_page_markdown(markdown: str, **_: Any) -> str:
    if "<!-- generated:" not in markdown:
        return markdown
    generators = _generators()

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in generators:
            raise ValueError(f"unknown generated section {name!r} (known: {', '.join(generators)})")
        return str(generators[name]())

    return MARKER.sub(fill, markdown)
