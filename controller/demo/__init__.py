"""``regaccess demo``: options, the check for the ``demo`` extra, and the entry point.

Called by ``controller.__main__`` (the ``demo`` subcommand). The demo's own
libraries — an AWS stand-in (moto's server and its web stack), a terminal view
(rich) and, for the throwaway control plane, a service-account key
(cryptography) — are not dependencies of the operator: they come with
``pip install 'regaccess[demo]'``. This module imports none of them, so
``regaccess run`` and the operator's image never need them; ``run`` checks they
are there before it imports the demo itself (``controller.demo.story``, its view
``controller.demo.view`` and ``controller.demo.controlplane``).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_EXAMPLES = REPO_ROOT / "examples"
EXTRA = "demo"
INSTALL_HINT = f"pip install 'regaccess[{EXTRA}]'"
# The modules the demo imports from its extra: moto's server pulls in its web stack (flask, werkzeug).
EXTRA_MODULES = ("moto.server", "rich.live", "cryptography.hazmat.primitives.asymmetric.rsa")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class Options:
    aws: str = "moto"                   # moto | real
    control_plane: str = "auto"         # auto | local | current
    examples: Path = DEFAULT_EXAMPLES
    timeout: float = 180.0
    live: bool | None = None            # None: when stdout is a terminal


def missing_extra() -> str | None:
    """The top-level name of the first demo library that cannot be imported, else None."""
    for module in EXTRA_MODULES:
        try:
            with warnings.catch_warnings():
                # moto warns "install moto[server]" on its way to the ImportError this reports.
                warnings.simplefilter("ignore")
                importlib.import_module(module)
        except ImportError as error:
            return (error.name or module).split(".")[0]
    return None


def run(options: Options) -> int:
    """Check the usage and the extra, then run the demo; returns the exit code."""
    if options.aws == "real" and not os.environ.get("AWS_REGION") and not os.environ.get("AWS_DEFAULT_REGION"):
        print("regaccess demo --aws real: set AWS_REGION (the demo creates and removes an IAM role and a task "
              "definition family named regaccess-demo-<random> there)", file=sys.stderr)
        return EXIT_USAGE
    missing = missing_extra()
    if missing is not None:
        print(f"regaccess demo needs the {EXTRA!r} extra ({missing} is not installed): {INSTALL_HINT}",
              file=sys.stderr)
        return EXIT_USAGE
    from controller.demo import story

    return story.run(options)
