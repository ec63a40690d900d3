"""Sharding end to end: two operators with different ``--shard`` split the resources, and a
relabelled resource is handed over.

Two operator processes (``REGACCESS_SHARD=a`` and ``=b``, ``--drift-interval 3``) on
one real API server. 200 RegistryCredentials (issue 18's figure), half labelled
``regaccess.io/shard: a`` and half ``b``, all become Ready; each operator's log shows reconciles of its own
shard's resources only (none handled by both: the API server filters each watch).
Then one resource of shard a is relabelled to b right after a's drift check of it:
a's filtered watch reports it gone ("left the watch") and a never reconciles it
again, while b's scheduler takes it over (its next drift check is b's, at the due
time status already carries: no check is missed), and each shard's
``regaccess_resources`` counts move with it. A module operator of the default
shard, if running, ignores all of them (they all carry the label).
"""

from __future__ import annotations

import signal

import pytest

from tests.e2e.conftest import start_operator
from tests.e2e.kube import condition, registry_credential, wait_for
from tests.e2e.support import log_records, reconciled
from tests.e2e.test_registry_credential import basic_auth_secret

pytestmark = pytest.mark.e2e

INTERVAL = 3.0
COUNT = 200
SHARD_LABEL = "regaccess.io/shard"


@pytest.fixture(scope="module")
def shards(control_plane, kube, moto_server, tmp_path_factory):
    ops = {name: start_operator(control_plane, moto_server, tmp_path_factory.mktemp(f"shard-{name}"),
                                extra_env={"REGACCESS_SHARD": name, "REGACCESS_DRIFT_INTERVAL": str(INTERVAL)})
           for name in ("a", "b")}
    yield ops
    for op in ops.values():
        op.kill(signal.SIGTERM)


def ready_count(op) -> float:
    """regaccess_resources{kind=RegistryCredential, condition=Ready} summed over status and reason."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(sample.value for family in text_string_to_metric_families(op.metrics())
               for sample in family.samples
               if sample.name == "regaccess_resources" and sample.labels.get("kind") == "RegistryCredential"
               and sample.labels.get("condition") == "Ready")


def test_two_shards_split_the_resources_and_hand_one_over(kube, shards, namespace, aws_e2e):
    kube.create(kube.secret_path(namespace), basic_auth_secret(namespace, "src"))
    owner = {f"cred-{i:02d}": "a" if i % 2 == 0 else "b" for i in range(COUNT)}
    for name, shard in owner.items():
        body = registry_credential(namespace, name, {
            "source": {"secretRef": {"name": "src"}}, "secret": {"forceDeleteWithoutRecovery": True}})
        body["metadata"]["labels"] = {SHARD_LABEL: shard}
        kube.create(kube.rc_path(namespace), body)

    def all_ready():
        items = kube.get(kube.rc_path(namespace))["items"]
        return len(items) == COUNT and all(condition(o, "Ready").get("status") == "True" for o in items)

    wait_for(all_ready, 120, f"{COUNT} RegistryCredentials Ready")
    # Let every resource pass at least one drift check in its shard.
    wait_for(lambda: all(kube.get(kube.rc_path(namespace, n))["status"].get("lastDriftCheckTime") for n in owner),
             60, "a drift check of every resource")

    by_shard = {shard: reconciled(op, namespace) for shard, op in shards.items()}
    for name, shard in owner.items():
        other = "b" if shard == "a" else "a"
        assert by_shard[shard].get(name), f"{name} never reconciled by its shard {shard}"
        assert name not in by_shard[other], f"{name} (shard {shard}) also reconciled by shard {other}"
    assert {t for triggers in by_shard["a"].values() for t in triggers} >= {"create", "drift"}
    # Each shard's metrics count its own resources (only this test labels resources).
    assert (ready_count(shards["a"]), ready_count(shards["b"])) == (COUNT / 2, COUNT / 2)

    # Hand-over: relabel one of shard a's resources right after a checked it.
    moved = "cred-00"
    checked = kube.get(kube.rc_path(namespace, moved))["status"]["lastDriftCheckTime"]
    wait_for(lambda: kube.get(kube.rc_path(namespace, moved))["status"]["lastDriftCheckTime"] != checked,
             30, "shard a's next drift check of the resource")
    before_b = len(reconciled(shards["b"], namespace).get(moved, []))
    kube.merge_patch(kube.rc_path(namespace, moved), {"metadata": {"labels": {SHARD_LABEL: "b"}}})

    def a_let_go():
        records = log_records(shards["a"], namespace)
        return next((i for i, r in enumerate(records) if r.get("event") == "left the watch"
                     and r.get("name") == moved), None)

    wait_for(lambda: a_let_go() is not None, 15, "shard a's watch drops the relabelled resource")
    wait_for(lambda: len(reconciled(shards["b"], namespace).get(moved, [])) > before_b, 30,
             "shard b reconciles the relabelled resource")
    took_over = kube.get(kube.rc_path(namespace, moved))
    assert condition(took_over, "Ready").get("status") == "True"
    # One more interval: a never reconciles it again, b keeps checking it.
    last_b = len(reconciled(shards["b"], namespace)[moved])
    wait_for(lambda: len(reconciled(shards["b"], namespace)[moved]) > last_b, INTERVAL * 1.1 + 20,
             "shard b's next drift check of it")
    records = log_records(shards["a"], namespace)
    after = [r for r in records[a_let_go() + 1:] if r.get("event") == "reconciled" and r.get("name") == moved]
    assert after == [], after
    # The metrics followed: a sum over shards still counts every resource once.
    assert (ready_count(shards["a"]), ready_count(shards["b"])) == (COUNT / 2 - 1, COUNT / 2 + 1)
    # The others stayed where they were.
    still_a = reconciled(shards["a"], namespace)
    assert not any(name in still_a for name, shard in owner.items() if shard == "b")
