"""The contract between the RegistryCredential reconciler and its steps.

A RegistryCredential keeps several AWS object kinds in line (secret, role
policies, task/job definitions, pull-through cache rule). Each kind is one
*step* module in ``controller/reconcile/`` with two functions:

    sync(ctx: StepContext) -> StepOutcome
    delete(ctx: StepContext) -> StepOutcome

A step observes its objects, compares them with desired, acts (or only reports,
see ``StepContext.remediate``) and says what it found. It never raises for AWS
errors: it classifies them (``controller.reconcile.loop.failure``) and returns a
``StepError``. The reconciler runs the steps in order, stops at the first
error, and turns the outcomes into status, conditions and Events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from controller.api.validation import ResolvedRegistryCredential
from controller.aws.clients import Clients
from controller.sources import Credential
from controller.reconcile.result import Event


@dataclass(frozen=True)
class StepError:
    reason: str          # condition reason (controller.api.reasons)
    message: str         # names the object and the rule; no request IDs, no secret values
    retryable: bool      # True: retry with backoff; False: wait for a spec/AWS change
    retry_after: float | None = None  # a hint; None lets the handler choose its backoff


@dataclass
class StepOutcome:
    managed: list[dict[str, Any]] = field(default_factory=list)  # status.managed rows
    events: list[Event] = field(default_factory=list)
    # Drift found on objects we had synced before: (object, field) pairs, never values.
    drifted: list[tuple[str, str]] = field(default_factory=list)
    remediated: bool = False  # True when a write repaired drift
    writes: int = 0           # AWS write calls made (a no-op resync must make 0)
    error: StepError | None = None
    # Extra status fields the step owns (e.g. secretArn), merged into status.
    status: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    resolved: ResolvedRegistryCredential
    clients: Clients
    previous_status: dict[str, Any]
    # False under driftPolicy Report when nothing in the spec or the source changed:
    # differences are reported, not repaired.
    remediate: bool = True
    # Filled by the secret step for the steps after it.
    secret_arn: str | None = None
    kms_key_arn: str | None = None
    # The credential read from the source Secret (validated before any step runs).
    credential: Credential | None = None
    # Called with a partial status the moment an irreversible create happens (a task/job
    # definition revision), so a crash right after cannot lose it.
    record_now: Callable[[dict[str, Any]], None] | None = None
    source_resource_version: str | None = None
    # Wall clock used for drift records (injected for tests).
    now: str = ""
    # Filled by the task definition step: family -> the latest ACTIVE revision ARN that
    # references the secret (registered this pass or found); the service step rolls to it.
    revisions: dict[str, str] = field(default_factory=dict)
    # Who performs writes: the AWS actor in the operator, a recording actor in
    # ``regaccess plan`` (controller.reconcile.loop). None means the AWS actor.
    actor: Any = None
    # Filled by the definitions steps (controller.reconcile.pull_ready.ConsumerFacts), read by
    # the PullReady step, which leaves its verdict (pull_ready.Outcome, or None: keep the
    # previous condition) in ``pull_ready``.
    consumers: list[Any] = field(default_factory=list)
    pull_ready: Any = None
    # The TenancyPolicy in force (controller.tenancy.Policy): the role-identity step judges the
    # real ARNs of execution roles given as ARNs with it. None: the shipped default.
    tenancy_policy: Any = None

    def reported_before(self, obj: str) -> bool:
        """Was drift on ``obj`` reported (not repaired) by the last check, and still open?

        Under driftPolicy Report a drifted object keeps a Pending row; without this,
        the next check would take that row for unfinished work and write.
        """
        return any(obj == o for o, _ in open_drift(self.previous_status))

    def managed_before(self, kind: str, name: str) -> bool:
        """Did the last status have this object in the declared state?

        Only then is a difference drift; a Pending row left by a reported drift is
        still that drift, not unfinished work.
        """
        state = (self.previous_managed(kind).get(name) or {}).get("state")
        return state == "Synced" or (state == "Pending" and self.reported_before(f"{kind}/{name}"))

    def recorded(self, kind: str, name: str) -> bool:
        """Does the operator's own record hold this object (ownership evidence beside its mark)?

        Status is written by the operator alone (tenants get no RBAC on the status
        subresource, docs/security.md): a Synced row means the object was ours and as
        declared; a Pending row of a reported drift is that object still; ``owned`` keeps the
        record across a failed write (a throttled restore must not turn ours into a stranger's).
        """
        row = self.previous_managed(kind).get(name) or {}
        state = row.get("state")
        return (state == "Synced" or row.get("owned") is True
                or (state == "Pending" and self.reported_before(f"{kind}/{name}")))

    def previous_managed(self, kind: str) -> dict[str, dict[str, Any]]:
        """status.managed rows of one kind, by name."""
        return {
            row["name"]: row
            for row in self.previous_status.get("managed") or []
            if row.get("kind") == kind
        }


Step = Callable[[StepContext], StepOutcome]


def open_drift(status: dict[str, Any]) -> set[tuple[str, str]]:
    """Pure: the (object, field) pairs reported and not repaired, while Drifted is True.

    A check that finds no drift sets Drifted False, which closes them all: a drift
    undone by hand and made again later counts as new.
    """
    drifted = next((c for c in status.get("conditions") or [] if c.get("type") == "Drifted"), {})
    if drifted.get("status") != "True":
        return set()
    return {(r.get("object"), r.get("field")) for r in status.get("drift") or [] if not r.get("remediated")}
