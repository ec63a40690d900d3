"""Unit tier: the operator's package and image carry no demo-only library.

The demo's AWS stand-in (moto's server and its web stack), terminal view (rich)
and control-plane key (cryptography) come with the ``demo`` extra only. Proved on
the built wheel, built from exactly what the Dockerfile copies: its
``Requires-Dist`` lines name them only under ``extra == "demo"``; the image's
``pip install`` asks for no extra; and the unconditional requirements, followed
through the installed distributions, never reach them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DEMO_ONLY = {"moto", "rich", "cryptography", "flask", "flask-cors", "werkzeug"}
DEMO_EXTRA = {"moto", "rich", "cryptography"}
BUILD_TIMEOUT = 120


def _copied_sources() -> list[str]:
    """The paths the Dockerfile copies into the image's build directory."""
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            sources += line.split()[1:-1]
    return sources


@pytest.fixture(scope="module")
def wheel_requirements(tmp_path_factory) -> list[Requirement]:
    source = tmp_path_factory.mktemp("image-context")
    for name in _copied_sources():
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, source / name)
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: setuptools comes with the test extra, so this needs no index.
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(source)], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert done.returncode == 0, ("pip wheel failed (setuptools>=77 comes with the test extra: "
                                  "pip install -e '.[test]')\n" + done.stdout[-3000:] + done.stderr[-3000:])
    [wheel] = out.glob("regaccess-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(name).decode()
    return [Requirement(value) for value in re.findall(r"^Requires-Dist: (.+)$", text, flags=re.MULTILINE)]


def _extras_of(requirement: Requirement) -> set[str]:
    """The extras under which a requirement applies (empty: always)."""
    if requirement.marker is None:
        return set()
    return {extra for extra in ("demo", "test") if requirement.marker.evaluate({"extra": extra})
            and not requirement.marker.evaluate({"extra": ""})}


def test_demo_libraries_are_requirements_of_the_demo_extra_only(wheel_requirements):
    named = {canonicalize_name(r.name): r for r in wheel_requirements}
    assert DEMO_EXTRA <= set(named), f"the wheel does not list {DEMO_EXTRA - set(named)} at all"
    assert "server" in named["moto"].extras
    for requirement in wheel_requirements:
        if canonicalize_name(requirement.name) in DEMO_ONLY:
            assert _extras_of(requirement) == {"demo"}, f"{requirement} is not confined to the demo extra"


def test_the_test_extra_pulls_in_the_demo_extra(wheel_requirements):
    own = [r for r in wheel_requirements if canonicalize_name(r.name) == "regaccess"]
    assert [(r.extras, _extras_of(r)) for r in own] == [({"demo"}, {"test"})]


def test_the_image_installs_the_runtime_lock_and_no_extra():
    """The image's installs: the runtime lock (checked free of demo libraries in test_lock.py)
    and the package itself without dependencies; never an extra, never another lock."""
    installs = [line for line in DOCKERFILE.read_text().splitlines() if "pip install" in line]
    assert installs, "the Dockerfile installs nothing?"
    for line in installs:
        assert "[" not in line, f"the image installs an extra: {line}"
        assert "--no-deps" in line, f"the image resolves dependencies on the day: {line}"
        assert re.findall(r"-r (\S+)", line) in ([], ["requirements/runtime.lock"]), line
    assert any("--require-hashes" in line and "-r requirements/runtime.lock" in line for line in installs)


def test_runtime_requirements_never_reach_a_demo_library(wheel_requirements):
    """The closure of the unconditional requirements over the installed distributions."""
    seen: set[str] = set()
    todo = [r for r in wheel_requirements if r.marker is None or r.marker.evaluate({"extra": ""})]
    assert todo, "the wheel has no runtime requirement at all?"
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        assert name not in DEMO_ONLY, f"{name} is reached from the runtime requirements"
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # an optional platform dependency not installed here
        for text in requires:
            dependency = Requirement(text)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dependency)
    assert {"kopf", "boto3"} <= seen
