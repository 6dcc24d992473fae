"""benchmarks/window, the revocation-window benchmark, kept working between release measurements:
its smoke run end to end, its report from the results JSON, and its imports of rotator."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.window.report import render_tables
from tests.timing import scaled

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def test_the_report_of_the_last_measurement_is_rendered_from_its_json_alone() -> None:
    results = json.loads((RESULTS / "latest.json").read_text())
    assert render_tables(results) == (RESULTS / "latest.md").read_text()


def test_the_benchmark_imports_nothing_private_from_rotator_or_its_plugins() -> None:
    private = []
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] in ("rotator", "rotator_plugins") and any(p.startswith("_") for p in parts):
                    private.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert private == []


@pytest.mark.process
def test_the_smoke_run_measures_every_comparison_and_writes_its_report(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.window", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke.json", "smoke.md"]  # never latest.*
    results = json.loads((tmp_path / "smoke.json").read_text())
    assert results["meta"]["mode"] == "smoke" and results["meta"]["latency"]["probe"] == 0.005
    (case,) = results["cases"]
    assert case["case"]["name"] == "headline" and (case["backends"], case["consumers"]) == (3, 10)
    for part in ("rotator", "baseline", "parallel_floor"):
        window = case[part]["window"] if part != "parallel_floor" else case[part]
        assert window["n"] == 1 and window["median"] > 0, part
    # Each comparison is at least the critical path its latencies make.
    assert case["rotator"]["window"]["median"] >= case["critical_path"]["critical_path"]
    assert case["baseline"]["window"]["median"] >= case["critical_path"]["sequential_floor"]
    assert {t["target"] for t in results["targets"]} >= {"window / measured floor <= 1.05 in every case"}
    md = (tmp_path / "smoke.md").read_text()
    assert md == render_tables(results) and md.startswith("**Smoke run**")
