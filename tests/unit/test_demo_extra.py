"""Unit tier: ``regaccess demo`` without the ``demo`` extra, and the operator without it.

Each case runs the command line in a fresh interpreter whose imports of the
blocked libraries fail, as they do after a plain ``pip install regaccess``
(the operator's image): the demo says in one line which extra to install and
exits 2, with no traceback; every other module of the operator still imports.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60

BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
for name in [m for m in sys.modules if m.split(".")[0] in BLOCKED]:
    del sys.modules[name]
sys.meta_path.insert(0, Blocker())
"""


def _python(blocked: set[str], code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER.format(blocked=sorted(blocked)) + code], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)


@pytest.mark.parametrize("blocked", ["moto", "flask", "rich", "cryptography"])
def test_demo_without_the_extra_says_what_to_install(blocked):
    done = _python({blocked}, "from controller.__main__ import main\nraise SystemExit(main(['demo']))\n")

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line == (f"regaccess demo needs the 'demo' extra ({blocked} is not installed): "
                    "pip install 'regaccess[demo]'")


def test_the_operator_imports_without_the_demo_libraries():
    code = """
import pkgutil, importlib, controller
names = [m.name for m in pkgutil.walk_packages(controller.__path__, "controller.")
         if not m.name.startswith("controller.demo.")]
for name in names:
    importlib.import_module(name)
from controller.__main__ import main
assert main(["crds"]) == 0
print(len(names), "modules")
"""
    done = _python({"moto", "flask", "werkzeug", "rich", "cryptography"}, code)

    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-2]) > 10  # it did walk the package
