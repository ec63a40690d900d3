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
import logging
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

    from controller import handlers, logging as rlogging, metrics
    from controller.aws import ratelimit
    from controller.aws.clients import ClientFactory
    from controller.settings import settings_from_args
    from controller.shutdown import TrackingExecutor

    settings = settings_from_args(args)
    rlogging.configure(settings.log_level, settings.log_format)
    log = rlogging.get_logger("regaccess")
    factory = ClientFactory(
        retry_mode=settings.aws_retry_mode,
        max_attempts=settings.aws_max_attempts,
        max_pool_connections=max(10, settings.workers),
        hooks=list(metrics.CLIENT_HOOKS),
        rate_limits=ratelimit.merge_rules(ratelimit.parse_rules(settings.aws_rate_limits)),
        on_rate_limit_wait=metrics.observe_rate_limit_wait,
    )
    executor = TrackingExecutor(max_workers=settings.workers, thread_name_prefix="aws")
    runtime = handlers.Runtime(settings=settings, factory=factory, executor=executor)
    registry = handlers.build_registry(runtime)
    metrics.BUILD_INFO.labels(__version__).set(1)
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
        aws_rate_limits=ratelimit.describe(factory.rate_limiter.rules) if factory.rate_limiter else [],
    )

    async def heartbeat() -> None:
        while True:
            runtime.health.beat()
            await asyncio.sleep(5)

    async def main() -> None:
        ready = asyncio.Event()
        beat = asyncio.create_task(heartbeat())

        async def mark_ready() -> None:
            await ready.wait()
            runtime.health.ready.set()

        marker = asyncio.create_task(mark_ready())
        try:
            await kopf.operator(
                registry=registry,
                standalone=not settings.peering,
                peering_name=settings.peering or None,
                clusterwide=settings.all_namespaces,
                namespaces=list(settings.namespaces),
                ready_flag=ready,
            )
        finally:
            beat.cancel()
            marker.cancel()
            # kopf has stopped its handlers; their AWS work may still run in threads.
            # No new AWS call or retry from now on, then a bounded wait for the rest.
            factory.close()
            in_flight = executor.in_flight()
            abandoned = executor.drain(settings.shutdown_timeout)
            log.info("stopped", in_flight=in_flight, abandoned=abandoned)

    asyncio.run(main())
    if executor.in_flight():
        # Threads still inside an AWS call would be joined at interpreter exit, without
        # bound. Their work is observed and completed by the next start.
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
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
