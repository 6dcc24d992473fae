"""`rotator.__all__` is exactly the public names, each importable (lazily: `import
rotator` stays cheap); and `secret.scrub_data`, the one redaction rule for JSON data."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import quote

import rotator
from rotator.secret import REDACTED, Secret, scrub, scrub_data


def test_all_is_exactly_the_public_names_and_each_resolves() -> None:
    public = {n for n in dir(rotator) if not n.startswith("_")} | set(rotator.__all__)
    public -= {"TYPE_CHECKING", "Any", "annotations"}
    public = {n for n in public if not isinstance(getattr(rotator, n), type(sys))}  # submodules are not API
    assert sorted(rotator.__all__) == sorted(public | {"__version__"})
    for name in rotator.__all__:
        assert getattr(rotator, name) is not None
    assert rotator.PluginError.__module__ == "rotator.errors"


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
