"""Command line: ``regaccess run | crds | version`` (also ``python -m controller``).

``run`` starts the operator: logging, metrics/health server, the AWS client
factory, and kopf with the handlers from ``controller.handlers``.
Kubernetes access is kopf's own: in-cluster config, else KUBECONFIG /
~/.kube/config. AWS access is boto3's standard chain (AWS_REGION,
AWS_ENDPOINT_URL, credentials, IRSA).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Sequence

from controller import __version__


def _cmd_crds(args: argparse.Namespace) -> int:
    from controller.api import crdgen

    rendered = crdgen.render_all()
    if args.write:
        out = Path(args.write)
        out.mkdir(parents=True, exist_ok=True)
        for name, text in rendered.items():
            (out / name).write_text(text)
            print(f"wrote {out / name}", file=sys.stderr)
    else:
        sys.stdout.write("---\n".join(rendered.values()))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import kopf

    from kopf._cogs.structs import references as kopf_references  # Insights: not re-exported by kopf

    from controller import handlers, logging as rlogging, metrics
    from controller.api.models import CROSS_ACCOUNT_REPO_ACCESS, GROUP, REGISTRY_CREDENTIAL
    from controller.aws.clients import ClientFactory
    from controller.settings import settings_from_args

    settings = settings_from_args(args)
    rlogging.configure(settings.log_level, settings.log_format)
    log = rlogging.get_logger("regaccess")
    factory = ClientFactory(
        retry_mode=settings.aws_retry_mode,
        max_attempts=settings.aws_max_attempts,
        max_pool_connections=max(10, settings.workers),
        hooks=list(metrics.CLIENT_HOOKS),
    )
    runtime = handlers.Runtime(settings=settings, factory=factory)
    registry = handlers.build_registry(runtime)
    metrics.BUILD_INFO.labels(__version__).set(1)
    metrics.DRIFT_INTERVAL.set(settings.drift_interval)
    if settings.metrics_port:
        metrics.serve(runtime.health, settings.metrics_bind, settings.metrics_port)
    log.info(
        "starting",
        version=__version__,
        namespaces=list(settings.namespaces) or "all",
        cluster_id=settings.cluster_id,
        drift_interval=settings.drift_interval,
        aws_region=factory.default_region,
        aws_endpoint=os.environ.get("AWS_ENDPOINT_URL") or "default",
    )

    async def heartbeat() -> None:
        while True:
            runtime.health.beat()
            await asyncio.sleep(5)

    async def main() -> None:
        ready = asyncio.Event()
        beat = asyncio.create_task(heartbeat())

        # Readiness means watching, not merely started: kopf raises ready_flag once its
        # startup handlers ran, before it has even reached the API server. Its insights
        # say when resource discovery answered and which of our kinds it watches.
        insights = kopf_references.Insights()
        wanted = {REGISTRY_CREDENTIAL.plural, CROSS_ACCOUNT_REPO_ACCESS.plural}

        async def mark_ready() -> None:
            await ready.wait()
            await insights.ready_resources.wait()
            while not wanted <= {r.plural for r in insights.watched_resources if r.group == GROUP}:
                await asyncio.sleep(1)  # CRDs not installed (yet): kopf watches them once they are
            runtime.health.ready.set()
            log.info("ready", watching=sorted(wanted))

        marker = asyncio.create_task(mark_ready())
        try:
            await kopf.operator(
                registry=registry,
                standalone=not settings.peering,
                peering_name=settings.peering or None,
                clusterwide=settings.all_namespaces,
                namespaces=list(settings.namespaces),
                ready_flag=ready,
                insights=insights,
            )
        finally:
            beat.cancel()
            marker.cancel()
            runtime.executor.shutdown(wait=True, cancel_futures=True)

    asyncio.run(main())
    return 0


def build_parser() -> argparse.ArgumentParser:
    from controller.settings import add_run_arguments

    parser = argparse.ArgumentParser(prog="regaccess", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"regaccess {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run the operator.")
    add_run_arguments(run)
    run.set_defaults(func=_cmd_run)
    crds = sub.add_parser("crds", help="Print the CustomResourceDefinitions (or --write DIR).")
    crds.add_argument("--write", metavar="DIR", help="Write one file per CRD into DIR instead of printing.")
    crds.set_defaults(func=_cmd_crds)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
