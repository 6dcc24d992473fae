"""A backend and a notifier from another package are found through their entry points and used in a plan."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator import registry
from rotator.notify import NotifyStatus, notify_all
from rotator.plan import PlanError, load_plan
from rotator.plugin import PluginContext
from rotator.secret import Secret
from rotator.testing import plans

HERE = Path(__file__).parent
PACKAGE = "rotator_memory_demo"
DIST = "rotator-memory-demo"


def _dist_info(target: Path) -> None:
    """What an installer leaves behind: the package plus a .dist-info with entry_points.txt."""
    project = tomllib.loads((HERE / "pyproject.toml").read_text())["project"]
    shutil.copytree(HERE / PACKAGE, target / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    info = target / f"{PACKAGE}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = []
    for group, points in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {value}" for name, value in points.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def on_path(tmp_path: Path) -> Iterator[Path]:
    """A directory put on sys.path (and taken off again, with the discovery caches cleared)."""
    site = tmp_path / "site"
    site.mkdir()
    sys.path.insert(0, str(site))
    registry.clear_cache()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        registry.clear_cache()


def _plan(tmp_path: Path) -> Path:
    mem = {"name": "mem", "type": "memory", "primary": True, "slot": "billing"}
    return plans.write_plan(tmp_path / "plan.toml", plans.plan("adjutor", backends=[mem]))


def _use(plan_path: Path) -> None:
    plan = load_plan(plan_path)
    cls = registry.backend_class(plan.primary.type)
    assert cls.__module__ == PACKAGE
    assert plan.primary.slot == "billing"  # type: ignore[attr-defined]
    info = {(p.kind, p.name): p for p in registry.installed()}[("backend", "memory")]
    assert (info.kind, info.distribution, info.version, info.target) == (
        "backend",
        DIST,
        "0.1.0",
        f"{PACKAGE}:MemoryBackend",
    )

    async def rotate() -> None:
        ctx = PluginContext(max_threads=2)
        backend = cls(plan.primary, ctx)
        try:
            await backend.open()
            assert (await backend.preflight()).ok
            stored = await backend.read()
            written = await backend.write(Secret("sk_test_third"), token="t", expected_version=stored.version)
            assert written.version == "1"
            assert (await backend.read()).secret == Secret("sk_test_third")
        finally:
            await backend.close()
            await ctx.aclose()

    asyncio.run(rotate())


def test_unknown_before_it_is_installed(tmp_path: Path, on_path: Path) -> None:
    with pytest.raises(PlanError, match=r"backends\[0\].type: unknown backend type 'memory'"):
        load_plan(_plan(tmp_path))


def test_plugin_found_through_dist_info_entry_points(tmp_path: Path, on_path: Path) -> None:
    _dist_info(on_path)
    registry.clear_cache()
    _use(_plan(tmp_path))


def test_notifier_found_through_dist_info_entry_points(tmp_path: Path, on_path: Path) -> None:
    _dist_info(on_path)
    registry.clear_cache()
    plan_path = _plan(tmp_path)
    plan_path.write_text(plan_path.read_text() + '\n[[notify]]\ntype = "memory"\nchannel = "ops"\n')
    plan = load_plan(plan_path)
    report = {"id": "r1", "kind": "rotate", "state": "done", "exit_code": 0, "message": "done"}
    (result,) = asyncio.run(notify_all(plan, report))
    assert (result.name, result.status, result.detail) == ("memory", NotifyStatus.SENT, "kept in channel ops")
    assert sys.modules[PACKAGE].SENT == [("ops", "adjutor: rotate done")]


def test_plugin_installed_with_pip(tmp_path: Path, on_path: Path) -> None:
    """A real install (offline: no index, the build backend already present)."""
    build = tmp_path / "src"
    shutil.copytree(HERE, build, ignore=shutil.ignore_patterns("__pycache__", "test_*.py", "*.egg-info", "build"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(on_path),
            str(build),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if proc.returncode != 0:
        generic = ("subprocess-exited-with-error", "metadata-generation-failed")
        errors = [
            line.strip()
            for line in proc.stderr.splitlines()
            if line.strip().startswith("error:") and not line.strip().endswith(generic)
        ]
        pytest.skip(f"pip cannot build a wheel offline here ({errors[0] if errors else 'see pip output'})")
    registry.clear_cache()
    _use(_plan(tmp_path))


def test_rotator_plugins_lists_builtins_and_the_third_party_package(on_path: Path) -> None:
    _dist_info(on_path)
    env = {**os.environ, "PYTHONPATH": str(on_path)}
    r = subprocess.run([sys.executable, "-m", "rotator", "plugins"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    rows = {tuple(line.split()[:3]) for line in r.stdout.splitlines()}
    for kind, name in [("backend", "envfile"), ("backend", "vault"), ("backend", "aws")]:
        assert (kind, name, "rotator") in rows
    for name in ("webhook", "signal", "command"):
        assert ("consumer", name, "rotator") in rows
    for name in ("slack", "teams", "webhook"):
        assert ("notifier", name, "rotator") in rows
    assert ("backend", "memory", DIST) in rows
    assert ("notifier", "memory", DIST) in rows
    assert f"{PACKAGE}:MemoryBackend" in r.stdout
