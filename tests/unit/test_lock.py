"""Unit tier: the tests run on the locked dependencies, and the locks are whole and current.

``requirements/*.lock`` (written by ``scripts/lock``, installed by ``scripts/setup``) are what a
fresh clone installs, so its tests pass on any day, whatever the index released since. Proved
here: the interpreter running these tests has exactly the test lock installed (nothing more,
nothing newer; pip, the installer, aside); the three locks agree with each other; every range
in pyproject.toml is met by the lock (a pyproject edit without ``scripts/lock`` fails here); every
pin has hashes; and the image's lock holds no demo-only library.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
# Not in any lock: the project itself (installed editable on top) and the installer.
NOT_LOCKED = {"regaccess", "pip"}
DEMO_ONLY = {"moto", "rich", "cryptography", "flask", "flask-cors", "werkzeug"}
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;\\]+)\s*(?:;\s*(?P<marker>[^\\]+?))?\s*\\?$")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str | None
    hashes: tuple[str, ...]

    def applies(self, environment: dict[str, str] | None = None) -> bool:
        return self.marker is None or Marker(self.marker).evaluate(environment)


def read_lock(name: str) -> list[Pin]:
    """The pins of one lock: ``name==version [; marker]`` lines and their ``--hash`` lines."""
    pins: list[Pin] = []
    current: dict | None = None
    for line in (LOCKS / f"{name}.lock").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            found = PIN.match(line)
            assert found, f"{name}.lock: not a pinned requirement: {line!r}"
            if current:
                pins.append(Pin(**current))
            current = {"name": canonicalize_name(found["name"]), "version": found["version"],
                       "marker": found["marker"], "hashes": ()}
        elif "--hash=" in line:
            assert current, f"{name}.lock: a hash before any pin"
            current["hashes"] += (line.split("--hash=", 1)[1].rstrip(" \\"),)
    if current:
        pins.append(Pin(**current))
    return pins


def applying(pins: list[Pin]) -> dict[str, str]:
    return {pin.name: pin.version for pin in pins if pin.applies()}


def test_what_is_installed_is_the_test_lock():
    """`pip freeze` of this venv, in effect: every distribution at its locked version, no other."""
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()
                 if d.metadata["Name"]}
    installed = {name: version for name, version in installed.items() if name not in NOT_LOCKED}
    locked = applying(read_lock("test"))
    hint = f"{sys.prefix} is not the locked venv: run scripts/setup (or scripts/test, which calls it)"
    assert {n: v for n, v in installed.items() if locked.get(n) != v} == {}, hint
    assert sorted(set(locked) - set(installed)) == [], hint


@pytest.mark.parametrize("name", ["test", "demo", "runtime"])
def test_every_pin_has_hashes(name):
    pins = read_lock(name)
    assert pins, f"{name}.lock is empty"
    assert [pin.name for pin in pins if not pin.hashes] == []
    assert all(h.startswith("sha256:") for pin in pins for h in pin.hashes)


@pytest.mark.parametrize("narrower, wider", [("runtime", "demo"), ("demo", "test")])
def test_the_locks_are_one_resolution(narrower, wider):
    """runtime ⊂ demo ⊂ test, each package at the same version with the same hashes."""
    wide = {(pin.name, pin.marker): pin for pin in read_lock(wider)}
    for pin in read_lock(narrower):
        other = wide.get((pin.name, pin.marker))
        assert other is not None, f"{pin.name} is in {narrower}.lock, not in {wider}.lock"
        assert (other.version, set(other.hashes)) == (pin.version, set(pin.hashes)), pin.name


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    texts = list(project["project"]["dependencies"]) + list(project["build-system"]["requires"])
    for extra in extras:
        texts += project["project"]["optional-dependencies"][extra]
    return [Requirement(text) for text in texts if canonicalize_name(Requirement(text).name) != "regaccess"]


@pytest.mark.parametrize("name, extras", [("runtime", ()), ("demo", ("demo",)), ("test", ("demo", "test"))])
def test_the_lock_meets_pyproject(name, extras):
    """A range changed in pyproject.toml without `scripts/lock` fails here, not on a user's machine."""
    locked = applying(read_lock(name))
    for requirement in _requirements(extras):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = locked.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement} is not in {name}.lock"
        assert requirement.specifier.contains(version, prereleases=True), \
            f"{name}.lock has {requirement.name}=={version}, pyproject.toml asks {requirement}: run scripts/lock"


def test_the_image_lock_holds_no_demo_library():
    """The Dockerfile installs runtime.lock: the operator's image goes without the demo's stack."""
    assert set(applying(read_lock("runtime"))) & DEMO_ONLY == set()
    assert {"kopf", "boto3", "botocore"} <= set(applying(read_lock("runtime")))


def test_the_lock_parser_reads_markers_and_hashes(tmp_path, monkeypatch):
    """The parser above is what the other tests stand on: check it on a lock with a fork."""
    (tmp_path / "x.lock").write_text(
        "# header\nnetworkx==3.6.1 ; python_full_version < '3.12' \\\n    --hash=sha256:aa\n"
        "networkx==3.7 ; python_full_version >= '3.12' \\\n    --hash=sha256:bb \\\n    --hash=sha256:cc\n"
        "    # via moto\nsix==1.17.0 \\\n    --hash=sha256:dd\n")
    monkeypatch.setattr(sys.modules[__name__], "LOCKS", tmp_path)
    pins = read_lock("x")
    assert [(p.name, p.version, len(p.hashes)) for p in pins] == [
        ("networkx", "3.6.1", 1), ("networkx", "3.7", 2), ("six", "1.17.0", 1)]
    assert applying(pins)["networkx"] == ("3.6.1" if sys.version_info < (3, 12) else "3.7")
