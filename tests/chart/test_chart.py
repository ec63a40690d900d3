"""The Helm chart, linted and rendered by the real Helm engine (helm-python-sdk).

Default values and a matrix of settings (namespaced list, IRSA, two replicas, ServiceMonitor
and PrometheusRule, dashboard); values.schema.json refuses bad values the way
``helm install`` does; the chart's CRDs are the repository's, byte for byte; every
``regaccess run`` option is reachable from values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.settings import RUN_OPTIONS, add_run_arguments, settings_from_args
from tests.chart.helmchart import CHART, NAMESPACE, REPO, crds, env_of, find, helm, one, render

IRSA = "arn:aws:iam::111122223333:role/regaccess-operator"

MATRIX = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "irsa": {"serviceAccount": {"irsaRoleArn": IRSA}, "aws": {"region": "eu-west-1"}, "clusterId": "prod-eu-1",
             "sourceSecrets": {"labelSelector": "regaccess.io/source=true"}},
    "replicas-2": {"replicaCount": 2},
    "namespaced-replicas-2": {"replicaCount": 2, "watchNamespaces": ["team-a"]},
    "monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
                   "prometheusRule": {"enabled": True}},
    "dashboard": {"dashboard": {"enabled": True}},
    "digest": {"image": {"repository": "registry.example/regaccess", "tag": "ignored", "digest": "sha256:" + "a" * 64}},
    "network-policy": {"metrics": {"networkPolicy": {"enabled": True, "from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}}},
}


@pytest.mark.parametrize("values", list(MATRIX.values()), ids=list(MATRIX))
def test_lint_is_clean(values):
    report = helm().lint(CHART, values, strict=True, namespace=NAMESPACE)
    assert report["errors"] == [], report
    # Severity 2 = warning, 3 = error; info (1) such as "icon is recommended" is fine.
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("values", list(MATRIX.values()), ids=list(MATRIX))
def test_deployment_is_hardened(values):
    deployment = one(render(values), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    port = next(p for p in container["ports"] if p["name"] == "metrics")["containerPort"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert env_of(deployment)["REGACCESS_METRICS_PORT"] == str(port)
    assert pod["serviceAccountName"] == "regaccess-operator"


def test_defaults_watch_all_namespaces_with_a_cluster_role():
    docs = render()
    assert env_of(one(docs, "Deployment"))["REGACCESS_ALL_NAMESPACES"] == "true"
    assert find(docs, "Role") == [] and find(docs, "RoleBinding") == []
    role = one(docs, "ClusterRole")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"registrycredentials", "registrycredentials/status", "secrets", "events"} <= resources
    assert "namespaces" not in resources  # kopf does not scan namespaces when cluster-wide
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert find(docs, "ClusterKopfPeering") == [] and find(docs, "ServiceMonitor") == []
    assert find(docs, "PrometheusRule") == [] and find(docs, "ConfigMap") == []
    sa = one(docs, "ServiceAccount")
    assert sa["metadata"]["namespace"] == NAMESPACE and not sa["metadata"].get("annotations")
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "regaccess-operator", "namespace": NAMESPACE}]


def test_namespaced_mode_grants_per_namespace():
    docs = render(MATRIX["namespaced"])
    assert env_of(one(docs, "Deployment"))["REGACCESS_NAMESPACE"] == "team-a,team-b"
    assert "REGACCESS_ALL_NAMESPACES" not in env_of(one(docs, "Deployment"))
    roles = find(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in find(docs, "RoleBinding")) == ["team-a", "team-b"]
    cluster = one(docs, "ClusterRole")
    cluster_resources = {r for rule in cluster["rules"] for r in rule["resources"]}
    # Only the cluster-scoped minimum: nothing namespaced is granted cluster-wide.
    assert cluster_resources == {"customresourcedefinitions", "namespaces", "tenancypolicies"}
    for role in roles:
        assert {r for rule in role["rules"] for r in rule["resources"]} >= {"secrets", "registrycredentials"}


def test_irsa_annotation_region_and_cluster_id():
    docs = render(MATRIX["irsa"])
    assert one(docs, "ServiceAccount")["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": IRSA}
    env = env_of(one(docs, "Deployment"))
    assert env["AWS_REGION"] == "eu-west-1" and env["REGACCESS_CLUSTER_ID"] == "prod-eu-1"


@pytest.mark.parametrize("values, peering_kind, namespaces", [
    (MATRIX["replicas-2"], "ClusterKopfPeering", [None]),
    (MATRIX["namespaced-replicas-2"], "KopfPeering", ["team-a"]),
    ({"peering": {"enabled": True, "name": "ops"}}, "ClusterKopfPeering", [None]),
], ids=["cluster", "namespaced", "enabled-one-replica"])
def test_peering(values, peering_kind, namespaces):
    docs = render(values)
    deployment = one(docs, "Deployment")
    name = (values.get("peering") or {}).get("name", "regaccess")
    assert env_of(deployment)["REGACCESS_PEERING"] == name
    assert "strategy" not in deployment["spec"]  # rolling updates are safe with peering
    peerings = find(docs, peering_kind)
    assert [p["metadata"].get("namespace") for p in peerings] == namespaces
    assert all(p["metadata"]["name"] == name for p in peerings)
    roles = find(docs, "Role") or find(docs, "ClusterRole")
    plural = peering_kind.lower() + "s"
    patch_rules = [r for role in roles for r in role["rules"] if plural in r["resources"] and "patch" in r["verbs"]]
    assert patch_rules and all(r["resourceNames"] == [name] for r in patch_rules)
    if values.get("replicaCount", 1) > 1:
        assert "podAntiAffinity" in deployment["spec"]["template"]["spec"]["affinity"]


def test_monitoring_objects():
    docs = render(MATRIX["monitoring"])
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    rule = one(docs, "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == {"RegaccessOperatorDown", "RegaccessReconcileErrorsSustained", "RegaccessDriftNotRemediated",
                      "RegaccessAwsThrottlingSustained", "RegaccessDriftChecksStale", "RegaccessPullSecretExpiring",
                      "RegaccessDriftEventsSilent"}
    for g in rule["spec"]["groups"]:
        for r in g["rules"]:
            assert r["annotations"]["runbook"] and r["annotations"]["runbook_url"].endswith("#" + r["alert"].lower())


def test_image_by_digest_wins_over_the_tag():
    (container,) = one(render(MATRIX["digest"]), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/regaccess@sha256:" + "a" * 64
    (default,) = one(render({}), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "@" not in default["image"] and default["image"].startswith("regaccess:")


def test_network_policy_admits_only_the_metrics_port_from_the_listed_peers():
    assert not find(render({}), "NetworkPolicy")  # off by default
    docs = render(MATRIX["network-policy"])
    policy = one(docs, "NetworkPolicy")["spec"]
    pod = one(docs, "Deployment")["spec"]["template"]
    assert policy["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress"]  # egress (API server, AWS) untouched
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert "metrics" in {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert rule["from"] == MATRIX["network-policy"]["metrics"]["networkPolicy"]["from"]
    # Without peers: the metrics port from anywhere, still no other port.
    open_policy = one(render({"metrics": {"networkPolicy": {"enabled": True}}}), "NetworkPolicy")["spec"]
    assert open_policy["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]


def test_dashboard_configmap_carries_the_repository_json():
    docs = render(MATRIX["dashboard"])
    cm = one(docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    on_disk = json.loads((CHART / "dashboards" / "regaccess.json").read_text())
    assert json.loads(cm["data"]["regaccess.json"]) == on_disk


def test_chart_crds_are_the_repository_crds():
    repo_crds = sorted((REPO / "crds").glob("*.yaml"))
    assert repo_crds
    for path in repo_crds:
        copy = CHART / "crds" / path.name
        assert copy.exists(), f"charts/regaccess/crds/{path.name} missing"
        assert copy.read_bytes() == path.read_bytes(), f"charts/regaccess/crds/{path.name} differs from crds/"
    extra = {p.name for p in (CHART / "crds").glob("*.yaml")} - {p.name for p in repo_crds}
    assert extra == {"kopf.dev_peerings.yaml"}
    names = {d["metadata"]["name"] for d in crds()}  # Helm loads all of them
    assert names == {"registrycredentials.regaccess.io", "crossaccountrepoaccesses.regaccess.io",
                     "ecrpullsecrets.regaccess.io", "tenancypolicies.regaccess.io", "clusterkopfpeerings.kopf.dev",
                     "kopfpeerings.kopf.dev"}


def test_every_run_option_is_set_from_values_and_parses():
    """The Deployment's env sets every option of controller/settings.py, and the operator's own
    parser accepts the rendered values."""
    env = env_of(one(render(MATRIX["irsa"]), "Deployment"))
    for option in RUN_OPTIONS:
        assert option.env in env, f"the chart does not set {option.env}"
    import argparse

    parser = argparse.ArgumentParser()
    add_run_arguments(parser, env)
    settings = settings_from_args(parser.parse_args([]), env)
    assert settings.all_namespaces and settings.cluster_id == "prod-eu-1"
    assert settings.source_secret_selector == "regaccess.io/source=true"
    # The opt-in is on by default (issue 30 §4), and the chart's value reaches the operator.
    assert str(settings.opt_in) == "regaccess.io/source=true"
    annotation_env = env_of(one(render({"sourceSecrets": {"optIn": "annotation:example.com/copy=yes"}}), "Deployment"))
    assert annotation_env["REGACCESS_SOURCE_SECRET_OPT_IN"] == "annotation:example.com/copy=yes"
    assert settings.drift_interval == 300 and settings.metrics_port == 8080 and settings.peering == ""
    assert settings.drift_events_queue_urls == () and settings.check_interval == 300
    urls = ["https://sqs.eu-west-1.amazonaws.com/111122223333/q", "https://sqs.us-east-1.amazonaws.com/111122223333/q"]
    events_env = env_of(one(render({"driftEvents": {"queueUrls": urls, "backstopInterval": 1800}}), "Deployment"))
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, events_env)
    events = settings_from_args(parser.parse_args([]), events_env)
    assert events.drift_events_queue_urls == tuple(urls) and events.check_interval == 1800
    ns_env = env_of(one(render(MATRIX["namespaced"]), "Deployment"))
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, ns_env)
    assert settings_from_args(parser.parse_args([]), ns_env).namespaces == ("team-a", "team-b")


def _schema_field(schema: dict, path: list[str]) -> bool:
    """Is ``path`` a named field of values.schema.json (not a key inside a free-form map)?"""
    node = schema
    for key in path:
        props = node.get("properties") or {}
        if key not in props:
            return False
        node = props[key]
    return True


def test_values_yaml_documents_every_field():
    """Every field of values.yaml that the schema names has a comment right above it
    (blocks whose children are all documented count as documented)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    checked = 0
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        key = stripped.split(":", 1)[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [key]
        stack.append((indent, key))
        if not _schema_field(schema, path) or stripped.endswith(":"):
            continue
        checked += 1
        assert lines[i - 1].strip().startswith("#"), f"values.yaml line {i + 1} ({'.'.join(path)}) is not documented"
    assert checked > 40
    # And the other way round: every schema field exists in values.yaml (no undocumented knobs).
    def leaves(node: dict, prefix: tuple = ()):
        for key, sub in (node.get("properties") or {}).items():
            if key == "global":
                continue
            if sub.get("properties"):
                yield from leaves(sub, prefix + (key,))
            else:
                yield prefix + (key,)
    defaults = helm().Chart.load(CHART).values
    for path in leaves(schema):
        node = defaults
        for key in path:
            assert isinstance(node, dict) and key in node, f"schema field {'.'.join(path)} missing from values.yaml"
            node = node[key]


BAD_VALUES = {
    "replicas-string": {"replicaCount": "two"},
    "replicas-negative": {"replicaCount": -1},
    "log-level-unknown": {"operator": {"logLevel": "VERBOSE"}},
    "log-format-unknown": {"operator": {"logFormat": "xml"}},
    "drift-interval-zero": {"operator": {"driftInterval": 0}},
    "workers-zero": {"operator": {"workers": 0}},
    "retry-mode-unknown": {"aws": {"retryMode": "aggressive"}},
    "max-attempts-string": {"aws": {"maxAttempts": "five"}},
    "port-out-of-range": {"metrics": {"port": 70000}},
    "namespaces-not-a-list": {"watchNamespaces": "team-a"},
    "namespace-invalid": {"watchNamespaces": ["Team_A"]},
    "irsa-not-a-role-arn": {"serviceAccount": {"irsaRoleArn": "my-role"}},
    "unknown-top-level-key": {"replicas": 2},
    "unknown-nested-key": {"operator": {"driftIntervall": 60}},
    "pull-policy-unknown": {"image": {"pullPolicy": "Sometimes"}},
    "service-monitor-flag-string": {"serviceMonitor": {"enabled": "yes"}},
    "digest-not-sha256": {"image": {"digest": "latest"}},
    "source-selector-not-a-string": {"sourceSecrets": {"labelSelector": ["a=b"]}},
    "cluster-id-slash": {"clusterId": "prod/eu"},
    "cluster-id-star": {"clusterId": "prod*"},
    "cluster-id-question": {"clusterId": "prod?"},
    "cluster-id-space": {"clusterId": "prod eu"},
    "cluster-id-empty": {"clusterId": ""},
    "cluster-id-too-long": {"clusterId": "c" * 64},
    "opt-in-empty": {"sourceSecrets": {"optIn": ""}},
    "opt-in-no-value": {"sourceSecrets": {"optIn": "regaccess.io/source"}},
    "opt-in-a-selector": {"sourceSecrets": {"optIn": "a=b,c=d"}},
    "digest-short": {"image": {"digest": "sha256:abc"}},
    "network-policy-from-not-a-list": {"metrics": {"networkPolicy": {"enabled": True, "from": {"podSelector": {}}}}},
}


@pytest.mark.parametrize("values", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_schema_rejects_bad_values(values):
    h = helm()
    with h.Chart.load(CHART) as chart:
        with pytest.raises(h.HelmValuesError):
            chart.validate_schema(values)
    # lint runs the same schema: a bad value is an error there too (what `helm install` reports).
    report = h.lint(CHART, values, namespace=NAMESPACE)
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"]), report


@pytest.mark.parametrize("values", list(MATRIX.values()), ids=list(MATRIX))
def test_schema_accepts_the_matrix(values):
    h = helm()
    with h.Chart.load(CHART) as chart:
        chart.validate_schema(values)


def test_dockerfile_matches_the_chart():
    """Docker is not available to the tests; check the recipe against what the chart expects."""
    import tomllib

    text = (REPO / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith(("#", " "))]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    uid = pod["securityContext"]["runAsUser"]
    assert ["USER", f"{uid}:{pod['securityContext']['runAsGroup']}"] in instructions  # numeric: runAsNonRoot can check it
    assert "pip install --no-deps --no-build-isolation ." in text  # the package; its dependencies from the lock
    entrypoint = json.loads(next(v for k, v in instructions if k == "ENTRYPOINT"))
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["regaccess"] and "regaccess" in scripts
    assert pod["containers"][0]["args"][0] == "run"
    copied = [p for k, v in instructions if k == "COPY" for p in v.split()[:-1]]
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for path in copied:
        assert (REPO / path).exists() and path not in ignored, path


@pytest.mark.parametrize("values, peering", [({"shards": ["a", "b"]}, False),
                                             ({"shards": ["a", "b"], "replicaCount": 2}, True)],
                         ids=["standalone", "peering"])
def test_one_deployment_per_shard_plus_the_default_shard(values, peering):
    report = helm().lint(CHART, values, strict=True, namespace=NAMESPACE)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == [], report
    docs = render(values)
    deployments = {d["metadata"]["name"]: d for d in find(docs, "Deployment")}
    assert set(deployments) == {"regaccess", "regaccess-shard-a", "regaccess-shard-b"}
    shards = {name: env_of(d)["REGACCESS_SHARD"] for name, d in deployments.items()}
    assert shards == {"regaccess": "", "regaccess-shard-a": "a", "regaccess-shard-b": "b"}
    # No Deployment selects another's pods (the default keeps its original, immutable selector).
    selectors = {name: d["spec"]["selector"]["matchLabels"] for name, d in deployments.items()}
    assert selectors["regaccess"] == {"app.kubernetes.io/name": "regaccess", "app.kubernetes.io/instance": "regaccess"}
    for name, selector in selectors.items():
        for other, d in deployments.items():
            pod_labels = d["spec"]["template"]["metadata"]["labels"]
            matches = all(pod_labels.get(k) == v for k, v in selector.items())
            assert matches is (name == other), (name, other)
    # One metrics Service per shard, each selecting its own pods.
    services = {s["metadata"]["name"]: s for s in find(docs, "Service")}
    assert set(services) == {"regaccess-metrics", "regaccess-shard-a-metrics", "regaccess-shard-b-metrics"}
    assert services["regaccess-shard-a-metrics"]["spec"]["selector"] == selectors["regaccess-shard-a"]
    names = {name: env_of(d)["REGACCESS_PEERING"] for name, d in deployments.items()}
    if peering:
        # Shards never pause each other: one peering object each, and RBAC for all of them.
        assert names == {"regaccess": "regaccess", "regaccess-shard-a": "regaccess-shard-a",
                         "regaccess-shard-b": "regaccess-shard-b"}
        assert {p["metadata"]["name"] for p in find(docs, "ClusterKopfPeering")} == set(names.values())
        rules = [r for role in find(docs, "ClusterRole") for r in role["rules"] if r.get("resourceNames")]
        assert any(set(r["resourceNames"]) == set(names.values()) for r in rules)
    else:
        assert set(names.values()) == {""}
    import argparse

    for d in deployments.values():
        env = env_of(d)
        parser = argparse.ArgumentParser()
        add_run_arguments(parser, env)
        assert settings_from_args(parser.parse_args([]), env).shard == env["REGACCESS_SHARD"]


def test_schema_cluster_id_is_the_operators_rule():
    """The chart refuses exactly what the operator refuses at start-up (one pattern, twice)."""
    from controller.api.validation import CLUSTER_ID_PATTERN

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["clusterId"]["pattern"] == CLUSTER_ID_PATTERN


def test_schema_refuses_a_shard_name_that_is_no_dns_label():
    h = helm()
    with h.Chart.load(CHART) as chart:
        with pytest.raises(h.HelmValuesError):
            chart.validate_schema({"shards": ["Shard_A"]})


def _tenancy_rules(docs):
    cluster = one(docs, "ClusterRole")
    return [rule for rule in cluster["rules"] if "tenancypolicies" in rule["resources"]]


def test_tenancy_policy_is_read_only_and_rendered_from_values():
    docs = render({})
    assert env_of(one(docs, "Deployment"))["REGACCESS_TENANCY_POLICY"] == "default"
    [rule] = _tenancy_rules(docs)
    assert rule["verbs"] == ["list", "watch"]  # never written by the operator
    assert find(docs, "TenancyPolicy") == []  # create: false, the admin applies their own

    rendered = render({"tenancy": {"create": True, "policyName": "shared", "defaultAction": "Deny",
                                   "default": {"secretNames": ["regaccess/{namespace}/*"]},
                                   "namespaces": {"team-*": {"regions": ["eu-west-1"]}}}})
    policy = one(rendered, "TenancyPolicy")
    assert policy["metadata"]["name"] == "shared" and "namespace" not in policy["metadata"]
    assert policy["spec"] == {"defaultAction": "Deny", "default": {"secretNames": ["regaccess/{namespace}/*"]},
                              "namespaces": {"team-*": {"regions": ["eu-west-1"]}}}
    assert env_of(one(rendered, "Deployment"))["REGACCESS_TENANCY_POLICY"] == "shared"
    # What the chart renders is what the operator parses.
    from controller import tenancy
    assert tenancy.from_spec("shared", policy["spec"]).error is None

    # default left null: the object says nothing, so the shipped default applies, and the
    # chart's defaultAction is Deny (what its comment says): nothing unlisted is opened.
    plain = one(render({"tenancy": {"create": True}}), "TenancyPolicy")["spec"]
    assert "default" not in plain and plain["defaultAction"] == "Deny"
    assert tenancy.from_spec("default", plain) == tenancy.Policy(name="default", default_action="Deny")

    off = render({"tenancy": {"policyName": ""}})
    assert _tenancy_rules(off) == [] and env_of(one(off, "Deployment"))["REGACCESS_TENANCY_POLICY"] == ""
