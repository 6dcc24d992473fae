"""`import rotator` and `rotator.cli` stay cheap (what `rotator --version` pays for), and
`secret.scrub_data`, the one redaction rule for JSON data."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import quote

from rotator.secret import REDACTED, Secret, scrub, scrub_data


def test_import_rotator_does_not_load_httpx_or_pydantic() -> None:
    code = "import sys, rotator, rotator.cli; print(sorted(m for m in ('httpx', 'pydantic', 'sqlalchemy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_scrub_data_redacts_every_string_keys_included() -> None:
    key = Secret("sk_test_scrubdatakey9876")
    raw = key.reveal()
    data = {
        "detail": f"echoed {raw}",
        raw: [1, 2.5, None, True, {"nested": f"url {quote(raw)}"}],
        "tuple": ("ok", raw),
        "other": object(),
    }
    out = scrub_data(data)
    assert raw not in repr(out) and quote(raw) not in repr(out)
    assert out["detail"] == f"echoed {REDACTED}" and out[REDACTED][:4] == [1, 2.5, None, True]
    assert out["tuple"] == ["ok", REDACTED] and isinstance(out["other"], str)
    assert scrub_data("plain") == scrub("plain") == "plain"
    del key
