"""The one protocol every managed AWS kind follows (crossplane's ExternalClient, ACK's Delta).

Every module in ``controller/aws/`` that manages an AWS object kind (Secrets
Manager secret, IAM inline role policy, ECS task definition / Batch job
definition, ECR pull-through cache rule, ECR repository policy statements)
provides an adapter with the same rooms and signatures:

- ``observe(client, desired) -> Observation``: one cheap read. It reports facts
  only: does the object exist, whose mark does it carry (``Owner``), and how it
  differs from desired as ``Difference(path, observed, desired)`` triples.
  NotFound means absent, never an error.
- ``create / update / adopt / delete(client, desired, observation) -> Written``:
  thin boto3 calls that return what they did. AlreadyExists on create and NotFound
  on delete propagate or are swallowed as the kind documents; the loop decides.
- ``predict(desired, observation, action) -> Written``: what a write would
  return, without calling AWS (``regaccess plan``'s recording actor uses it:
  placeholder ARNs, next revision numbers).

An adapter never decides policy: adoption, report-only drift, conflicts and
deletion safety are decided once, in ``controller.reconcile.loop``.

Ownership marks: ``<cluster-id>/<namespace>/<name>``, written where the service
has tags as the tag ``regaccess.io/owner`` and inside documents that have none
(IAM inline policies, ECR statements) as a Sid prefix. ``owner_of_mark`` turns a
mark found on an object into the ``Owner`` verdict, the same way for every kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

# The owner tag and the tag limit live once, in the api layer (validation checks them too).
from controller.api.validation import MAX_TAGS, OWNER_TAG

__all__ = ["ABSENT", "Action", "Difference", "Kind", "MARK_FIELD", "MAX_TAGS", "OWNER_TAG", "Observation", "Owner",
           "Written", "owner_of_mark"]


class Owner(str, Enum):
    """Whose an observed object is, judged by the mark it carries."""

    OURS = "Ours"          # our mark: manage it
    FOREIGN = "Foreign"    # another resource's mark: never adopted, written or deleted
    UNMARKED = "Unmarked"  # no mark (a person, Terraform): a conflict unless adoptExisting
    ABSENT = "Absent"      # the object does not exist


# The drift path of an object the operator's record holds whose mark someone removed
# (controller.reconcile.loop.decide); its Drifted reason is MarkRemoved.
MARK_FIELD = "mark"


class Action(str, Enum):
    """The writes a loop may ask an adapter for."""

    CREATE = "create"
    UPDATE = "update"
    ADOPT = "adopt"
    DELETE = "delete"


def owner_of_mark(mark: str | None, ours: str) -> Owner:
    """Pure: the verdict for an existing object carrying ``mark`` (None: no mark)."""
    if not mark:
        return Owner.UNMARKED
    return Owner.OURS if mark == ours else Owner.FOREIGN


@dataclass(frozen=True)
class Difference:
    """One field that differs: where, what AWS has, what the spec wants.

    ``observed``/``desired`` are for people (plan, Events name only the path);
    adapters put a placeholder instead of any secret value.
    """

    path: str
    observed: Any = None
    desired: Any = None


@dataclass(frozen=True)
class Observation:
    """What one read of an AWS object says (facts, no policy)."""

    exists: bool
    owner: Owner = Owner.ABSENT
    differences: tuple[Difference, ...] = ()
    # Kind-specific facts the writes need (ARN, current document, latest revision).
    observed: Any = None
    # The mark found on the object (another owner's, for conflict messages).
    mark: str | None = None
    # Ours as an earlier version wrote it (an old mark, a pre-mark document): the
    # differences are our own format, so their rewrite is never drift (loop.decide).
    outdated: bool = False

    @property
    def up_to_date(self) -> bool:
        return self.exists and self.owner is Owner.OURS and not self.differences

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(d.path for d in self.differences)


ABSENT = Observation(exists=False)


@dataclass(frozen=True)
class Written:
    """What a write did (or, from ``predict``, would do)."""

    calls: int = 1  # AWS write calls made (a no-op resync must make 0)
    # Facts the caller records in status: arn, versionId, revision...
    facts: dict[str, Any] = field(default_factory=dict)


class Kind(Protocol):
    """An adapter of one AWS object kind. ``D`` is the kind's desired-state value."""

    kind: str     # status row kind and metrics label, e.g. "rolePolicy"
    service: str  # boto3 service name, for the error classifier

    def label(self, desired: Any) -> str: ...
    def observe(self, client: Any, desired: Any) -> Observation: ...
    def create(self, client: Any, desired: Any, observation: Observation) -> Written: ...
    def update(self, client: Any, desired: Any, observation: Observation) -> Written: ...
    def adopt(self, client: Any, desired: Any, observation: Observation) -> Written: ...
    def delete(self, client: Any, desired: Any, observation: Observation) -> Written: ...
    def predict(self, desired: Any, observation: Observation, action: Action) -> Written: ...
