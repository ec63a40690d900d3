"""Soak: a mixed workload under 25 % injected AWS faults, then the invariants.

Given roles, task definition families and ECR repositories in the AWS test
server, and the fault layer injecting throttling, 5xx, dropped connections,
aborted answers (the write happened, the answer was lost) and latency on a
quarter of all AWS requests (seeded), when RegistryCredentials (role grant +
task definition consumer) and CrossAccountRepoAccesses are created, then
churned for a bounded time (source Secrets rotated, specs edited, access
levels flipped), and some of them deleted,
then every resource converges (Ready for its generation) and:

- each family has exactly one new task definition revision, referencing its secret;
- the deleted resources left no secret, no inline policy and no policy statement;
- every remaining secret holds the latest rotated value (no secret lost);
- the throttling that reached the operator was counted, and the rate limiter's
  waits were measured.
"""

from __future__ import annotations

import time

import pytest

from controller.aws.repository_policies import sid_prefix
from tests.e2e import resilience as r
from tests.e2e.kube import wait_for

pytestmark = pytest.mark.e2e

N_CREDENTIALS = 10
N_XREPO = 4
FOREIGN_ACCOUNT = "210987654321"
CONVERGE_TIMEOUT = 150  # seconds, generous: the machine is shared; typically 20-40 s
SEED = 4242
CHURN_SECONDS = 40  # bounded soak phase after the first convergence
CHURN_PAUSE = 1.5


def test_soak_under_faults(control_plane, kube, aws_server_session, aws_e2e, tmp_path):
    server = aws_server_session
    rng = r.seeded("soak")
    run = rng.randrange(16**6)
    ns = f"soak-{run:06x}"
    kube.create_namespace(ns)
    role = f"soak-exec-{run:06x}"
    role_arn = r.make_role(role)
    families = {i: f"soak-{run:06x}-{i}" for i in range(N_CREDENTIALS)}
    for family in families.values():
        r.make_family(family, role_arn)
    repos = {i: f"soak-{run:06x}/repo-{i}" for i in range(N_XREPO)}
    for repo in repos.values():
        r.make_repository(repo)

    op = r.scoped_operator(control_plane, server.url, tmp_path, [ns], extra_env={
        # Pace registrations below the quota: exercises the limiter's waits under load.
        "REGACCESS_AWS_RATE_LIMITS": "ecs:RegisterTaskDefinition=2/3",
    })
    started = time.monotonic()
    server.faults.configure(seed=SEED, rates=r.FAULT_RATES, latency_max_seconds=0.2)
    passwords = {i: f"SOAKPW-{i}-{rng.randrange(10**9):09d}" for i in range(N_CREDENTIALS)}
    rc_paths = [kube.rc_path(ns, f"cred-{i}") for i in range(N_CREDENTIALS)]
    xrepo_paths = [r.xrepo_path(ns, f"share-{i}") for i in range(N_XREPO)]
    try:
        # Create everything at once, under faults.
        for i in range(N_CREDENTIALS):
            kube.create(kube.secret_path(ns), r.basic_auth_secret(ns, f"src-{i}", "robot", passwords[i]))
            kube.create(kube.rc_path(ns), r.registry_credential(ns, f"cred-{i}", r.wired_spec(f"src-{i}", role, families[i])))
        for i in range(N_XREPO):
            kube.create(r.xrepo_path(ns), r.cross_account(ns, f"share-{i}", r.xrepo_spec(repos[i], FOREIGN_ACCOUNT)))
        wait_for(lambda: not r.not_ready(kube, rc_paths + xrepo_paths), CONVERGE_TIMEOUT, "all Ready under faults",
                 interval=1)
        ready_under_faults = time.monotonic() - started

        # Churn for a bounded time, still under faults: rotate source Secrets, edit specs, flip access.
        churn_until = time.monotonic() + CHURN_SECONDS
        rotated: set[int] = set()
        churn = 0
        while time.monotonic() < churn_until:
            i = rng.randrange(N_CREDENTIALS)
            passwords[i] = f"SOAKPW-rotated-{i}-{rng.randrange(10**9):09d}"
            kube.merge_patch(kube.secret_path(ns, f"src-{i}"), {"data": {"password": r.b64(passwords[i])}})
            rotated.add(i)
            j = rng.randrange(N_CREDENTIALS)
            kube.merge_patch(kube.rc_path(ns, f"cred-{j}"), {"spec": {"secret": {"description": f"churn {churn}"}}})
            k = rng.randrange(N_XREPO)
            kube.merge_patch(r.xrepo_path(ns, f"share-{k}"), {"spec": {"grants": [
                {"principals": [{"accountId": FOREIGN_ACCOUNT}], "access": rng.choice(["Pull", "PullPush"])}]}})
            churn += 3
            time.sleep(CHURN_PAUSE)
        # Then delete a third of the resources.
        deleted = sorted(rng.sample(range(N_CREDENTIALS), N_CREDENTIALS // 3))
        deleted_x = sorted(rng.sample(range(N_XREPO), N_XREPO // 2))
        for i in deleted:
            kube.delete(kube.rc_path(ns, f"cred-{i}"))
        for i in deleted_x:
            kube.delete(r.xrepo_path(ns, f"share-{i}"))
        remaining = [i for i in range(N_CREDENTIALS) if i not in deleted]
        remaining_x = [i for i in range(N_XREPO) if i not in deleted_x]

        def converged() -> bool:
            gone = all(kube.get_or_none(kube.rc_path(ns, f"cred-{i}")) is None for i in deleted) and all(
                kube.get_or_none(r.xrepo_path(ns, f"share-{i}")) is None for i in deleted_x)
            rotated_ok = all(r.secret_value(f"regaccess/{ns}/cred-{i}")["password"] == passwords[i]
                             for i in rotated if i in remaining)
            return gone and rotated_ok and not r.not_ready(
                kube, [rc_paths[i] for i in remaining] + [xrepo_paths[i] for i in remaining_x])

        wait_for(converged, CONVERGE_TIMEOUT, "rotations and deletions under faults", interval=1)
        converged_at = time.monotonic() - started
        metrics = op.metrics()
    finally:
        faults = server.faults.counts()
        server.faults.clear()
        op.kill()

    # Exactly one new revision per family, referencing the secret (none for a deleted one's
    # family beyond the one registered before its deletion).
    for i, family in families.items():
        revs = r.revisions(family)
        assert len(revs) == 2, f"{family}: {[d['revision'] for d in revs]} revisions"
        assert r.credentials_parameter(revs[-1]) is not None
        assert r.credentials_parameter(revs[-1]).split(":secret:")[1].startswith(f"regaccess/{ns}/cred-{i}")
    # Deleted: nothing left behind. Remaining: value correct, policy in place.
    assert r.secret_names(f"regaccess/{ns}/") == {f"regaccess/{ns}/cred-{i}" for i in remaining}
    for i in remaining:
        assert r.secret_value(f"regaccess/{ns}/cred-{i}") == {"username": "robot", "password": passwords[i]}
    assert r.role_policies(role) == {f"regaccess-{ns}-cred-{i}" for i in remaining}
    for i, repo in repos.items():
        owned = {s for s in r.repository_sids(repo) if s.startswith(sid_prefix("e2e", ns, f"share-{i}"))}
        assert bool(owned) == (i in remaining_x), repo

    injected = sum(v for k, v in faults.items() if k != "latency")
    assert injected > 0 and faults.get("abort", 0) > 0  # the faults really happened
    throttles = r.metric_sum(metrics, "regaccess_aws_throttles_total")
    assert throttles > 0  # and the operator counted the throttling it saw
    r.record_figures("soak", {
        "resources": N_CREDENTIALS + N_XREPO,
        "resources_converged": N_CREDENTIALS + N_XREPO,
        "churn_operations": churn, "churn_seconds": CHURN_SECONDS,
        "rotated": len(rotated), "deleted": len(deleted) + len(deleted_x),
        "faults_injected": injected, "faults_by_kind": faults,
        "fault_rate": sum(v for k, v in r.FAULT_RATES.items() if k != "latency"),
        "aws_calls": sum(server.calls.counts().values()),
        "throttles_counted": throttles,
        "rate_limit_wait_seconds": round(r.metric_sum(metrics, "regaccess_aws_rate_limit_wait_seconds_sum"), 2),
        "seconds_to_ready": round(ready_under_faults, 1),
        "seconds_to_converged": round(converged_at, 1),
        "duplicate_revisions": 0, "orphaned_secrets": 0, "lost_secrets": 0,
    })
