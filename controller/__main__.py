"""Command line: ``regaccess run | crds | plan | demo | docs`` (also ``python -m controller``).

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
import socket
import sys
from pathlib import Path
from typing import Any, Sequence

from controller import __version__
from controller.settings import cluster_id


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


def _drift_event_poller(runtime: Any, factory: Any) -> Any:
    """The SQS poller of --drift-events-queue-url (no queue: a poller with nothing to do)."""
    from controller import drift_events, metrics
    from controller.aws import event_queue

    urls = list(runtime.settings.drift_events_queue_urls)
    clients = event_queue.clients(lambda region: factory.client("sqs", region=region), urls)

    def handle(event: Any) -> int:
        return runtime.handle_event(event) if runtime.handle_event else 0

    def count(outcome: str) -> None:
        if outcome == "received":
            metrics.DRIFT_EVENTS_RECEIVED.inc()
        else:
            metrics.DRIFT_EVENTS.labels(outcome).inc()

    def queue_up(url: str, up: bool) -> None:
        metrics.DRIFT_EVENT_QUEUE_UP.labels(event_queue.queue_name(url)).set(1 if up else 0)

    return drift_events.Poller(
        urls, receive=lambda url: event_queue.receive(clients[url], url),
        delete=lambda url, receipt: event_queue.delete(clients[url], url, receipt),
        handle=handle, blocking=drift_events.in_daemon_thread, count=count,
        queue_error=lambda url: metrics.DRIFT_EVENT_QUEUE_ERRORS.inc(),
        attributes=lambda url: event_queue.attributes(clients[url], url), queue_up=queue_up,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    import kopf

    from kopf._cogs.structs import references as kopf_references  # Insights: not re-exported by kopf

    from controller import handlers, kopfpatches, logging as rlogging, metrics
    from controller.peering import replica_priority
    from controller.api.models import CROSS_ACCOUNT_REPO_ACCESS, GROUP, REGISTRY_CREDENTIAL
    from controller.aws import ratelimit
    from controller.aws.clients import ClientFactory
    from controller.settings import settings_from_args
    from controller.shutdown import TrackingExecutor

    settings = settings_from_args(args)
    kopf_fixed = kopfpatches.apply()  # before kopf builds its start-up gate (see the module)
    # Replicas share one pod template: each derives a distinct priority, so that
    # kopf keeps exactly one active and the others on standby.
    priority = replica_priority(socket.gethostname(), os.getpid()) if settings.peering else 0
    rlogging.configure(settings.log_level, settings.log_format)
    log = rlogging.get_logger("regaccess")
    if not kopf_fixed:
        log.warning("kopf_startup_gate_unpatched", reason="kopf's ToggleSet changed shape; start-up indexing "
                    "costs O(N^2) in the objects listed (controller/kopfpatches.py)")
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
    metrics.DRIFT_INTERVAL.set(settings.check_interval)
    if settings.metrics_port:
        metrics.serve(runtime.health, settings.metrics_bind, settings.metrics_port)
    log.info(
        "starting",
        version=__version__,
        namespaces=list(settings.namespaces) or "all",
        cluster_id=settings.cluster_id,
        peering=settings.peering or "standalone",
        priority=priority,
        drift_interval=settings.drift_interval,
        shard=settings.shard or "default",
        kube_connections=handlers.connection_limit(settings) or "unbounded",
        aws_region=factory.default_region,
        aws_endpoint=os.environ.get("AWS_ENDPOINT_URL") or "default",
        aws_rate_limits=ratelimit.describe(factory.rate_limiter.rules) if factory.rate_limiter else [],
    )

    async def main() -> None:
        ready = asyncio.Event()
        # The drift scheduler's loop also beats the liveness heartbeat (/healthz).
        beat = asyncio.create_task(runtime.scheduler.run())
        # AWS change events (--drift-events-queue-url): they only trigger the scheduler.
        events = asyncio.create_task(_drift_event_poller(runtime, factory).run())

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
                priority=priority,
                clusterwide=settings.all_namespaces,
                namespaces=list(settings.namespaces),
                ready_flag=ready,
                insights=insights,
            )
        finally:
            beat.cancel()
            events.cancel()
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


def _cmd_plan(args: argparse.Namespace) -> int:
    from controller import plan

    return plan.run(args.files, output=args.output, aws=args.aws, namespace=args.namespace,
                    cluster_id=args.cluster_id, kube=args.kube, tenancy_policy=args.tenancy_policy)


def _cmd_demo(args: argparse.Namespace) -> int:
    from controller import demo

    live = {"auto": None, "live": True, "plain": False}[args.view]
    return demo.run(demo.Options(aws=args.aws, control_plane=args.control_plane, examples=Path(args.examples),
                                 timeout=args.timeout, live=live))


def _cmd_docs(args: argparse.Namespace) -> int:
    from controller import docgen

    text = docgen.reference()
    if args.write:
        Path(args.write).write_text(text)
        print(f"wrote {args.write}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_iam_policy(args: argparse.Namespace) -> int:
    from controller import iampolicy

    try:
        options = iampolicy.Options(partition=args.partition, account=args.account, cluster_id=args.cluster_id,
                                    region=args.region, assume_role_path=args.assume_role_path)
    except ValueError as error:
        print(f"regaccess iam-policy: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(iampolicy.dumps(options))
    return 0


def _cluster_id_or_placeholder(text: str) -> str:
    """iam-policy's --cluster-id: a valid cluster id, or the placeholder left for envsubst."""
    from controller import iampolicy

    return text if text == iampolicy.CLUSTER_PLACEHOLDER else cluster_id(text)


def _add_iam_policy_command(sub: argparse._SubParsersAction) -> None:
    from controller import iampolicy

    policy = sub.add_parser(
        "iam-policy", help="Print the operator's least-privilege IAM policy for one account and cluster.",
        description="Print the IAM policy the operator's own identity needs (deploy/iam-policy.json with its "
        "placeholders filled in). Options left out keep their ${...} placeholder. See docs/install.md, "
        "\"IAM policy\".")
    policy.add_argument("--partition", default=iampolicy.PARTITION_PLACEHOLDER,
                        help="ARN partition: aws, aws-cn or aws-us-gov (default: the placeholder ${AWS_PARTITION}).")
    policy.add_argument("--account", default=iampolicy.ACCOUNT_PLACEHOLDER,
                        help="The 12-digit account the operator acts in (default: ${AWS_ACCOUNT_ID}).")
    policy.add_argument("--cluster-id", default=iampolicy.CLUSTER_PLACEHOLDER, type=_cluster_id_or_placeholder,
                        help="The operator's --cluster-id: GetSecretValue and writes are allowed only on objects "
                        "whose regaccess.io/owner tag starts with <cluster-id>/ (default: ${REGACCESS_CLUSTER_ID}).")
    policy.add_argument("--region", default="*",
                        help="Restrict every regional ARN (and kms:ViaService) to one region (default: * = all).")
    policy.add_argument("--assume-role-path", default=iampolicy.DEFAULT_ASSUME_ROLE_PATH,
                        help="IAM path of the roles spec.roleArn may name for sts:AssumeRole, in any account "
                        f"(default: {iampolicy.DEFAULT_ASSUME_ROLE_PATH}).")
    policy.set_defaults(func=_cmd_iam_policy)


def _add_tool_commands(sub: argparse._SubParsersAction) -> None:
    _add_iam_policy_command(sub)
    plan = sub.add_parser(
        "plan", help="Validate manifests and show what the operator would change in AWS (read-only).",
        description="Validate RegistryCredential / CrossAccountRepoAccess manifests with the operator's own "
        "validators and, given AWS credentials (or AWS_ENDPOINT_URL), list the AWS changes the operator would "
        "make, field by field. Never writes to AWS or Kubernetes; never reads or prints secret values. "
        "Exit codes: 0 valid, 1 invalid manifest, 2 usage error, 3 AWS could not be read.")
    plan.add_argument("-f", "--filename", dest="files", action="append", required=True, metavar="FILE_OR_DIR",
                      help="A manifest file or a directory of *.yaml/*.yml/*.json (repeatable).")
    plan.add_argument("-o", "--output", choices=("text", "json"), default="text", help="Output format.")
    plan.add_argument("--aws", choices=("auto", "off"), default="auto",
                      help="auto: compare with AWS when credentials are found; off: validate only.")
    plan.add_argument("-n", "--namespace", default=os.environ.get("REGACCESS_NAMESPACE", "default").split(",")[0] or "default",
                      help="Namespace for manifests that name none (default: default).")
    plan.add_argument("--cluster-id", default=os.environ.get("REGACCESS_CLUSTER_ID", "default"), type=cluster_id,
                      help="The operator's --cluster-id (for the regaccess.io/owner tag). Env REGACCESS_CLUSTER_ID.")
    plan.add_argument("--kube", action="store_true",
                      help="Read the live resources (GET only) from the cluster of the current kubeconfig context, "
                      "so the plan starts from their status: it also lists what the operator would stop managing "
                      "and clean up, and drift as drift. The source Secret is read as metadata only.")
    plan.add_argument("--tenancy-policy", default=os.environ.get("REGACCESS_TENANCY_POLICY", "default"),
                      help="The operator's --tenancy-policy: the TenancyPolicy whose rules the plan applies, taken "
                      "with --kube from the cluster (one the manifests add is not used), else from the "
                      "manifests, else what the operator uses while it does not exist (the shipped default "
                      "for 'default'). Empty: the shipped default. Env REGACCESS_TENANCY_POLICY.")
    plan.set_defaults(func=_cmd_plan)

    demo = sub.add_parser(
        "demo", help="Run the whole story locally: AWS stand-in, control plane, operator, drift, cleanup.",
        description="Install the CRDs, apply the examples, run the operator, show drift detection and repair, "
        "and clean up, checking every step. Exit code 0 only when every step was verified. Needs the demo "
        "extra: pip install 'regaccess[demo]'.")
    demo.add_argument("--aws", choices=("moto", "real"), default="moto",
                      help="moto (default): an in-process moto server on 127.0.0.1. real: the AWS account of the "
                      "standard boto3 chain (creates and removes a demo IAM role and task definition family).")
    demo.add_argument("--control-plane", choices=("auto", "local", "current"), default="auto",
                      help="local: a throwaway kube-apiserver from KUBEBUILDER_ASSETS; current: the current "
                      "kubeconfig context; auto (default): local when KUBEBUILDER_ASSETS is set, else current.")
    demo.add_argument("--examples", default=str(Path(__file__).resolve().parents[1] / "examples"),
                      help="Directory of example manifests (default: the repository's examples/).")
    demo.add_argument("--timeout", type=float, default=180.0, help="Upper bound on the whole demo, seconds.")
    demo.add_argument("--view", choices=("auto", "live", "plain"), default="auto",
                      help="live terminal view (rich) or plain lines; auto: live when stdout is a terminal.")
    demo.set_defaults(func=_cmd_demo)

    docs = sub.add_parser("docs", help="Print the field-by-field API reference (or --write FILE).")
    docs.add_argument("--write", metavar="FILE", help="Write it to FILE (docs/reference.md) instead of printing.")
    docs.set_defaults(func=_cmd_docs)


def build_parser() -> argparse.ArgumentParser:
    from controller.settings import add_run_arguments

    parser = argparse.ArgumentParser(
        prog="regaccess",
        description="Keep AWS private-registry access (Secrets Manager, IAM, ECS, Batch, ECR) in the state Git declares.",
    )
    parser.add_argument("--version", action="version", version=f"regaccess {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run the operator.")
    add_run_arguments(run)
    run.set_defaults(func=_cmd_run)
    crds = sub.add_parser("crds", help="Print the CustomResourceDefinitions (or --write DIR).")
    crds.add_argument("--write", metavar="DIR", help="Write one file per CRD into DIR instead of printing.")
    crds.set_defaults(func=_cmd_crds)
    _add_tool_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
