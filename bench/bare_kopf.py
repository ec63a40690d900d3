"""The baseline of ``bench/perf_bench.py``: a bare kopf operator with a trivial handler.

    python -m bench.bare_kopf -n NAMESPACE --metrics-port PORT

Watches the same RegistryCredentials (and indexes the same source Secrets) as
regaccess, on the same control plane, with kopf's usual settings (progress and
diff base in annotations: regaccess keeps the diff base in status, one write per
create fewer; the same finalizer), and a create/resume handler that
makes no AWS call and only writes ``Ready=True``: what kopf itself costs for
these objects (memory per object, CPU per create, idle CPU), so the
benchmark can print regaccess beside it. ``/readyz`` answers 200 once kopf
runs, so the benchmark waits for it the way it waits for regaccess. kopf runs
with the fix regaccess applies to it (``controller/kopfpatches.py``: its
start-up gate costs O(N²) otherwise), so that the baseline is kopf as
regaccess runs it; ``--kopf-as-released`` leaves the fix out. Never part of
the product.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kopf

from controller import kopfpatches
from controller.api.models import GROUP, REGISTRY_CREDENTIAL, VERSION

READY = threading.Event()


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    resource = (GROUP, VERSION, REGISTRY_CREDENTIAL.plural)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.bench.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="kopf.bench.io", key="last-handled-configuration")
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.posting.level = 100
        READY.set()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.index("", "v1", "secrets", registry=registry, id="source_secrets")
    def source_secrets(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): body.get("type")}

    @kopf.on.resume(*resource, registry=registry, id="sync")
    @kopf.on.create(*resource, registry=registry, id="sync")
    def sync(patch: kopf.Patch, meta: kopf.Meta, **_: Any) -> None:
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch.status["conditions"] = [{"type": "Ready", "status": "True", "reason": "Trivial", "message": "trivial handler",
                                       "lastTransitionTime": now, "observedGeneration": meta.get("generation")}]

    @kopf.on.delete(*resource, registry=registry, id="cleanup")
    def cleanup(**_: Any) -> None:
        pass  # a delete handler, as regaccess has: kopf then keeps a finalizer on every object

    return registry


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        ok = READY.is_set()
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"starting")

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--namespace", action="append", required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--kopf-as-released", action="store_true",
                        help="Run kopf without regaccess's fix to its start-up gate (controller/kopfpatches.py).")
    args = parser.parse_args()
    if not args.kopf_as_released and not kopfpatches.apply():
        raise SystemExit("kopf's ToggleSet changed shape: controller/kopfpatches.py does not apply")
    logging.basicConfig(level=logging.WARNING)  # kopf's warnings and errors into the log file
    server = ThreadingHTTPServer(("127.0.0.1", args.metrics_port), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    asyncio.run(kopf.operator(registry=build_registry(), namespaces=args.namespace, standalone=True))


if __name__ == "__main__":
    main()
