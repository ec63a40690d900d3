"""The e2e tier's control plane: re-exported from ``controller.demo.controlplane``.

The logic lives in the package so that ``regaccess demo`` starts the very same
throwaway control plane the tests use; this module keeps the tests' import path.
It needs the ``demo`` extra (cryptography), which the ``test`` extra pulls in.
"""

from __future__ import annotations

from controller.demo.controlplane import (  # noqa: F401 - re-exports
    ADMIN_TOKEN,
    SA_TOKEN,
    SA_USER,
    ControlPlane,
    free_port,
    kubeconfig_text,
    start,
)
