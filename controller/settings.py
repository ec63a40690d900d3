"""Operator settings: command-line options, each also settable as REGACCESS_<OPTION>.

``regaccess run --drift-interval 60`` and ``REGACCESS_DRIFT_INTERVAL=60`` mean
the same; the command line wins. Every option is documented in the README
(a unit test checks that the README names each one).
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from controller.api.validation import check_cluster_id

ENV_PREFIX = "REGACCESS_"
# The label that assigns a resource to a shard (like Flux's sharding.fluxcd.io/key).
SHARD_LABEL = "regaccess.io/shard"


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    dest: str
    help: str
    default: Any
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    repeatable: bool = False  # the flag may repeat; its value (and the env) may be comma-separated

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flags[-1].lstrip("-").upper().replace("-", "_")


def _non_negative_price(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a price in dollars (for example 0.40); got {text!r}") from None
    if not (value >= 0 and value < 1e6):
        raise argparse.ArgumentTypeError(f"a price in dollars from 0 (for example 0.40); got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _shard(text: str) -> str:
    """A label value (a shard name goes into the watch's label selector as is)."""
    if text and not re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", text):
        raise argparse.ArgumentTypeError(f"not a label value: {text!r}")
    return text


def _k8s_name_or_empty(text: str) -> str:
    """A Kubernetes object name (DNS subdomain), or empty."""
    if text and not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", text):
        raise argparse.ArgumentTypeError(f"not an object name: {text!r}")
    return text


def _urls(text: str) -> tuple[str, ...]:
    """Comma-separated URLs (empty: none)."""
    urls = tuple(u.strip() for u in text.split(",") if u.strip())
    for url in urls:
        if not re.fullmatch(r"https?://\S+", url):
            raise argparse.ArgumentTypeError(f"not a queue URL: {url!r}")
    return urls


def _rate_limits(text: str) -> str:
    """Validate the rules now (a typo must stop startup, not surface at the first AWS call)."""
    from controller.aws.ratelimit import RuleError, parse_rules

    try:
        parse_rules(text)
    except RuleError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


APPLIED_FOR_VALUES = ("PULL_THROUGH_CACHE", "REPLICATION", "CREATE_ON_PUSH")


def _opt_in(text: str) -> str:
    from controller.source_index import parse_opt_in

    try:
        parse_opt_in(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.strip()


def cluster_id(text: str) -> str:
    """--cluster-id: validated at start-up (controller.api.validation.check_cluster_id)."""
    try:
        return check_cluster_id(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _applied_for(text: str) -> str:
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in APPLIED_FOR_VALUES]
    if not values or unknown:
        raise argparse.ArgumentTypeError(
            f"a comma-separated list of {', '.join(APPLIED_FOR_VALUES)}; got {text!r}")
    return ",".join(dict.fromkeys(values))


# Options of `regaccess run`. Namespaces (-n/-A) are handled separately (repeatable).
RUN_OPTIONS: list[Option] = [
    Option(("--cluster-id",), "cluster_id", "Identifies this cluster in the regaccess.io/owner "
           "tag (<cluster-id>/<namespace>/<name>) and the key of the statement Sid marks; give each "
           "cluster sharing an AWS account its own. 1-63 of A-Z a-z 0-9 _ . : = + @ - (no / * ?).",
           "default", cluster_id),
    Option(("--drift-interval",), "drift_interval", "Seconds between drift checks of each "
           "resource (with up to 10%% jitter).", 300.0, _positive_float),
    Option(("--drift-events-queue-url",), "drift_events_queue_urls", "SQS queue of AWS change events "
           "(CloudTrail via EventBridge, see docs/operations.md): a change to a managed object triggers "
           "the reconcile of the resources that manage it at once. Repeatable or comma-separated "
           "(a queue per Region). Empty: drift is found by the drift check only.", (), _urls, repeatable=True),
    Option(("--drift-backstop-interval",), "drift_backstop_interval", "With drift-event queues: seconds "
           "between drift checks of each resource (replaces --drift-interval; events find changes "
           "in seconds, the check catches what an event missed).", 3600.0, _positive_float),
    Option(("--max-concurrent-drift-checks",), "max_concurrent_drift_checks", "Drift checks (and "
           "source Secret reconciles and ECRPullSecret token refreshes) the scheduler runs at once; "
           "the rest wait in due-time order. "
           "Raise it when checks fall behind the interval.", 8, _positive_int),
    Option(("--shard",), "shard", "The shard this operator owns: only resources labelled "
           f"{SHARD_LABEL}=NAME, filtered by the API server. Empty: the default shard, the resources "
           "without that label. Run one operator per shard name, plus one default shard.", "", _shard),
    Option(("--source-secret-selector",), "source_secret_selector", "Kubernetes label selector for "
           "source Secrets (e.g. regaccess.io/source=true), applied by the API server to the Secret "
           "list and watch: Secrets without the labels are never sent to the operator. Empty: all "
           "Secrets of the watched namespaces.", ""),
    Option(("--source-secret-opt-in",), "source_secret_opt_in", "The label (KEY=VALUE) or annotation "
           "(annotation:KEY=VALUE) a source Secret must carry before a RegistryCredential may copy it "
           "to AWS; without it the resource is Ready=False SourceNotOptedIn and the Secret's value is "
           "never read. Stops a tenant who cannot read a Secret from having the operator copy it for "
           "them. 'none' turns the check off (unsafe where tenants share a namespace with Secrets "
           "they must not read).", "regaccess.io/source=true", _opt_in),
    Option(("--tenancy-policy",), "tenancy_policy", "Name of the cluster-scoped TenancyPolicy "
           "that says what each namespace's resources may name in AWS (docs/security.md). While "
           "'default' does not exist, the shipped default applies (every rule field scoped to the "
           "namespace); while any other name does not exist, every resource is refused "
           "(TenancyPolicyMissing), logged and in regaccess_tenancy_policy_missing. Empty: never "
           "read one (no TenancyPolicy watch or RBAC), the shipped default only.", "default",
           _k8s_name_or_empty),
    Option(("--metrics-port",), "metrics_port", "Port of /metrics, /healthz and /readyz "
           "(0 disables).", 8080, _port),
    Option(("--metrics-bind",), "metrics_bind", "Address the metrics server binds to.", "0.0.0.0"),
    Option(("--aws-retry-mode",), "aws_retry_mode", "botocore retry mode.", "standard",
           str, ("standard", "adaptive", "legacy")),
    Option(("--aws-max-attempts",), "aws_max_attempts", "botocore attempts per AWS call "
           "(including the first).", 5, _positive_int),
    Option(("--aws-rate-limits",), "aws_rate_limits", "Client-side AWS rate limits, comma-separated "
           "SERVICE:OPERATIONS=RATE[/BURST] rules checked before the built-in defaults from the "
           "published quotas (e.g. ecs:RegisterTaskDefinition=1/20,batch:*=50; *:*=inf turns "
           "limiting off; see docs/resilience.md).", "", _rate_limits),
    Option(("--shutdown-timeout",), "shutdown_timeout", "Seconds to let in-flight AWS work finish "
           "after SIGTERM before exiting anyway (keep below the Pod's terminationGracePeriodSeconds).",
           20.0, _positive_float),
    Option(("--kube-connections",), "kube_connections", "Connections to the API server for "
           "requests (status and finalizer patches), beside one per watch stream: at most this many "
           "are in flight, the rest wait. Bounds memory when many resources change at once "
           "(each TLS connection holds ~0.3 MiB). 0: no bound (kopf's default); also none while a "
           "namespace is a pattern.", 32, _non_negative_int),
    Option(("--workers",), "workers", "Threads for AWS calls (reconciles run concurrently up "
           "to this many).", 32, _positive_int),
    Option(("--log-level",), "log_level", "Log level.", "INFO", str,
           ("DEBUG", "INFO", "WARNING", "ERROR")),
    Option(("--log-format",), "log_format", "json (one JSON object per line) or console.",
           "json", str, ("json", "console")),
    Option(("--template-applied-for",), "template_applied_for", "appliedFor of the ECR repository "
           "creation templates the operator creates for CrossAccountRepoAccess repositoryPrefixes, "
           "comma-separated from PULL_THROUGH_CACHE, REPLICATION, CREATE_ON_PUSH.",
           "PULL_THROUGH_CACHE,REPLICATION", _applied_for),
    Option(("--pull-secret-refresh-fraction",), "pull_secret_refresh_fraction", "ECRPullSecret: "
           "refresh a token at this fraction of its lifetime (up to 10%% earlier per resource); 0.5 "
           "leaves half of ECR's 12 hours for retries through an outage.", 0.5, _fraction),
    Option(("--pull-secret-max-lifetime",), "pull_secret_max_lifetime", "ECRPullSecret: seconds a "
           "token is taken to live at most, whatever its expiresAt says (ECR: 43200).", 43200.0,
           _positive_float),
    Option(("--secret-monthly-price",), "secret_monthly_price", "List price in dollars of one Secrets "
           "Manager secret per month, for status.monthlyCost (printer column Cost/Month) and the metric "
           "regaccess_managed_monthly_cost_dollars.", 0.40, _non_negative_price),
    Option(("--peering",), "peering", "kopf peering name for running several replicas "
           "(needs kopf's peering CRD); empty runs standalone.", ""),
]


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = True
    cluster_id: str = "default"
    drift_interval: float = 300.0
    drift_events_queue_urls: tuple[str, ...] = ()
    drift_backstop_interval: float = 3600.0
    max_concurrent_drift_checks: int = 8
    shard: str = ""
    tenancy_policy: str = "default"
    source_secret_selector: str = ""
    source_secret_opt_in: str = "regaccess.io/source=true"
    metrics_port: int = 8080
    metrics_bind: str = "0.0.0.0"
    aws_retry_mode: str = "standard"
    aws_max_attempts: int = 5
    aws_rate_limits: str = ""
    shutdown_timeout: float = 20.0
    kube_connections: int = 32
    workers: int = 32
    log_level: str = "INFO"
    log_format: str = "json"
    peering: str = ""
    template_applied_for: str = "PULL_THROUGH_CACHE,REPLICATION"
    pull_secret_refresh_fraction: float = 0.5
    pull_secret_max_lifetime: float = 43200.0
    secret_monthly_price: float = 0.40
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def opt_in(self) -> Any:
        """The parsed --source-secret-opt-in (controller.source_index.OptIn; None: no check)."""
        from controller.source_index import parse_opt_in

        return parse_opt_in(self.source_secret_opt_in)

    @property
    def check_interval(self) -> float:
        """Seconds between drift checks: the backstop interval when events find drift."""
        return self.drift_backstop_interval if self.drift_events_queue_urls else self.drift_interval


def add_run_arguments(parser: argparse.ArgumentParser, environ: dict[str, str] | None = None) -> None:
    env = os.environ if environ is None else environ
    scope = parser.add_mutually_exclusive_group()
    ns_env = env.get(ENV_PREFIX + "NAMESPACE", "")
    scope.add_argument(
        "-n", "--namespace", dest="namespaces", action="append",
        default=None,
        help="Watch this namespace (repeatable; env REGACCESS_NAMESPACE, comma-separated"
        f"{'; now ' + ns_env if ns_env else ''}).",
    )
    scope.add_argument(
        "-A", "--all-namespaces", dest="all_namespaces", action="store_true",
        help="Watch all namespaces (the default when no namespace is given; env "
        "REGACCESS_ALL_NAMESPACES=true).",
    )
    for option in RUN_OPTIONS:
        raw = env.get(option.env)
        try:
            default = option.type(raw) if raw not in (None, "") else option.default
        except (ValueError, argparse.ArgumentTypeError) as error:
            # Same treatment as a bad flag: a clear message and exit 2, never a traceback.
            parser.error(f"{option.env}={raw!r}: {error}")
        if option.choices and default not in option.choices:
            parser.error(f"{option.env}={raw!r}: choose from {', '.join(option.choices)}")
        if option.repeatable:
            parser.add_argument(
                *option.flags, dest=option.dest, type=option.type, default=None, action="append",
                help=f"{option.help} Env {option.env}. Default: none.",
            )
            parser.set_defaults(**{option.dest + "_env": default})
            continue
        parser.add_argument(
            *option.flags, dest=option.dest, type=option.type, default=default,
            choices=option.choices,
            help=f"{option.help} Env {option.env}. Default: {option.default!r}.",
        )


def settings_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    namespaces = args.namespaces
    all_from_env = env.get(ENV_PREFIX + "ALL_NAMESPACES", "").strip().lower() in ("1", "true", "yes")
    if namespaces is None and not args.all_namespaces and not all_from_env:
        raw = env.get(ENV_PREFIX + "NAMESPACE", "")
        namespaces = [n.strip() for n in raw.split(",") if n.strip()]
    namespaces = tuple(namespaces or ())
    values = {option.dest: getattr(args, option.dest) for option in RUN_OPTIONS}
    for option in RUN_OPTIONS:
        if option.repeatable:
            given = values[option.dest]
            # The command line wins over the environment, as for every option.
            values[option.dest] = (tuple(dict.fromkeys(u for urls in given for u in urls)) if given
                                   else tuple(getattr(args, option.dest + "_env", option.default)))
    return Settings(namespaces=namespaces, all_namespaces=not namespaces, **values)
