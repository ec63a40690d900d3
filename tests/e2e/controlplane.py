"""The e2e tier's control plane: re-exported from ``controller.devcluster``.

The logic lives in the package so that ``regaccess demo`` starts the very same
throwaway control plane the tests use; this module keeps the tests' import path.
"""

from __future__ import annotations

import urllib3

from controller.devcluster import (  # noqa: F401 - re-exports
    ADMIN_TOKEN,
    SA_TOKEN,
    SA_USER,
    ControlPlane,
    free_port,
    kubeconfig_text,
    start,
)

# The tests' own client (tests/e2e/kube.py) talks to the self-signed API server unverified.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
