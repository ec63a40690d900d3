"""Helpers shared by the end-to-end tests of the wiring, pull-through cache and
cross-account features (tests/e2e/test_wiring*.py, test_pull_through_cache.py,
test_cross_account.py).

They drive the operator only through the Kubernetes API (as a GitOps user
does) and look at AWS only through boto3 and the harness's call record, never
through the operator's internals.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Callable

from controller.api.models import API_VERSION, CROSS_ACCOUNT_REPO_ACCESS, REGISTRY_CREDENTIAL
from tests.e2e.kube import ApiError, Kube, condition, wait_for

RC = REGISTRY_CREDENTIAL.plural
XREPO = CROSS_ACCOUNT_REPO_ACCESS.plural
ACCOUNT = "123456789012"  # moto's default account

# Generous but bounded: the machine is shared, and kopf retries have their own delays.
SETTLE = 45
# The operator's drift interval in the e2e tier is 4 s (+ up to 10 % jitter); two
# checks and the status patch fit well inside this.
DRIFT_WAIT = 30


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def basic_auth_secret(namespace: str, name: str, username: str = "robot", password: str = "pw-e2e-kinds") -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"username": b64(username), "password": b64(password)}}


def custom_resource(kind: str, namespace: str, name: str, spec: dict) -> dict:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def rc_path(namespace: str, name: str | None = None) -> str:
    return Kube.rc_path(namespace, name, plural=RC)


def xrepo_path(namespace: str, name: str | None = None) -> str:
    return Kube.rc_path(namespace, name, plural=XREPO)


def wait_condition(kube: Kube, path: str, *, status: str | None = None, reason: str | None = None,
                   timeout: float = SETTLE, what: str = "") -> dict:
    """Wait until the Ready condition has the given status and/or reason; returns the object."""
    def check() -> dict | None:
        obj = kube.get(path)
        ready = condition(obj, "Ready")
        if status is not None and ready.get("status") != status:
            return None
        if reason is not None and ready.get("reason") != reason:
            return None
        return obj
    try:
        return wait_for(check, timeout, what or f"{path} Ready status={status} reason={reason}")
    except AssertionError as error:
        # Say where it got stuck: the last Ready condition and the managed rows.
        last = (kube.get_or_none(path) or {}).get("status") or {}
        ready = next((c for c in last.get("conditions") or [] if c.get("type") == "Ready"), None)
        raise AssertionError(f"{error}; last Ready: {ready}; managed: {last.get('managed')}") from None


def wait_ready(kube: Kube, path: str, timeout: float = SETTLE) -> dict:
    return wait_condition(kube, path, status="True", timeout=timeout, what=f"{path} Ready")


def warnings(kube: Kube, namespace: str, name: str) -> set[str]:
    """Reasons of the Warning Events about one object."""
    return {e["reason"] for e in kube.events_for(namespace, name) if e.get("type") == "Warning"}


def wait_warning(kube: Kube, namespace: str, name: str, reason: str, timeout: float = 15) -> None:
    # Events are posted right after the status patch; give them a moment.
    wait_for(lambda: reason in warnings(kube, namespace, name), timeout, f"Warning Event {reason} on {name}")


def managed(obj: dict) -> dict[tuple[str, str], dict]:
    """status.managed rows by (kind, name)."""
    return {(row["kind"], row["name"]): row for row in (obj.get("status") or {}).get("managed") or []}


def quiet_resync(kube: Kube, paths: list[str], timeout: float = DRIFT_WAIT) -> Callable[[Any], int]:
    """Wait for every object to finish one drift check, then for another that started after.

    Returns a function of the call record giving the mark (the last sequence number
    seen when the first round of checks had completed), so the caller can look at
    exactly the calls of a whole later drift check of each object.
    """
    def stamp(path: str) -> str | None:
        return (kube.get(path).get("status") or {}).get("lastDriftCheckTime")

    def next_round(previous: dict[str, str | None], what: str) -> dict[str, str | None]:
        wait_for(lambda: all(stamp(p) not in (None, previous[p]) for p in paths), timeout, what, interval=0.5)
        return {p: stamp(p) for p in paths}

    first = next_round({p: stamp(p) for p in paths}, "a first drift check")

    def after(calls: Any) -> int:
        mark = calls.mark()
        next_round(first, "a second drift check")
        return mark

    return after


def delete_all(kube: Kube, namespace: str, timeout: float = 60) -> None:
    """Delete every custom resource of the namespace and wait (bounded) for the finalizers.

    Keeps later tests (and modules) free of resources whose drift checks would add
    AWS calls to the shared call record.
    """
    paths = []
    for plural in (RC, XREPO):
        try:
            items = kube.get(Kube.rc_path(namespace, plural=plural))["items"]
        except ApiError:
            continue
        for item in items:
            path = Kube.rc_path(namespace, item["metadata"]["name"], plural=plural)
            kube.delete(path)
            paths.append(path)
    deadline = time.monotonic() + timeout
    while paths and time.monotonic() < deadline:
        paths = [p for p in paths if kube.get_or_none(p) is not None]
        time.sleep(0.5)


def log_records(op, namespace: str) -> list[dict]:
    """The JSON log records of an operator process about resources in ``namespace``."""
    records = []
    for line in op.log_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("namespace") == namespace:
            records.append(record)
    return records


def reconciled(op, namespace: str) -> dict[str, list[str]]:
    """name -> triggers of the reconciles this operator logged, in order."""
    seen: dict[str, list[str]] = {}
    for record in log_records(op, namespace):
        if record.get("event") == "reconciled":
            seen.setdefault(record["name"], []).append(record.get("trigger"))
    return seen
