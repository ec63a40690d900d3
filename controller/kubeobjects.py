"""Kubernetes-side adapters of the kind protocol (ECRPullSecret's managed objects).

The same protocol as the AWS adapters (``controller.aws.protocol``), so the one
decision (``controller.reconcile.loop.decide``) applies to Kubernetes objects
too. Facts only: which object exists, whose it is, how it differs.

``PULL_SECRETS``: the ``kubernetes.io/dockerconfigjson`` Secret. Ownership:

- **ours**: the annotation ``regaccess.io/owner`` carries our mark
  ``<cluster-id>/<namespace>/<name>`` (annotations, not labels, because a label
  value cannot hold ``/``), or it has no mark but an ownerReference to this very
  ECRPullSecret (same UID);
- **another owner's**: another mark, or an ownerReference to another ECRPullSecret;
- **unmarked**: anything else (a Secret a person or another tool made).

Our Secret also carries the label ``app.kubernetes.io/managed-by: regaccess``,
an ownerReference to the ECRPullSecret (garbage collection is the backstop of
the delete handler), the annotation ``regaccess.io/expires-at`` and
``regaccess.io/content-sha256``, the SHA-256 of the ``.dockerconfigjson`` it
wrote: a hand edit of the data shows as a difference without the operator
keeping any token anywhere but in the Secret. Differences never carry a value
(``"<value>"``), and the observation keeps no data, only its digest.

``IMAGE_PULL_SECRETS``: one entry, naming our Secret, in a ServiceAccount's
``imagePullSecrets``. The managed object is the entry: it exists or not; an
entry naming our Secret is ours. Writes are merge patches of that list guarded
by the ServiceAccount's resourceVersion (a concurrent change is a 409 and the
next pass reads again), so nothing else of the ServiceAccount changes. A
ServiceAccount that does not exist is reported in ``observed`` (None) for the
step to judge; the adapter never creates one.

The client is ``controller.kubeclient.Client`` with the operator's own
credentials (``controller.kubeapi.client_for``); its ``ApiError`` is classified
by ``controller.kubeerrors`` into the same classes as an AWS error.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from controller.api.models import API_VERSION, GROUP
from controller.aws.ecr_tokens import Token
from controller.aws.protocol import OWNER_TAG, Action, Difference, Observation, Owner, Written, owner_of_mark
from controller.kubeclient import ApiError, core_path
from controller.logging import REDACTOR

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DATA_KEY = ".dockerconfigjson"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "regaccess"
OWNER_ANNOTATION = OWNER_TAG
SHA_ANNOTATION = "regaccess.io/content-sha256"
EXPIRES_ANNOTATION = "regaccess.io/expires-at"
OWNER_KIND = "ECRPullSecret"
SECRET_VALUE = "<value>"


def dockerconfig(tokens: tuple[Token, ...] | list[Token]) -> str:
    """Pure: the base64 ``.dockerconfigjson`` value, one ``auths`` entry per registry host."""
    doc = {"auths": {t.host: {"auth": t.auth} for t in sorted(tokens, key=lambda t: t.host)}}
    value = base64.b64encode(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).decode()
    REDACTOR.remember(value)
    return value


def digest(value: str | None) -> str | None:
    return hashlib.sha256(value.encode()).hexdigest() if value else None


def hosts_of(value: str | None) -> tuple[str, ...] | None:
    """Pure: the registry hosts of a ``.dockerconfigjson`` value; None when it is not one."""
    try:
        auths = json.loads(base64.b64decode(value or "")).get("auths")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return tuple(sorted(auths)) if isinstance(auths, dict) else None


@dataclass(frozen=True)
class DesiredPullSecret:
    namespace: str
    name: str
    owner: str        # our mark
    owner_name: str   # the ECRPullSecret's name and UID, for the ownerReference
    owner_uid: str
    # Hosts the Secret must hold; None: not known yet (a defaulted registry before its first token).
    hosts: tuple[str, ...] | None = None
    # Fresh tokens to write; None: only judge what is there (no fetch was needed).
    tokens: tuple[Token, ...] | None = field(default=None, repr=False)
    expires_at: str | None = None

    @property
    def owner_reference(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": OWNER_KIND, "name": self.owner_name, "uid": self.owner_uid,
                "controller": True}

    @property
    def value(self) -> str | None:
        return dockerconfig(self.tokens) if self.tokens is not None else None


@dataclass(frozen=True)
class SecretFacts:
    """What observe keeps of the Secret: never its data, only the data's digest."""

    uid: str
    resource_version: str
    type: str
    data_sha: str | None       # digest of the data there now
    written_sha: str | None    # the digest we wrote (annotation)
    hosts: tuple[str, ...] | None
    labels: dict[str, str]
    owner_annotation: str | None
    expires_at: str | None
    owner_references: tuple[dict[str, Any], ...]


def _our_reference(refs: tuple[dict[str, Any], ...]) -> dict[str, Any] | None:
    return next((r for r in refs if r.get("kind") == OWNER_KIND
                 and str(r.get("apiVersion", "")).startswith(GROUP + "/")), None)


class PullSecretKind:
    """The ECRPullSecret's dockerconfigjson Secret (``controller.aws.protocol.Kind``)."""

    kind = "secret"
    service = "kubernetes"

    def label(self, desired: DesiredPullSecret) -> str:
        return f"Secret {desired.namespace}/{desired.name}"

    def _path(self, desired: DesiredPullSecret) -> str:
        return core_path("secrets", desired.namespace, desired.name)

    def facts(self, body: dict[str, Any]) -> SecretFacts:
        meta = body.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        value = (body.get("data") or {}).get(DATA_KEY)
        return SecretFacts(
            uid=str(meta.get("uid") or ""), resource_version=str(meta.get("resourceVersion") or ""),
            type=str(body.get("type") or "Opaque"), data_sha=digest(value),
            written_sha=annotations.get(SHA_ANNOTATION), hosts=hosts_of(value),
            labels=dict(meta.get("labels") or {}), owner_annotation=annotations.get(OWNER_ANNOTATION),
            expires_at=annotations.get(EXPIRES_ANNOTATION),
            owner_references=tuple(meta.get("ownerReferences") or ()),
        )

    def judge(self, facts: SecretFacts, desired: DesiredPullSecret) -> Observation:
        """Pure: owner and differences of an existing Secret against desired."""
        reference = _our_reference(facts.owner_references)
        if facts.owner_annotation:
            owner, mark = owner_of_mark(facts.owner_annotation, desired.owner), facts.owner_annotation
        elif reference is not None:
            same = reference.get("uid") == desired.owner_uid
            owner = Owner.OURS if same else Owner.FOREIGN
            mark = None if same else f"{OWNER_KIND} {desired.namespace}/{reference.get('name')}"
        else:
            owner, mark = Owner.UNMARKED, None
        diffs: list[Difference] = []
        if facts.type != DOCKER_CONFIG_JSON:
            diffs.append(Difference("type", facts.type, DOCKER_CONFIG_JSON))
        if facts.labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
            diffs.append(Difference(f"metadata.labels[{MANAGED_BY_LABEL}]", facts.labels.get(MANAGED_BY_LABEL),
                                    MANAGED_BY))
        if facts.owner_annotation != desired.owner:
            diffs.append(Difference(f"metadata.annotations[{OWNER_ANNOTATION}]", facts.owner_annotation,
                                    desired.owner))
        if not any(r.get("uid") == desired.owner_uid for r in facts.owner_references):
            diffs.append(Difference("metadata.ownerReferences", None, f"{OWNER_KIND} {desired.owner_name}"))
        wanted = digest(desired.value) if desired.tokens is not None else None
        if facts.data_sha is None or facts.data_sha != facts.written_sha or (wanted and wanted != facts.data_sha):
            # Changed by hand (the digest we wrote no longer matches), missing, or new tokens.
            diffs.append(Difference("data", SECRET_VALUE, SECRET_VALUE))
        elif desired.hosts is not None and facts.hosts != tuple(sorted(desired.hosts)):
            diffs.append(Difference("data.auths", list(facts.hosts or ()), sorted(desired.hosts)))
        if desired.expires_at and facts.expires_at != desired.expires_at:
            diffs.append(Difference(f"metadata.annotations[{EXPIRES_ANNOTATION}]", facts.expires_at,
                                    desired.expires_at))
        return Observation(exists=True, owner=owner, differences=tuple(diffs), observed=facts, mark=mark)

    def observe(self, client: Any, desired: DesiredPullSecret) -> Observation:
        body = client.get_or_none(self._path(desired))
        if body is None:
            return Observation(exists=False)
        return self.judge(self.facts(body), desired)

    def _body(self, desired: DesiredPullSecret) -> dict[str, Any]:
        value = desired.value
        if value is None:
            raise ValueError("a Secret write needs tokens")  # the step fetches them before any write
        return {
            "apiVersion": "v1", "kind": "Secret", "type": DOCKER_CONFIG_JSON,
            "metadata": {
                "name": desired.name, "namespace": desired.namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                "annotations": {OWNER_ANNOTATION: desired.owner, SHA_ANNOTATION: digest(value),
                                EXPIRES_ANNOTATION: desired.expires_at or ""},
                "ownerReferences": [desired.owner_reference],
            },
            "data": {DATA_KEY: value},
        }

    def create(self, client: Any, desired: DesiredPullSecret, observation: Observation) -> Written:
        answer = client.create(core_path("secrets", desired.namespace), self._body(desired))
        return Written(1, {"resourceVersion": ((answer or {}).get("metadata") or {}).get("resourceVersion")})

    def update(self, client: Any, desired: DesiredPullSecret, observation: Observation) -> Written:
        facts: SecretFacts = observation.observed
        if facts.type != DOCKER_CONFIG_JSON:
            # A Secret's type is immutable: replace the object (same UID precondition).
            self.delete(client, desired, observation)
            return Written(2, self.create(client, desired, Observation(exists=False)).facts)
        body = self._body(desired)
        refs = [r for r in facts.owner_references if r.get("uid") != desired.owner_uid]
        body["metadata"]["ownerReferences"] = [*refs, desired.owner_reference]
        body["metadata"]["resourceVersion"] = facts.resource_version  # refused (409) if changed meanwhile
        answer = client.merge_patch(self._path(desired), body)
        return Written(1, {"resourceVersion": ((answer or {}).get("metadata") or {}).get("resourceVersion")})

    def adopt(self, client: Any, desired: DesiredPullSecret, observation: Observation) -> Written:
        return self.update(client, desired, observation)

    def delete(self, client: Any, desired: DesiredPullSecret, observation: Observation) -> Written:
        facts: SecretFacts = observation.observed
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": facts.uid}}
        try:
            client.request("DELETE", self._path(desired), options)
        except ApiError as error:
            if error.status != 404:  # already gone: done
                raise
        return Written(1, {"removed": True})

    def predict(self, desired: DesiredPullSecret, observation: Observation, action: Action) -> Written:
        calls = 2 if action is Action.UPDATE and observation.exists and observation.observed.type != DOCKER_CONFIG_JSON else 1
        return Written(calls, {"removed": True} if action is Action.DELETE else {})


# --------------------------------------------------------------------------- ServiceAccounts


@dataclass(frozen=True)
class DesiredPullEntry:
    namespace: str
    service_account: str
    secret_name: str


@dataclass(frozen=True)
class ServiceAccountFacts:
    resource_version: str
    entries: tuple[dict[str, Any], ...]  # imagePullSecrets as they are


class ImagePullSecretsKind:
    """Our Secret's entry in one ServiceAccount's imagePullSecrets."""

    kind = "serviceAccount"
    service = "kubernetes"

    def label(self, desired: DesiredPullEntry) -> str:
        return f"imagePullSecrets of ServiceAccount {desired.namespace}/{desired.service_account}"

    def _path(self, desired: DesiredPullEntry) -> str:
        return core_path("serviceaccounts", desired.namespace, desired.service_account)

    def observe(self, client: Any, desired: DesiredPullEntry) -> Observation:
        body = client.get_or_none(self._path(desired))
        if body is None:
            return Observation(exists=False, observed=None)  # no ServiceAccount: the step judges
        facts = ServiceAccountFacts(str((body.get("metadata") or {}).get("resourceVersion") or ""),
                                    tuple(body.get("imagePullSecrets") or ()))
        present = any(e.get("name") == desired.secret_name for e in facts.entries)
        return Observation(exists=present, owner=Owner.OURS if present else Owner.ABSENT, observed=facts)

    def _patch(self, client: Any, desired: DesiredPullEntry, facts: ServiceAccountFacts,
               entries: list[dict[str, Any]]) -> Written:
        client.merge_patch(self._path(desired), {"metadata": {"resourceVersion": facts.resource_version},
                                                 "imagePullSecrets": entries})
        return Written(1)

    def create(self, client: Any, desired: DesiredPullEntry, observation: Observation) -> Written:
        facts: ServiceAccountFacts = observation.observed
        return self._patch(client, desired, facts, [*facts.entries, {"name": desired.secret_name}])

    def update(self, client: Any, desired: DesiredPullEntry, observation: Observation) -> Written:
        return Written(0)  # an entry is only a name: present is up to date

    adopt = update

    def delete(self, client: Any, desired: DesiredPullEntry, observation: Observation) -> Written:
        facts: ServiceAccountFacts = observation.observed
        kept = [e for e in facts.entries if e.get("name") != desired.secret_name]
        return self._patch(client, desired, facts, kept)

    def predict(self, desired: DesiredPullEntry, observation: Observation, action: Action) -> Written:
        return Written(1)


PULL_SECRETS = PullSecretKind()
IMAGE_PULL_SECRETS = ImagePullSecretsKind()
