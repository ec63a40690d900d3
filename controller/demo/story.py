"""``regaccess demo``: the whole story in one command, checked step by step.

Called by ``controller.demo.run`` once the ``demo`` extra is known to be
installed; the e2e test ``tests/e2e/test_demo.py`` runs it as a subprocess.

What it does, on embedded defaults:

1. AWS: an in-process moto server on 127.0.0.1 (``--aws moto``, the default), or
   the real AWS account of the standard boto3 chain when explicitly chosen
   (``--aws real``). It prepares what the examples point at: an ECS task
   execution role, an ECS task definition family and (moto only) the ECR
   repositories of ``examples/crossaccountrepoaccess.yaml``.
2. Kubernetes: a throwaway local control plane (``controller.demo.controlplane``)
   when KUBEBUILDER_ASSETS is set or ``--control-plane local``; else the
   current context of KUBECONFIG / ~/.kube/config (``--control-plane current``),
   both through the one small client of ``controller.kubeclient``.
3. Installs the CRDs, creates a namespace, runs ``regaccess plan`` on the
   examples, starts the operator (``python -m controller run`` as a
   subprocess, watching only that namespace), applies the examples and shows
   the resources converging in a live terminal view (rich; plain lines when
   stdout is not a terminal, as in CI).
4. Changes AWS behind the operator's back (widens the inline policy and
   overwrites the secret value), waits for the DriftDetected Event and the
   repair, plans again (expecting no change), deletes the resources and checks
   that AWS was cleaned up, then stops everything it started.

Every step verifies its outcome; the exit code is 0 only when all did. Total
time is bounded (``--timeout``, default 180 s); a failure names the step, what
was expected and what was seen, and shows the tail of the operator's log.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from controller.api import crdgen, reasons
from controller.demo import EXIT_FAILED, EXIT_OK, REPO_ROOT, Options
from controller.demo.view import StepState, View
from controller.kubeclient import Client, KubeconfigError, condition, core_path, custom_resource_path

DEMO_CLUSTER_ID = "demo"
REGION = "us-east-1"
DRIFT_INTERVAL = "3"            # seconds: drift is found within a few seconds in the demo
POLL_SECONDS = 0.5
CONVERGE_TIMEOUT = 60.0
DRIFT_TIMEOUT = 45.0
DELETE_TIMEOUT = 45.0
OPERATOR_READY_TIMEOUT = 45.0
LOG_TAIL_LINES = 25
DRIFT_WIDENED_ACTION = "secretsmanager:*"
DRIFT_VALUE = json.dumps({"username": "someone-else", "password": "changed-behind-the-operators-back"})
FOREIGN_SID = "KeptByTerraform"


class DemoFailure(Exception):
    """A step's outcome was not what it must be; the message says what and why."""


# --------------------------------------------------------------------------- Kubernetes access


TENANCY_POLICIES = "/apis/regaccess.io/v1alpha1/tenancypolicies"
PLURALS = {"RegistryCredential": "registrycredentials", "CrossAccountRepoAccess": "crossaccountrepoaccesses"}


def object_path(body: dict[str, Any], namespace: str, with_name: bool = False) -> str:
    name = body["metadata"]["name"] if with_name else None
    kind = body["kind"]
    if kind in PLURALS:
        return custom_resource_path(PLURALS[kind], namespace, name)
    if body.get("apiVersion") == "v1":
        return core_path(f"{kind.lower()}s", namespace, name)
    raise DemoFailure(f"the demo cannot apply a {kind} ({body.get('apiVersion')})")


# --------------------------------------------------------------------------- the demo


@dataclass
class Prepared:
    role_name: str
    role_arn: str
    family: str
    repositories: list[str]
    repository_region: str


class Demo:
    def __init__(self, options: Options, view: View) -> None:
        self.options = options
        self.view = view
        self.deadline = time.monotonic() + options.timeout
        self.stack = contextlib.ExitStack()
        self.env: dict[str, str] = {}
        self.suffix = uuid.uuid4().hex[:6]
        self.namespace = f"regaccess-demo-{self.suffix}"
        # Its own TenancyPolicy (never the cluster's "default"), followed with --tenancy-policy.
        self.tenancy_policy = f"regaccess-demo-{self.suffix}"
        self.kube: Client | None = None
        self.kubeconfig: str | None = None
        self.operator: subprocess.Popen | None = None
        self.operator_log: Path | None = None
        self.manifests: list[dict[str, Any]] = []
        self.prepared: Prepared | None = None
        self.seen_events: set[str] = set()

    # ------------------------------------------------------------------ helpers

    def remaining(self, cap: float) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DemoFailure(f"the demo's time budget of {self.options.timeout:.0f}s is used up")
        return min(cap, left)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[StepState]:
        state = self.view.step(title)
        try:
            yield state
        except DemoFailure as error:
            self.view.finish(state, False, str(error))
            raise
        except Exception as error:  # noqa: BLE001 - any surprise fails the step with its name
            self.view.finish(state, False, f"{type(error).__name__}: {error}")
            raise DemoFailure(f"{title}: {type(error).__name__}: {error}") from error
        else:
            self.view.finish(state, True, state.detail)

    def wait(self, what: str, predicate: Callable[[], Any], timeout: float) -> Any:
        """Poll until predicate returns a truthy value; bounded by timeout and the demo's deadline."""
        limit = time.monotonic() + self.remaining(timeout)
        last: str = ""
        while time.monotonic() < limit:
            self.check_operator()
            try:
                value = predicate()
                if value:
                    return value
            except DemoFailure:
                raise
            except Exception as error:  # noqa: BLE001 - keep polling; report the last error
                last = f"{type(error).__name__}: {error}"
            time.sleep(POLL_SECONDS)
        raise DemoFailure(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last})" if last else ""))

    def check_operator(self) -> None:
        if self.operator is not None and self.operator.poll() is not None:
            raise DemoFailure(f"the operator exited with code {self.operator.returncode}")

    def boto(self, service: str, region: str = REGION) -> Any:
        import boto3

        return boto3.session.Session(region_name=region).client(service)

    # ------------------------------------------------------------------ steps

    def start_aws(self) -> None:
        if self.options.aws == "real":
            with self.step("Use real AWS (standard boto3 chain)") as s:
                import boto3

                identity = boto3.session.Session().client("sts").get_caller_identity()
                s.detail = f"account {identity['Account']}, region {boto3.session.Session().region_name}"
                if not boto3.session.Session().region_name:
                    raise DemoFailure("no AWS Region: set AWS_REGION")
            return
        with self.step("Start AWS: moto server on 127.0.0.1") as s:
            import logging

            from moto.server import ThreadedMotoServer

            # moto's werkzeug logs a line per request; the demo shows its own view instead.
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            self.stack.callback(server.stop)
            host, port = server.get_host_and_port()
            url = f"http://{host}:{port}"
            self.env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo",
                        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}
            for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
                os.environ.pop(key, None)
            os.environ.update(self.env)
            s.detail = url

    def prepare_aws(self) -> None:
        real = self.options.aws == "real"
        xrepo = self.example_of("CrossAccountRepoAccess")
        with self.step("Prepare AWS: execution role, task definition, ECR repositories") as s:
            iam, ecs = self.boto("iam"), self.boto("ecs")
            rc = self.example_of("RegistryCredential")
            role_name = rc["spec"]["grants"]["executionRoles"][0]
            family = rc["spec"]["consumers"]["ecsTaskDefinitions"][0]["family"]
            if real:
                # Never touch existing objects of a real account: demo-unique names, removed afterwards.
                role_name, family = f"regaccess-demo-{self.suffix}", f"regaccess-demo-{self.suffix}"
                rc["spec"]["grants"]["executionRoles"] = [role_name]
                rc["spec"]["consumers"]["ecsTaskDefinitions"][0]["family"] = family
            trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                             "Principal": {"Service": "ecs-tasks.amazonaws.com"}}]}
            role_arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust),
                                       Description="regaccess demo task execution role")["Role"]["Arn"]
            if real:
                self.stack.callback(self._delete_real_role, role_name)
            containers = rc["spec"]["consumers"]["ecsTaskDefinitions"][0].get("containers") or ["app"]
            definitions = [{"name": c, "image": f"docker.io/acme/{c}:1.0", "memory": 256, "essential": True}
                           for c in containers]
            # A sidecar that pulls from ECR: not listed in containers, so it must stay untouched.
            definitions.append({"name": "log-router", "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable",
                                "memory": 64, "essential": False})
            registered = ecs.register_task_definition(family=family, executionRoleArn=role_arn,
                                                      containerDefinitions=definitions)["taskDefinition"]
            if real:
                self.stack.callback(self._deregister_real_family, family)
            repositories: list[str] = []
            repo_region = REGION
            if xrepo is not None and not real:
                repo_region = xrepo["spec"].get("region") or REGION
                ecr = self.boto("ecr", repo_region)
                for index, repository in enumerate(xrepo["spec"]["repositories"]):
                    ecr.create_repository(repositoryName=repository)
                    repositories.append(repository)
                    if index == 0:
                        # A statement someone else owns (Terraform, a person): it must survive everything.
                        ecr.set_repository_policy(repositoryName=repository, policyText=json.dumps(
                            {"Version": "2012-10-17", "Statement": [{"Sid": FOREIGN_SID, "Effect": "Allow",
                             "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                             "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]}))
            self.prepared = Prepared(role_name, role_arn, family, repositories, repo_region)
            s.detail = (f"role {role_name}, task definition {registered['family']}:{registered['revision']}"
                        + (f", repositories {', '.join(repositories)} ({repo_region})" if repositories else ""))

    def _delete_real_role(self, role_name: str) -> None:
        iam = self.boto("iam")
        with contextlib.suppress(Exception):
            for name in iam.list_role_policies(RoleName=role_name).get("PolicyNames", []):
                iam.delete_role_policy(RoleName=role_name, PolicyName=name)
            iam.delete_role(RoleName=role_name)

    def _deregister_real_family(self, family: str) -> None:
        ecs = self.boto("ecs")
        with contextlib.suppress(Exception):
            for arn in ecs.list_task_definitions(familyPrefix=family, status="ACTIVE").get("taskDefinitionArns", []):
                ecs.deregister_task_definition(taskDefinition=arn)

    def start_kubernetes(self) -> None:
        from controller.demo import controlplane

        mode = self.options.control_plane
        assets = controlplane.assets_dir(os.environ.get("KUBEBUILDER_ASSETS"))
        if mode == "local" or (mode == "auto" and assets is not None):
            with self.step("Start Kubernetes: throwaway control plane (etcd + kube-apiserver)") as s:
                if assets is None:
                    raise DemoFailure("--control-plane local needs KUBEBUILDER_ASSETS pointing at a directory with "
                                      "kube-apiserver and etcd (for example ../shared/envtest/bin)")
                cp = controlplane.start(assets)
                self.stack.callback(cp.stop)
                self.kubeconfig = str(cp.kubeconfig)
                self.kube, _ = Client.from_kubeconfig(self.kubeconfig)
                s.detail = cp.server
        else:
            with self.step("Use Kubernetes: current context") as s:
                try:
                    self.kube, context = Client.from_kubeconfig()
                except KubeconfigError as error:
                    raise DemoFailure(f"{error}; set KUBECONFIG, or set KUBEBUILDER_ASSETS for a throwaway "
                                      "local control plane (--control-plane local)") from None
                self.kube.get("/version")
                self.kubeconfig = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
                s.detail = f"context {context} ({self.kube.server})"

    def install_crds(self) -> None:
        assert self.kube is not None
        with self.step("Install the CRDs") as s:
            names = []
            kube = self.kube
            for text in crdgen.render_all().values():
                doc = yaml.safe_load(text)
                name = doc["metadata"]["name"]
                kube.apply_crd(doc)
                self.wait(f"CRD {name} Established", lambda: kube.crd_established(name), 30)
                names.append(name)
            s.detail = ", ".join(names)

    def create_namespace(self) -> None:
        assert self.kube is not None
        with self.step(f"Create namespace {self.namespace}") as s:
            self.kube.create_namespace(self.namespace, labels={"app.kubernetes.io/part-of": "regaccess-demo"})
            self.stack.callback(self._delete_namespace)
            s.detail = "the examples are applied here, whatever namespace they name"

    def _delete_namespace(self) -> None:
        if self.kube is not None:
            with contextlib.suppress(Exception):
                self.kube.delete(f"/api/v1/namespaces/{self.namespace}")

    def tenancy_spec(self) -> dict[str, Any]:
        """The demo's reviewed TenancyPolicy: the shipped default, except the few existing AWS
        names the examples point at (the role, family, repositories and Region prepared above),
        for the demo's namespace alone. Under the shipped default they would be NotPermitted:
        they do not carry the namespace's name (docs/security.md)."""
        assert self.prepared is not None
        rules: dict[str, list[str]] = {"executionRoles": [self.prepared.role_name],
                                       "taskDefinitionFamilies": [self.prepared.family]}
        xrepo = self.example_of("CrossAccountRepoAccess")
        if xrepo is not None:
            rules["repositories"] = list(xrepo["spec"].get("repositories") or [])
            if xrepo["spec"].get("region"):
                rules["regions"] = [xrepo["spec"]["region"]]
        return {"defaultAction": "Deny", "namespaces": {self.namespace: rules}}

    def create_tenancy_policy(self) -> None:
        assert self.kube is not None
        with self.step(f"Create TenancyPolicy {self.tenancy_policy}") as s:
            body = {"apiVersion": "regaccess.io/v1alpha1", "kind": "TenancyPolicy",
                    "metadata": {"name": self.tenancy_policy,
                                 "labels": {"app.kubernetes.io/part-of": "regaccess-demo"}},
                    "spec": self.tenancy_spec()}
            self.kube.create(TENANCY_POLICIES, body)
            self.stack.callback(self._delete_tenancy_policy)
            s.detail = f"namespace {self.namespace} may name: " + json.dumps(body["spec"]["namespaces"][self.namespace])

    def _delete_tenancy_policy(self) -> None:
        if self.kube is not None:
            with contextlib.suppress(Exception):
                self.kube.delete(f"{TENANCY_POLICIES}/{self.tenancy_policy}")

    def load_examples(self) -> None:
        with self.step(f"Load the examples ({self.options.examples})") as s:
            if not self.options.examples.is_dir():
                raise DemoFailure(f"{self.options.examples} is not a directory; pass --examples DIR")
            docs: list[dict[str, Any]] = []
            for path in sorted(self.options.examples.glob("*.yaml")):
                docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
            if self.options.aws == "real":
                # Its principals are placeholder accounts that real ECR would reject.
                docs = [d for d in docs if d.get("kind") != "CrossAccountRepoAccess"]
            # The examples' TenancyPolicy is for their namespaces: the demo writes its own, for
            # its namespace only (create_tenancy_policy), and never the cluster's "default".
            docs = [d for d in docs if d.get("kind") != "TenancyPolicy"]
            for doc in docs:
                doc.setdefault("metadata", {})["namespace"] = self.namespace
            self.manifests = docs
            if self.example_of("RegistryCredential") is None:
                raise DemoFailure(f"no RegistryCredential among {self.options.examples}/*.yaml")
            s.detail = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)

    def example_of(self, kind: str) -> dict[str, Any] | None:
        return next((d for d in self.manifests if d.get("kind") == kind), None)

    def ours(self) -> list[dict[str, Any]]:
        return [d for d in self.manifests if d.get("kind") in PLURALS]

    def run_plan(self, title: str, *, expect_changes: bool) -> None:
        from controller import plan as planner

        with self.step(title) as s:
            manifests = [planner.Manifest(f"{d['kind']}/{d['metadata']['name']}", copy.deepcopy(d)) for d in self.manifests]
            # The live status (plan --kube): after the operator ran, plan starts from where it left off.
            kube = self.kube
            assert kube is not None
            live = planner.KubeLive(lambda path, accept: kube.get_or_none(path, accept=accept))
            from controller import tenancy

            objects = planner.plan_objects(manifests, default_namespace=self.namespace, cluster_id=DEMO_CLUSTER_ID,
                                           factory=planner.read_only_factory(), live=live,
                                           tenancy_policy=tenancy.from_spec(self.tenancy_policy, self.tenancy_spec()))
            result = planner.Plan(objects, aws=True)
            if not result.valid:
                raise DemoFailure("the examples are invalid:\n" + planner.render_text(result))
            if result.aws_errors:
                raise DemoFailure("plan could not read AWS:\n" + planner.render_text(result))
            changes = [f"{c.action} {c.object}" for o in objects for c in o.changes if c.writes]
            blocked = [f"{c.object}: {c.message}" for o in objects for c in o.changes if c.action in (planner.BLOCKED, planner.CONFLICT)]
            if blocked:
                raise DemoFailure("plan found blocked objects: " + "; ".join(blocked))
            if expect_changes and not changes:
                raise DemoFailure("expected plan to list changes before the operator ran; it listed none")
            if not expect_changes and changes:
                raise DemoFailure("expected no change after the operator converged; plan lists: " + "; ".join(changes))
            s.detail = ("; ".join(changes)) if changes else "no changes: AWS is in the declared state"

    def start_operator(self) -> None:
        from controller.demo import controlplane

        with self.step("Start the operator (python -m controller run)") as s:
            port = controlplane.free_port()
            log = Path(tempfile.mkdtemp(prefix="regaccess-demo-")) / "operator.log"
            self.operator_log = log
            env = {k: v for k, v in os.environ.items() if not k.startswith("REGACCESS_")}
            env.update(self.env)
            if self.kubeconfig:
                env["KUBECONFIG"] = self.kubeconfig
            env.update({"REGACCESS_CLUSTER_ID": DEMO_CLUSTER_ID, "REGACCESS_DRIFT_INTERVAL": DRIFT_INTERVAL,
                        "REGACCESS_METRICS_BIND": "127.0.0.1",
                        "REGACCESS_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"})
            args = [sys.executable, "-m", "controller", "run", "-n", self.namespace, "--metrics-port", str(port),
                    "--tenancy-policy", self.tenancy_policy]
            handle = open(log, "ab")
            self.stack.callback(handle.close)
            self.operator = subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                             cwd=str(REPO_ROOT), start_new_session=True)
            self.stack.callback(self._stop_operator)

            def ready() -> bool:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                        return response.status == 200
                except (urllib.error.URLError, OSError):
                    return False

            self.wait("the operator's /readyz", ready, OPERATOR_READY_TIMEOUT)
            s.detail = f"pid {self.operator.pid}, watching {self.namespace}, drift checks every {DRIFT_INTERVAL}s, log {log}"

    def _stop_operator(self) -> None:
        proc = self.operator
        self.operator = None  # from here on an exit is expected
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def apply_examples(self) -> None:
        assert self.kube is not None
        with self.step("Apply the examples") as s:
            # Secrets first: a RegistryCredential's source must be there when it is reconciled.
            ordered = sorted(self.manifests, key=lambda d: d.get("kind") in PLURALS)
            for doc in ordered:
                self.kube.create(object_path(doc, self.namespace), doc)
            s.detail = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in ordered)

    def rows(self) -> tuple[list[tuple[str, ...]], dict[str, dict[str, Any] | None]]:
        assert self.kube is not None
        rows, objects = [], {}
        for doc in self.ours():
            label = f"{doc['kind']}/{doc['metadata']['name']}"
            obj = self.kube.get_or_none(object_path(doc, self.namespace, with_name=True))
            objects[label] = obj
            if obj is None:
                rows.append((label, "-", "-", "-", "deleted"))
                continue
            ready, synced, drifted = (condition(obj, t) for t in ("Ready", "Synced", "Drifted"))
            message = ready.get("reason", "pending")
            if ready.get("message"):
                message += ": " + ready["message"][:70]
            rows.append((label, ready.get("status", "?"), synced.get("status", "?"), drifted.get("status", "?"), message))
        return rows, objects

    def poll_events(self) -> list[dict[str, Any]]:
        assert self.kube is not None
        events = self.kube.events(self.namespace)
        for event in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
            uid = event["metadata"]["uid"] + str(event.get("count"))
            if uid not in self.seen_events:
                self.seen_events.add(uid)
                involved = event.get("involvedObject", {})
                self.view.event(f"{event.get('type')} {event.get('reason')} {involved.get('kind')}/{involved.get('name')}: "
                                f"{(event.get('message') or '')[:120]}")
        return events

    def converge(self) -> None:
        with self.step("Wait for every resource to become Ready") as s:
            def all_ready() -> bool:
                rows, objects = self.rows()
                self.view.resources(rows)
                self.poll_events()
                for label, obj in objects.items():
                    ready = condition(obj, "Ready")
                    # Terminal problems will not fix themselves: fail at once with the reason.
                    if ready.get("status") == "False" and ready.get("reason") in TERMINAL_REASONS:
                        raise DemoFailure(f"{label} is not Ready: {ready.get('reason')}: {ready.get('message')}")
                return all(condition(o, "Ready").get("status") == "True" for o in objects.values())

            self.wait("Ready=True on " + ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in self.ours()),
                      all_ready, CONVERGE_TIMEOUT)
            s.detail = "all Ready"

    def verify_aws(self) -> None:
        assert self.prepared is not None
        with self.step("Check AWS: secret, inline policy, task definition, repository policies") as s:
            rc = self.rc_object()
            status = rc.get("status") or {}
            arn, name = status.get("secretArn"), status.get("secretName")
            if not arn:
                raise DemoFailure("status.secretArn is empty on a Ready RegistryCredential")
            expected = self.source_credential()
            value = json.loads(self.boto("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])
            if value != expected:
                raise DemoFailure(f"secret {name} does not hold the source Secret's username/password")
            self.check_policy(arn)
            self.check_task_definition(arn)
            repos = self.check_repository_policies(present=True)
            s.detail = (f"secret {name}; policy on {self.prepared.role_name}; {self.prepared.family} app -> secret, "
                        f"log-router untouched" + (f"; {repos}" if repos else ""))

    def rc_object(self) -> dict[str, Any]:
        assert self.kube is not None
        rc = self.example_of("RegistryCredential")
        assert rc is not None
        return self.kube.get(object_path(rc, self.namespace, with_name=True))

    def source_credential(self) -> dict[str, str]:
        rc = self.example_of("RegistryCredential")
        assert rc is not None
        ref = rc["spec"]["source"]["secretRef"]["name"]
        secret = next(d for d in self.manifests if d.get("kind") == "Secret" and d["metadata"]["name"] == ref)
        data = dict(secret.get("stringData") or {})
        for key, raw in (secret.get("data") or {}).items():
            data.setdefault(key, base64.b64decode(raw).decode())
        return {"username": data.get("username", ""), "password": data.get("password", "")}

    def policy_name(self) -> str:
        rc = self.example_of("RegistryCredential")
        assert rc is not None
        return rc["spec"].get("grants", {}).get("policyName") or f"regaccess-{self.namespace}-{rc['metadata']['name']}"

    def current_policy(self) -> dict[str, Any] | None:
        from controller.aws import policydoc

        assert self.prepared is not None
        try:
            document = self.boto("iam").get_role_policy(RoleName=self.prepared.role_name,
                                                        PolicyName=self.policy_name())["PolicyDocument"]
        except Exception as error:  # noqa: BLE001
            if "NoSuchEntity" in str(error):
                return None
            raise
        return policydoc.parse(document)

    def check_policy(self, secret_arn: str) -> None:
        from controller.aws import iam_policies

        have = self.current_policy()
        want = iam_policies.desired(secret_arn)
        # What it grants, not its Sids: those carry the owner's mark.
        if have is None or not iam_policies.same_grants(want, have):
            raise DemoFailure(f"inline policy {self.policy_name()} on {self.prepared.role_name} is "  # type: ignore[union-attr]
                              f"{json.dumps(have)}; expected read access to exactly {secret_arn}")

    def check_task_definition(self, secret_arn: str) -> None:
        assert self.prepared is not None
        latest = self.boto("ecs").describe_task_definition(taskDefinition=self.prepared.family)["taskDefinition"]
        containers = {c["name"]: c for c in latest["containerDefinitions"]}
        app = (containers.get("app", {}).get("repositoryCredentials") or {}).get("credentialsParameter")
        if app != secret_arn:
            raise DemoFailure(f"task definition {latest['family']}:{latest['revision']} container app references "
                              f"{app!r}, expected {secret_arn}")
        if containers.get("log-router", {}).get("repositoryCredentials"):
            raise DemoFailure("container log-router was not listed in the spec but got repositoryCredentials")

    def check_repository_policies(self, *, present: bool) -> str:
        from controller.aws import repository_policies as rp

        assert self.prepared is not None
        xrepo = self.example_of("CrossAccountRepoAccess")
        if xrepo is None or not self.prepared.repositories:
            return ""
        prefix = rp.sid_prefix(DEMO_CLUSTER_ID, self.namespace, xrepo["metadata"]["name"])
        ecr = self.boto("ecr", self.prepared.repository_region)
        found = []
        for index, repository in enumerate(self.prepared.repositories):
            try:
                text = ecr.get_repository_policy(repositoryName=repository)["policyText"]
            except ecr.exceptions.RepositoryPolicyNotFoundException:
                text = None
            statements = json.loads(text)["Statement"] if text else []
            owned = [s for s in statements if str(s.get("Sid", "")).startswith(prefix)]
            if present and not owned:
                raise DemoFailure(f"repository {repository} has no statement of this CrossAccountRepoAccess")
            if not present and owned:
                raise DemoFailure(f"repository {repository} still has {len(owned)} owned statement(s) after deletion")
            if index == 0 and not any(s.get("Sid") == FOREIGN_SID for s in statements):
                raise DemoFailure(f"statement {FOREIGN_SID} of repository {repository}, owned by someone else, was lost")
            found.append(f"{repository}: {len(owned)} owned")
        return ", ".join(found) + f", {FOREIGN_SID} kept"

    def drift(self) -> None:
        assert self.prepared is not None
        with self.step("Change AWS behind the operator's back") as s:
            rc = self.rc_object()
            arn = rc["status"]["secretArn"]
            # Edited as a person would in the console: the read statement widened, its Sid
            # (the operator's ownership mark) kept, so the operator repairs it as drift.
            from controller.aws import policydoc

            read = dict(policydoc.statements(self.current_policy())[0])
            widened = {"Version": "2012-10-17", "Statement": [
                {**read, "Action": DRIFT_WIDENED_ACTION, "Resource": "*"}]}
            self.boto("iam").put_role_policy(RoleName=self.prepared.role_name, PolicyName=self.policy_name(),
                                             PolicyDocument=json.dumps(widened))
            self.boto("secretsmanager").put_secret_value(SecretId=arn, SecretString=DRIFT_VALUE)
            s.detail = (f"inline policy widened to {DRIFT_WIDENED_ACTION} on *; a different value put in "
                        f"{rc['status']['secretName']}")
        with self.step("Wait for DriftDetected and the repair") as s:
            def repaired() -> bool:
                rows, _ = self.rows()
                self.view.resources(rows)
                events = self.poll_events()
                detected = [e for e in events if e.get("reason") == "DriftDetected"]
                if not detected:
                    return False
                value = json.loads(self.boto("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])
                if value != self.source_credential():
                    return False
                self.check_policy(arn)
                return True

            def policy_repaired_or_raise() -> bool:
                try:
                    return repaired()
                except DemoFailure:
                    return False  # the policy is not repaired yet: keep waiting

            self.wait("a DriftDetected Event, the inline policy restored and the secret value restored",
                      policy_repaired_or_raise, DRIFT_TIMEOUT)
            drifted = [f"{d.get('object')}.{d.get('field')}" for d in (self.rc_object().get("status") or {}).get("drift") or []]
            s.detail = "repaired: " + ", ".join(sorted(set(drifted)))

    def delete_resources(self) -> None:
        assert self.kube is not None and self.prepared is not None
        with self.step("Delete the resources and check AWS is cleaned up") as s:
            secret_name = (self.rc_object().get("status") or {}).get("secretName")
            for doc in self.ours():
                self.kube.delete(object_path(doc, self.namespace, with_name=True))

            def gone() -> bool:
                rows, objects = self.rows()
                self.view.resources(rows)
                self.poll_events()
                return all(o is None for o in objects.values())

            self.wait("the resources to be deleted (finalizers released)", gone, DELETE_TIMEOUT)
            if self.current_policy() is not None:
                raise DemoFailure(f"inline policy {self.policy_name()} is still on role {self.prepared.role_name}")
            sm = self.boto("secretsmanager")
            try:
                described = sm.describe_secret(SecretId=secret_name)
            except sm.exceptions.ResourceNotFoundException:
                described = None
            if described is not None and not described.get("DeletedDate"):
                raise DemoFailure(f"secret {secret_name} still exists after deletion")
            repos = self.check_repository_policies(present=False)
            s.detail = f"secret {secret_name} deleted, inline policy removed" + (f"; {repos}" if repos else "")

    def fail_report(self, error: DemoFailure) -> None:
        self.view.note(f"\nregaccess demo FAILED: {error}")
        if self.operator_log and self.operator_log.exists():
            tail = self.operator_log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            self.view.note(f"last {len(tail)} lines of the operator's log ({self.operator_log}):")
            for line in tail:
                self.view.note("  " + line)

    def run(self) -> int:
        started = time.monotonic()
        try:
            with self.stack:
                self.load_examples()
                self.start_aws()
                self.prepare_aws()
                self.start_kubernetes()
                self.install_crds()
                self.create_namespace()
                self.create_tenancy_policy()
                self.run_plan("Plan the examples (regaccess plan, read-only)", expect_changes=True)
                self.start_operator()
                self.apply_examples()
                self.converge()
                self.verify_aws()
                self.run_plan("Plan again: the operator left nothing to do", expect_changes=False)
                self.drift()
                self.delete_resources()
                with self.step("Stop the operator and clean up") as s:
                    self._stop_operator()
                    s.detail = "operator stopped; namespace, control plane and AWS stand-in go next"
        except DemoFailure as error:
            self.view.close()
            self.fail_report(error)
            return EXIT_FAILED
        except KeyboardInterrupt:
            self.view.close()
            self.view.note("interrupted; everything the demo started was stopped")
            return EXIT_FAILED
        self.view.close()
        self.view.note(f"\nregaccess demo passed: every step verified in {time.monotonic() - started:.0f}s")
        return EXIT_OK


# Ready=False reasons that will not clear by waiting (see docs/conditions.md).
TERMINAL_REASONS = frozenset({
    reasons.INVALID_SPEC, reasons.INVALID_SECRET_NAME, reasons.INVALID_DELETION_SETTINGS,
    reasons.SOURCE_SECRET_INVALID, reasons.SOURCE_KEY_MISSING, reasons.SOURCE_REGISTRY_NOT_FOUND,
    reasons.SECRET_VALUE_TOO_LARGE, reasons.INVALID_POLICY_NAME, reasons.INVALID_PULL_THROUGH_CACHE,
    reasons.INVALID_GRANT, reasons.INVALID_REPOSITORY_NAME, reasons.REPOSITORY_POLICY_TOO_LARGE,
    reasons.OWNERSHIP_CONFLICT, reasons.AWS_ACCESS_DENIED, reasons.AWS_REJECTED, reasons.POLICY_BUDGET_EXCEEDED,
    reasons.CONTAINER_NOT_FOUND, reasons.UNSUPPORTED_JOB_DEFINITION, reasons.EXECUTION_ROLE_MISSING,
    reasons.EXECUTION_ROLE_NOT_GRANTED,
})


def run(options: Options) -> int:
    """Run the demo with its view; the exit code says whether every step was verified."""
    live = options.live if options.live is not None else sys.stdout.isatty()
    return Demo(options, View(live=live)).run()
