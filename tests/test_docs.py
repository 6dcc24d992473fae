"""The docs site: built with --strict (a broken link or a missing page fails), and its
generated parts equal to what the code says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rotator.reference.plan_doc import plan_schema, plan_schema_text
from tests import forkserver

ROOT = Path(__file__).resolve().parent.parent


def test_the_site_builds_strict(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-q",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in ("reference/cli", "reference/plan", "reference/exit-codes", "reference/http-api"):
        html = (tmp_path / page / "index.html").read_text()
        assert "<table>" in html, page
        assert "<!-- generated:" not in html, page
    cli = (tmp_path / "reference/cli/index.html").read_text()
    assert "--key-from" in cli and "rotator rotate" in cli
    assert "standby_variable" in (tmp_path / "reference/plan/index.html").read_text()
    assert json.loads((tmp_path / "reference/plan.schema.json").read_text()) == plan_schema()


def test_the_published_schema_is_the_one_rotator_prints() -> None:
    published = (ROOT / "docs/reference/plan.schema.json").read_text()
    assert published == plan_schema_text(), "re-run: rotator schema > docs/reference/plan.schema.json"
    printed = subprocess.run(
        [*forkserver.command(), "schema"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert printed == published


def test_the_benchmark_tables_in_benchmarks_readme_are_the_rendering_of_latest_json() -> None:
    from benchmarks.readme_tables import README, RESULTS, current_copy, render_tables

    results = json.loads(RESULTS.read_text())
    assert current_copy(README.read_text()) == render_tables(results), "re-render: python -m benchmarks.readme_tables"
