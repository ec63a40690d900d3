"""What PullReady costs a drift check, in AWS calls, beside the baseline without it.

Runs in-process against the AWS test server (tests/harness/awsserver.py, 127.0.0.1): R
execution roles (each with AmazonECSTaskExecutionRolePolicy attached, as users have it), N
RegistryCredentials spread over them, each with one task definition consumer. It converges
every resource, then runs ``--checks`` drift checks of every resource twice: once with the
``pullReady`` step removed from the sync steps (the baseline, the code before issue 31) and
once with it, and prints the calls per check of each arm. The first check after a role's cache
entry expires reads the role in full (``--expire`` runs one more round with the cache emptied
first); the figure the issue asks for, reads per role per check averaged over the cache TTL at
the default drift interval, is printed below.

    .venv/bin/python -m bench.pull_ready --roles 5 --resources 20 --checks 3
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections import Counter

import boto3

from controller.aws import role_policies
from controller.aws.clients import ClientFactory, Clients
from controller.reconcile import registry_credential as rc
from controller.settings import Settings

REGION = "us-east-1"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", type=int, default=5)
    parser.add_argument("--resources", type=int, default=20)
    parser.add_argument("--checks", type=int, default=3)
    args = parser.parse_args(argv)
    if not (0 < args.roles <= 100 and 0 < args.resources <= 500 and 0 < args.checks <= 20):
        parser.error("bounded: roles 1-100, resources 1-500, checks 1-20")

    from tests.harness import awsserver, world

    server = awsserver.start(port=0)
    os.environ.update(AWS_ENDPOINT_URL=server.url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION)
    try:
        raw = lambda service: boto3.client(service, region_name=REGION)  # noqa: E731
        roles = [world.make_execution_role(raw, f"bench-exec-{i}") for i in range(args.roles)]
        factory = ClientFactory(session=boto3.session.Session(region_name=REGION))
        clients_for = lambda region, role, ext: Clients(factory, region=region, role_arn=role, external_id=ext)  # noqa: E731
        statuses: dict[str, dict] = {}
        specs: dict[str, dict] = {}
        for i in range(args.resources):
            family = f"team-bench-{i}"
            role = roles[i % args.roles]
            world.register_family(raw, family, role)
            specs[f"c{i}"] = {"source": {"secretRef": {"name": "src"}},
                              "grants": {"executionRoles": [role.rsplit("/", 1)[-1]]},
                              "consumers": {"ecsTaskDefinitions": [{"family": family}]},
                              "secret": {"forceDeleteWithoutRecovery": True}}
        source = {"type": "kubernetes.io/basic-auth", "data": {"username": b64("robot"), "password": b64("pw-1")},
                  "metadata": {"name": "src", "namespace": "team", "resourceVersion": "1"}}

        def round_(drift_check: bool) -> None:
            for name, spec in specs.items():
                request = rc.Request("team", name, 1, spec, statuses.get(name, {}), source, "bench", drift_check)
                statuses[name] = rc.reconcile(request, clients_for).status

        round_(False)
        round_(False)
        original = rc.sync_steps

        def arm(with_pull_ready: bool, *, expire: bool) -> Counter:
            rc.sync_steps = original if with_pull_ready else (  # type: ignore[assignment]
                lambda resolved: [s for s in original(resolved) if s[0] != "pullReady"])
            total: Counter = Counter()
            for _ in range(args.checks):
                if expire:
                    role_policies.cache_for(factory)._entries.clear()
                mark = server.calls.mark()
                round_(True)
                total.update(server.calls.counts(since=mark))
            rc.sync_steps = original  # type: ignore[assignment]
            return total

        baseline = arm(False, expire=False)
        cached = arm(True, expire=False)
        expired = arm(True, expire=True)
        checks = args.checks * args.resources
        print(f"{args.resources} RegistryCredentials over {args.roles} execution roles, {args.checks} drift checks each "
              f"({checks} checks per arm)")
        print(f"{'arm':<38}{'calls/check':>12}{'added/check':>12}")
        base = sum(baseline.values()) / checks
        for label, counts in (("baseline (no PullReady step)", baseline), ("PullReady, cache warm", cached),
                              ("PullReady, cache expired every round", expired)):
            per = sum(counts.values()) / checks
            print(f"{label:<38}{per:>12.2f}{per - base:>12.2f}")
        added = Counter(expired)
        added.subtract(baseline)
        added = +added
        iam_added = sum(v for k, v in added.items() if k.startswith("iam:"))
        other_added = sum(added.values()) - iam_added
        interval = Settings().drift_interval
        per_window = role_policies.ROLE_TTL_SECONDS / interval
        rounds = args.checks
        iam_per_role_read = iam_added / (rounds * args.roles)
        print(f"one full read of a role: {iam_per_role_read:.2f} IAM calls; secret/key policies: "
              f"{other_added / (rounds * args.resources):.2f} calls per resource")
        print(f"at the default --drift-interval {interval:.0f} s and the {role_policies.ROLE_TTL_SECONDS:.0f} s cache "
              f"each entry is read once per {per_window:.0f} checks of a resource, so PullReady adds "
              f"{iam_per_role_read / per_window / (args.resources / args.roles):.2f} IAM reads per role per drift "
              f"check of a resource using it ({iam_per_role_read / per_window:.2f} per role per interval) "
              f"and {sum(added.values()) / checks / per_window:.2f} calls per resource drift check "
              f"(baseline {sum(baseline.values()) / checks:.2f}; issue 31: at most 1 read per role)")
        print("added calls per arm (expired - baseline):", dict(sorted(added.items())))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
