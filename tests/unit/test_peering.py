"""Unit tests of controller.peering: replicas of one Deployment get distinct priorities."""

from __future__ import annotations

from controller.peering import PRIORITY_SPAN, replica_priority


def test_stable_for_one_replica():
    assert replica_priority("regaccess-7d9f-abcde", 1) == replica_priority("regaccess-7d9f-abcde", 1)


def test_pods_of_one_deployment_differ():
    # In pods the pid is usually 1 for every replica: the pod name must decide.
    names = [f"regaccess-6c8b7d9f4-{suffix}" for suffix in ("x2k9p", "q8wzt", "m4n7r", "b5c6d", "zz9yy")]
    priorities = {replica_priority(name, 1) for name in names}
    assert len(priorities) == len(names)


def test_processes_on_one_host_differ():
    assert replica_priority("laptop", 4242) != replica_priority("laptop", 4243)


def test_range():
    for pid in range(1, 200):
        value = replica_priority("host", pid)
        assert 1 <= value <= PRIORITY_SPAN + 1 < 2**31
