"""`import rotator` and `rotator.cli` stay cheap (what `rotator --version` pays for),
`rotator check` loads no vendor SDK, and `secret.scrub_data`, the one redaction rule
for JSON data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from rotator.secret import REDACTED, Secret, scrub, scrub_data


def test_import_rotator_does_not_load_httpx_or_pydantic() -> None:
    code = "import sys, rotator, rotator.cli; print(sorted(m for m in ('httpx', 'pydantic', 'sqlalchemy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_check_imports_no_sdk_and_no_structlog() -> None:
    """`rotator check` validates the Settings models only: the SDKs load in `open()` (arm),
    structlog on the first logger.  The example plan has vault, aws, envfile, webhook,
    signal and two notifiers, so each of their plugin modules is imported here."""
    example = Path(__file__).resolve().parent.parent / "config" / "adjutor.example.toml"
    heavy = ["hvac", "requests", "boto3", "botocore", "s3transfer", "lightkube", "structlog"]
    code = (
        "import json, sys\n"
        "from rotator.cli import main\n"
        "try:\n"
        "    main(['check', sys.argv[1]])\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print(json.dumps([code, sorted(sys.modules)]), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(example)], capture_output=True, text=True, check=True)
    exit_code, modules = json.loads(out.stderr.strip().splitlines()[-1])
    assert exit_code == 0, out.stderr
    assert {"rotator_plugins.vault", "rotator_plugins.aws", "rotator_plugins.webhook"} <= set(modules)
    assert sorted({m.split(".")[0] for m in modules} & set(heavy)) == []


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
