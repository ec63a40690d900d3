"""The one reconcile loop every AWS kind goes through, for both custom resources.

Callers (the RegistryCredential steps, the CrossAccountRepoAccess reconciler and,
through them, ``regaccess plan``) hand it one object at a time: an adapter of
``controller.aws.protocol.Kind``, a client, the desired state and what status
says about the object. The loop observes, decides, and has an *actor* perform
the write:

- ``decide()`` / ``decide_delete()`` are the only place that says what happens
  for each ownership × existence × drift-policy case (pure, table-tested);
- ``AwsActor`` performs writes through the adapter; ``RecordingActor`` records
  them and returns the adapter's prediction (``regaccess plan``: same decisions,
  no writes);
- a write whose outcome is unknown (throttle or 5xx answer, timeout, dropped
  connection) is never repeated blindly: the loop observes again and, when AWS
  did the work after all, takes that as done (crossplane's create-pending lesson);
- AlreadyExists on create means "observe again" and decide once more.

Errors are classified once, here (``failure()``), into a ``StepError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from controller import kubeerrors
from controller.aws import errors as aws_errors
from controller.aws.errors import Classified, ErrorClass
from controller.aws.protocol import MARK_FIELD, Action, Kind, Observation, Owner, Written
from controller.kubeclient import ApiError
from controller.logging import REDACTOR
from controller.reconcile.steps import StepError

# What the loop may catch from an adapter: botocore's errors, the socket-level ones that
# escape it, and the API server's answers to the Kubernetes-side adapters (ECRPullSecret's
# Secret and ServiceAccounts). Anything else is a bug and propagates.
AWS_ERRORS = (ClientError, BotoCoreError, ConnectionError, TimeoutError, ApiError)


def classify(error: BaseException, service: str) -> Classified:
    """An adapter's error as its class: the API server's answers by their own rules."""
    if isinstance(error, ApiError):
        return kubeerrors.classify(error)
    return aws_errors.classify(error, service)


def outcome_unknown(error: BaseException) -> bool:
    """May the failed write have been performed anyway (AWS or the API server)?"""
    if isinstance(error, ApiError):
        return kubeerrors.outcome_unknown(error)
    return aws_errors.outcome_unknown(error)


CONFLICT_FOREIGN = "{what} carries the mark of {mark}, another owner; it is never adopted, written or deleted"
CONFLICT_UNMARKED = (
    "{what} exists and is not marked as managed by {ours}; set spec.adoptExisting: true to take it "
    "over, or choose another name"
)
LEFT_NOT_OURS = "left {what} in place: it is not owned by this resource"


class Decision(str, Enum):
    CREATE = Action.CREATE.value
    UPDATE = Action.UPDATE.value
    ADOPT = Action.ADOPT.value
    DELETE = Action.DELETE.value
    NOOP = "noop"          # in the declared state (or gone, on delete): nothing to do
    REPORT = "report"      # differs, driftPolicy Report: record the drift, write nothing
    CONFLICT = "conflict"  # another owner's or an unmarked object: no write
    LEAVE = "leave"        # delete: not ours, or deletionPolicy Retain: leave it


WRITES = frozenset({Decision.CREATE, Decision.UPDATE, Decision.ADOPT, Decision.DELETE})


def decide(observation: Observation, *, adopt_existing: bool, report_only: bool, managed_before: bool,
           recorded: bool = False) -> Decision:
    """Pure: what to do with one object while syncing.

    ``report_only``: driftPolicy Report and neither the spec nor the source changed,
    so a difference can only be someone's change in AWS. ``managed_before``: status
    says we had this object in the declared state; only then is a difference drift
    (anything else is unfinished work and is written under either policy). An
    ``outdated`` object (ours in an earlier version's format) was never drifted: its
    rewrite is our own change.
    ``recorded``: the operator's own durable record (status, written only by the
    operator) says it created or took over this very object. Ownership has two pieces of
    evidence, the mark in the object and that record: an object we recorded whose mark is
    gone is ours with the mark removed by hand (drift, ``MARK_FIELD``), restored with the
    marks under Remediate; only another owner's mark is a conflict.
    """
    managed_before = managed_before and not observation.outdated
    if not observation.exists:
        return Decision.REPORT if report_only and managed_before else Decision.CREATE
    if observation.owner is Owner.FOREIGN:
        # Another resource's mark: whatever our spec says, never ours to take.
        return Decision.CONFLICT
    if observation.owner is Owner.UNMARKED:
        if recorded:
            # A stripped mark is a hand edit of our object (often a widening: the policy a
            # person pastes has no Sid); writing it back is ADOPT, the write that restores
            # the marks with the declared state.
            return Decision.REPORT if report_only else Decision.ADOPT
        return Decision.ADOPT if adopt_existing else Decision.CONFLICT
    if not observation.differences:
        return Decision.NOOP
    return Decision.REPORT if report_only and managed_before else Decision.UPDATE


def decide_delete(observation: Observation, *, retain: bool, recorded: bool = False) -> Decision:
    """Pure: what to do with one object when its resource goes away (ours only is deleted).

    Ours is what carries our mark, or what our record holds and carries no mark: a policy
    someone widened and stripped of its marks is not left behind."""
    if retain:
        return Decision.LEAVE
    if not observation.exists:
        return Decision.NOOP
    if observation.owner is Owner.OURS or (observation.owner is Owner.UNMARKED and recorded):
        return Decision.DELETE
    return Decision.LEAVE


def conflict_message(kind: Kind, desired: Any, observation: Observation, ours: str) -> str:
    """The one wording of an ownership conflict, naming the object and the owner."""
    what = kind.label(desired)
    if observation.owner is Owner.FOREIGN:
        return CONFLICT_FOREIGN.format(what=what, mark=observation.mark)
    return CONFLICT_UNMARKED.format(what=what, ours=ours)


def describe(error: BaseException, service: str) -> str:
    """An AWS error as text for status and Events: classified, and every known secret masked.

    An AWS error may quote the request back (a validation message naming the value)."""
    return REDACTOR.scrub(classify(error, service).describe())


def failure(error: BaseException, service: str, what: str) -> StepError:
    """The one classifier boundary: an AWS exception as a StepError naming the object."""
    found = classify(error, service)
    return StepError(found.reason, f"{what}: {describe(error, service)}", found.retryable)


# --------------------------------------------------------------------------- actors


@dataclass(frozen=True)
class PlannedWrite:
    kind: str
    name: str
    action: str
    fields: tuple[str, ...] = ()


class AwsActor:
    """Performs writes through the adapter (the operator)."""

    records = False

    def perform(self, kind: Kind, client: Any, action: Action, desired: Any, observation: Observation) -> Written:
        return getattr(kind, action.value)(client, desired, observation)


@dataclass
class RecordingActor:
    """Records the writes and predicts their results (``regaccess plan``); never calls AWS."""

    planned: list[PlannedWrite] = field(default_factory=list)
    records = True

    def perform(self, kind: Kind, client: Any, action: Action, desired: Any, observation: Observation) -> Written:
        self.planned.append(PlannedWrite(kind.kind, kind.label(desired), action.value, observation.fields))
        return kind.predict(desired, observation, action)


AWS_ACTOR = AwsActor()


# --------------------------------------------------------------------------- one object


@dataclass
class ObjectResult:
    """What the loop did with one object."""

    decision: Decision
    observation: Observation
    written: Written | None = None
    error: StepError | None = None
    # Paths changed outside the operator (only when status says it was managed before).
    drifted: tuple[str, ...] = ()
    # True when a write's answer was lost and observing again showed it done.
    recovered: bool = False

    @property
    def remediated(self) -> bool:
        return bool(self.drifted) and self.error is None and (self.written is not None or self.recovered)

    @property
    def calls(self) -> int:
        return self.written.calls if self.written is not None else 0


def _drift(observation: Observation, managed_before: bool, recorded: bool = False) -> tuple[str, ...]:
    managed_before = managed_before and not observation.outdated
    if observation.exists and observation.owner is Owner.UNMARKED and recorded:
        # The mark is gone from an object we hold: always someone's change, whatever else
        # changed with it (those fields are drift only against a declared state we had).
        return (MARK_FIELD, *(observation.fields if managed_before else ()))
    if not managed_before:
        return ()
    if not observation.exists:
        return ("existence",)
    return observation.fields if observation.owner is Owner.OURS else ()


def sync_object(kind: Kind, client: Any, desired: Any, *, actor: Any = AWS_ACTOR, adopt_existing: bool = False,
                report_only: bool = False, managed_before: bool = False, ours: str = "",
                observation: Observation | None = None,
                recorded: bool | Callable[[Observation], bool] = False) -> ObjectResult:
    """Observe (unless given), decide and perform one object's write.

    ``recorded``: see ``decide``; a callable is asked with the observation, for kinds whose
    record names the object's identity (a secret's ARN) rather than only its name."""
    what = kind.label(desired)
    if observation is None:
        try:
            observation = kind.observe(client, desired)
        except AWS_ERRORS as error:
            return ObjectResult(Decision.NOOP, Observation(exists=False), error=failure(error, kind.service, what))
    held = recorded(observation) if callable(recorded) else recorded
    decision = decide(observation, adopt_existing=adopt_existing, report_only=report_only,
                      managed_before=managed_before, recorded=held)
    result = ObjectResult(decision, observation, drifted=_drift(observation, managed_before, held))
    if decision is Decision.CONFLICT:
        from controller.api import reasons  # local: api is the bottom layer, no cycle

        result.error = StepError(reasons.OWNERSHIP_CONFLICT, conflict_message(kind, desired, observation, ours), False)
        return result
    if decision not in WRITES:
        return result
    try:
        result.written = actor.perform(kind, client, Action(decision.value), desired, observation)
    except AWS_ERRORS as error:
        return _after_failed_write(kind, client, desired, result, error, what, actor=actor,
                                   adopt_existing=adopt_existing, report_only=report_only,
                                   managed_before=managed_before, ours=ours, recorded=recorded)
    return result


def _after_failed_write(kind: Kind, client: Any, desired: Any, result: ObjectResult, error: BaseException,
                        what: str, **again: Any) -> ObjectResult:
    found = classify(error, kind.service)
    if found.error_class is ErrorClass.ALREADY_EXISTS and result.decision is Decision.CREATE:
        # Someone (or our own earlier attempt whose answer was lost) created it: observe
        # again and decide once more, without another create on the same pass.
        try:
            observation = kind.observe(client, desired)
        except AWS_ERRORS as second:
            result.error = failure(second, kind.service, what)
            return result
        if observation.exists:
            return sync_object(kind, client, desired, observation=observation, **again)
    elif outcome_unknown(error):
        # AWS may have done the work and lost the answer: look before writing again, and
        # never write twice on one pass (a second RegisterTaskDefinition is a duplicate).
        try:
            observation = kind.observe(client, desired)
        except AWS_ERRORS:
            observation = None
        if observation is not None and _done(result.decision, observation):
            result.observation, result.recovered = observation, True
            return result
    result.error = failure(error, kind.service, what)
    return result


def _done(decision: Decision, observation: Observation) -> bool:
    if decision is Decision.DELETE:
        return not observation.exists
    return observation.up_to_date


def delete_object(kind: Kind, client: Any, desired: Any, *, actor: Any = AWS_ACTOR, retain: bool = False,
                  observation: Observation | None = None,
                  recorded: bool | Callable[[Observation], bool] = False) -> ObjectResult:
    """Observe and delete one object if it is ours (NotFound means done; ``recorded`` as for
    ``sync_object``)."""
    what = kind.label(desired)
    if observation is None and not retain:
        try:
            observation = kind.observe(client, desired)
        except AWS_ERRORS as error:
            return ObjectResult(Decision.NOOP, Observation(exists=False), error=failure(error, kind.service, what))
    observation = observation or Observation(exists=False)
    held = recorded(observation) if callable(recorded) else recorded
    decision = decide_delete(observation, retain=retain, recorded=held)
    result = ObjectResult(decision, observation)
    if decision is not Decision.DELETE:
        return result
    try:
        result.written = actor.perform(kind, client, Action.DELETE, desired, observation)
    except AWS_ERRORS as error:
        return _after_failed_write(kind, client, desired, result, error, what)
    return result


def left_message(kind: Kind, desired: Any) -> str:
    return LEFT_NOT_OURS.format(what=kind.label(desired))
