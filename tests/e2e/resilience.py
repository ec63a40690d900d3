"""Shared pieces of the resilience e2e tests (soak, crash, bad input, leaks).

Used by tests/e2e/test_soak.py, test_crash.py, test_bad_input.py and
test_leaks.py, and read back by scripts/resilience_report.py:

- ``scoped_operator``: the operator as a real process watching only the given
  namespaces (other test modules leave resources behind in theirs; an operator
  with ``-A`` would resume them and write to AWS, spoiling the call record).
- AWS fixtures in the test server: ECS task-execution roles, task definition
  families that run with them, ECR repositories.
- Workload builders and the invariants every scenario ends with.
- ``record_figures``: each test writes its measured figures as JSON into
  ``$REGACCESS_RESILIENCE_FIGURES`` (when set) for the report script.
"""

from __future__ import annotations

import base64
import json
import os
import random
import sys
import uuid
from pathlib import Path
from typing import Any, Iterable

import boto3
from botocore.config import Config

from controller.api.models import API_VERSION
from tests.e2e import controlplane
from tests.e2e.conftest import Operator, _spawn, _wait_operator_ready
from tests.e2e.kube import Kube, condition
from tests.harness import world

FIGURES_ENV = "REGACCESS_RESILIENCE_FIGURES"
REGION = "us-east-1"
XREPO_PLURAL = "crossaccountrepoaccesses"
# Fault mix for soak/crash: the failure kinds add up to 25 % of all AWS requests.
FAULT_RATES = {"throttle": 0.10, "error5xx": 0.07, "drop": 0.05, "abort": 0.03, "latency": 0.10}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --------------------------------------------------------------------------- operator


def scoped_operator(control_plane, aws_url: str, log_dir: Path, namespaces: Iterable[str], *,
                    extra_env: dict | None = None, wait_ready: bool = True) -> Operator:
    """Start ``python -m controller run -n NS...`` against the control plane and the AWS test server."""
    port = controlplane.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REGACCESS_"))}
    env.update({
        "KUBECONFIG": str(control_plane.kubeconfig),
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "REGACCESS_CLUSTER_ID": "e2e",
        "REGACCESS_DRIFT_INTERVAL": "30",
        "REGACCESS_METRICS_BIND": "127.0.0.1",
        "REGACCESS_LOG_LEVEL": "DEBUG",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra_env or {})
    args = [sys.executable, "-m", "controller", "run", "--metrics-port", str(port)]
    for namespace in namespaces:
        args += ["-n", namespace]
    log_path = log_dir / f"operator-{uuid.uuid4().hex[:6]}.log"
    op = Operator(_spawn(args, env, log_path), log_path, f"http://127.0.0.1:{port}", env, args)
    if wait_ready:
        _wait_operator_ready(op)
    return op


def metric_sum(metrics_text: str, name: str) -> float:
    """Sum of every sample of one metric family (all label sets)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --------------------------------------------------------------------------- AWS fixtures


def aws_client(service: str) -> Any:
    """A test-side client that rides out the injected faults (reads only, or setup before faults)."""
    return boto3.client(service, region_name=REGION, config=Config(
        retries={"mode": "standard", "total_max_attempts": 15}, connect_timeout=5, read_timeout=20))


def make_role(name: str) -> str:
    iam = aws_client("iam")
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(world.ECS_TRUST))["Role"]["Arn"]


def make_family(family: str, role_arn: str) -> str:
    ecs = aws_client("ecs")
    return ecs.register_task_definition(
        family=family, executionRoleArn=role_arn,
        containerDefinitions=[{"name": "app", "image": "registry.example.com/team/app:1", "memory": 128}],
    )["taskDefinition"]["taskDefinitionArn"]


def make_repository(name: str) -> str:
    return aws_client("ecr").create_repository(repositoryName=name)["repository"]["repositoryArn"]


def revisions(family: str) -> list[dict]:
    """Every revision of a family (ACTIVE and INACTIVE), oldest first."""
    ecs = aws_client("ecs")
    arns = ecs.list_task_definitions(familyPrefix=family, status="ACTIVE")["taskDefinitionArns"]
    arns += ecs.list_task_definitions(familyPrefix=family, status="INACTIVE")["taskDefinitionArns"]
    found = [ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"] for arn in arns]
    return sorted((d for d in found if d["family"] == family), key=lambda d: d["revision"])


def credentials_parameter(definition: dict) -> str | None:
    return ((definition["containerDefinitions"][0].get("repositoryCredentials") or {}).get("credentialsParameter"))


def secret_names(prefix: str) -> set[str]:
    sm = aws_client("secretsmanager")
    names: set[str] = set()
    for page in sm.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
        names |= {s["Name"] for s in page["SecretList"] if s["Name"].startswith(prefix)}
    return names


def secret_value(name: str) -> dict:
    return json.loads(aws_client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])


def role_policies(role: str) -> set[str]:
    return set(aws_client("iam").list_role_policies(RoleName=role)["PolicyNames"])


def repository_sids(repository: str) -> set[str]:
    ecr = aws_client("ecr")
    try:
        text = ecr.get_repository_policy(repositoryName=repository)["policyText"]
    except ecr.exceptions.RepositoryPolicyNotFoundException:
        return set()
    return {s.get("Sid", "") for s in json.loads(text).get("Statement", [])}


# --------------------------------------------------------------------------- manifests


def basic_auth_secret(namespace: str, name: str, username: str, password: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"username": b64(username), "password": b64(password)}}


def registry_credential(namespace: str, name: str, spec: dict) -> dict:
    return {"apiVersion": API_VERSION, "kind": "RegistryCredential",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def cross_account(namespace: str, name: str, spec: dict) -> dict:
    return {"apiVersion": API_VERSION, "kind": "CrossAccountRepoAccess",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def wired_spec(source: str, role: str, family: str) -> dict:
    """A RegistryCredential with a role grant and a task definition consumer (force delete: no leftovers)."""
    return {
        "source": {"secretRef": {"name": source}},
        "secret": {"forceDeleteWithoutRecovery": True},
        "grants": {"executionRoles": [role]},
        "consumers": {"ecsTaskDefinitions": [{"family": family}]},
    }


def xrepo_spec(repository: str, account: str) -> dict:
    return {"repositories": [repository], "grants": [{"principals": [{"accountId": account}], "access": "Pull"}]}


def xrepo_path(namespace: str, name: str | None = None) -> str:
    return Kube.rc_path(namespace, name, plural=XREPO_PLURAL)


def is_ready(obj: dict | None) -> bool:
    if not obj:
        return False
    ready = condition(obj, "Ready")
    return ready.get("status") == "True" and (obj.get("status") or {}).get("observedGeneration") == \
        obj["metadata"].get("generation")


def not_ready(kube: Kube, paths: Iterable[str]) -> list[str]:
    """The paths whose object is not (yet) Ready for its current generation."""
    return [p for p in paths if not is_ready(kube.get_or_none(p))]


# --------------------------------------------------------------------------- leaks


def leak_forms(values: Iterable[str]) -> dict[str, str]:
    """Each value, its base64, and base64 of user:value as dockerconfigjson's auth field carries it."""
    forms: dict[str, str] = {}
    for value in values:
        forms[value] = value
        forms[f"base64({value})"] = b64(value)
        for user in ("robot", "hubuser", "leaker", "AWS"):  # AWS: an ECR token in docker login's auth form
            forms[f"base64({user}:{value})"] = b64(f"{user}:{value}")
        forms[f"json({value})"] = json.dumps(value)[1:-1]
    return forms


def find_leaks(haystacks: dict[str, str], values: Iterable[str]) -> list[str]:
    forms = leak_forms(values)
    return [f"{label} in {where}" for where, text in haystacks.items() for label, form in forms.items() if form in text]


# --------------------------------------------------------------------------- figures


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Print the figures and, for scripts/resilience_report.py, write them as JSON."""
    print(f"\nresilience figures {name}: {json.dumps(figures, sort_keys=True)}")
    directory = os.environ.get(FIGURES_ENV)
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True))


def seeded(name: str) -> random.Random:
    """One seeded RNG per test (REGACCESS_RESILIENCE_SEED overrides the default seed)."""
    seed = int(os.environ.get("REGACCESS_RESILIENCE_SEED", "20240607"))
    return random.Random(f"{seed}-{name}")

