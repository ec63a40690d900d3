"""The one reconcile loop (controller.reconcile.loop) with a fake kind, no server.

Every ownership × existence × drift-policy case is one row of a table with an id;
the fake kind counts the writes it is asked for, so "no write" is measured, not
assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from controller.api import reasons
from controller.aws.protocol import ABSENT, Action, Difference, Observation, Owner, Written, owner_of_mark
from controller.reconcile import loop
from controller.reconcile.loop import Decision, RecordingActor, decide, decide_delete, delete_object, sync_object

OURS = "cluster/team-a/cred"
THEIRS = "cluster/team-b/cred"


def client_error(code: str, status: int, operation: str = "Write") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       operation)


@dataclass
class FakeKind:
    """A stateful fake AWS object: ``state`` is None (absent) or (mark, value)."""

    state: tuple[str | None, str] | None = None
    kind: str = "fake"
    service: str = "fake"
    writes: list[str] = field(default_factory=list)
    # Per action: an exception raised after (lost answer) or instead of doing the work.
    fail_after: dict[str, BaseException] = field(default_factory=dict)
    fail_before: dict[str, BaseException] = field(default_factory=dict)
    reads: int = 0

    def label(self, desired: Any) -> str:
        return "fake object 'x'"

    def observe(self, client: Any, desired: Any) -> Observation:
        self.reads += 1
        if self.state is None:
            return ABSENT
        mark, value = self.state
        diffs = () if value == desired else (Difference("value", value, desired),)
        return Observation(True, owner_of_mark(mark, OURS), diffs, observed=value, mark=mark)

    def _write(self, action: str, new_state: tuple[str | None, str] | None) -> Written:
        if action in self.fail_before:
            raise self.fail_before.pop(action)
        self.writes.append(action)
        self.state = new_state
        if action in self.fail_after:
            raise self.fail_after.pop(action)
        return Written(1, {"arn": "arn:fake"})

    def create(self, client: Any, desired: Any, observation: Observation) -> Written:
        if self.state is not None:
            raise client_error("ResourceExistsException", 400, "Create")
        return self._write("create", (OURS, desired))

    def update(self, client: Any, desired: Any, observation: Observation) -> Written:
        return self._write("update", (OURS, desired))

    def adopt(self, client: Any, desired: Any, observation: Observation) -> Written:
        return self._write("adopt", (OURS, desired))

    def delete(self, client: Any, desired: Any, observation: Observation) -> Written:
        return self._write("delete", None)

    def predict(self, desired: Any, observation: Observation, action: Action) -> Written:
        return Written(1, {"arn": "<planned>"})


# (id, state, adopt, report_only, managed_before, decision, writes, final_state, conflict)
SYNC_CASES = [
    ("absent-create", None, False, False, False, Decision.CREATE, ["create"], (OURS, "v"), False),
    ("absent-report-new-is-created", None, False, True, False, Decision.CREATE, ["create"], (OURS, "v"), False),
    ("absent-deleted-by-hand-remediate", None, False, False, True, Decision.CREATE, ["create"], (OURS, "v"), False),
    ("absent-deleted-by-hand-report", None, False, True, True, Decision.REPORT, [], None, False),
    ("ours-equal", (OURS, "v"), False, False, True, Decision.NOOP, [], (OURS, "v"), False),
    ("ours-equal-report", (OURS, "v"), False, True, True, Decision.NOOP, [], (OURS, "v"), False),
    ("ours-differs-remediate", (OURS, "old"), False, False, True, Decision.UPDATE, ["update"], (OURS, "v"), False),
    ("ours-differs-report", (OURS, "old"), False, True, True, Decision.REPORT, [], (OURS, "old"), False),
    ("ours-differs-report-unfinished", (OURS, "old"), False, True, False, Decision.UPDATE, ["update"], (OURS, "v"), False),
    ("unmarked-conflict", (None, "old"), False, False, False, Decision.CONFLICT, [], (None, "old"), True),
    ("unmarked-report-conflict", (None, "old"), False, True, True, Decision.CONFLICT, [], (None, "old"), True),
    ("unmarked-adopt", (None, "old"), True, False, False, Decision.ADOPT, ["adopt"], (OURS, "v"), False),
    ("unmarked-adopt-equal", (None, "v"), True, False, False, Decision.ADOPT, ["adopt"], (OURS, "v"), False),
    ("foreign-conflict", (THEIRS, "old"), False, False, False, Decision.CONFLICT, [], (THEIRS, "old"), True),
    ("foreign-never-adopted", (THEIRS, "old"), True, False, False, Decision.CONFLICT, [], (THEIRS, "old"), True),
    ("foreign-equal-never-adopted", (THEIRS, "v"), True, False, True, Decision.CONFLICT, [], (THEIRS, "v"), True),
    ("foreign-report", (THEIRS, "old"), True, True, True, Decision.CONFLICT, [], (THEIRS, "old"), True),
]


@pytest.mark.parametrize("case", SYNC_CASES, ids=[c[0] for c in SYNC_CASES])
def test_sync_object_cases(case: tuple) -> None:
    _, state, adopt, report_only, managed_before, decision, writes, final, conflict = case
    kind = FakeKind(state=state)
    result = sync_object(kind, None, "v", adopt_existing=adopt, report_only=report_only,
                         managed_before=managed_before, ours=OURS)
    assert result.decision is decision
    assert kind.writes == writes
    assert kind.state == final
    if conflict:
        assert result.error is not None and result.error.reason == reasons.OWNERSHIP_CONFLICT
        assert not result.error.retryable
        assert "fake object 'x'" in result.error.message
        if state[0] == THEIRS:
            assert THEIRS in result.error.message  # names the other owner
    else:
        assert result.error is None


# The operator's record (status) as ownership evidence beside the mark (issue 30 §1).
# (id, state, adopt, report_only, managed_before, decision, writes, final_state, drifted)
RECORDED_CASES = [
    # A hand edit stripped the mark (a widened policy pasted without Sids): drift, restored
    # with the marks under Remediate, reported under Report; never a conflict.
    ("mark-stripped-remediate", (None, "widened"), False, False, True, Decision.ADOPT, ["adopt"], (OURS, "v"),
     ("mark", "value")),
    ("mark-stripped-report", (None, "widened"), False, True, True, Decision.REPORT, [], (None, "widened"),
     ("mark", "value")),
    ("mark-stripped-value-equal", (None, "v"), False, False, True, Decision.ADOPT, ["adopt"], (OURS, "v"),
     ("mark",)),
    # Under an unfinished change (spec changed) the stripped mark is still someone's change.
    ("mark-stripped-unfinished", (None, "widened"), False, False, False, Decision.ADOPT, ["adopt"], (OURS, "v"),
     ("mark",)),
    # Only another owner's mark is a conflict, whatever our record says.
    ("foreign-recorded", (THEIRS, "v"), True, False, True, Decision.CONFLICT, [], (THEIRS, "v"), ()),
    ("ours-recorded", (OURS, "old"), False, False, True, Decision.UPDATE, ["update"], (OURS, "v"), ("value",)),
]


@pytest.mark.parametrize("case", RECORDED_CASES, ids=[c[0] for c in RECORDED_CASES])
def test_a_recorded_object_without_its_mark_is_drift(case: tuple) -> None:
    _, state, adopt, report_only, managed_before, decision, writes, final, drifted = case
    kind = FakeKind(state=state)
    result = sync_object(kind, None, "v", adopt_existing=adopt, report_only=report_only,
                         managed_before=managed_before, ours=OURS, recorded=True)
    assert result.decision is decision
    assert kind.writes == writes and kind.state == final
    assert result.drifted == drifted
    assert (result.error is not None) is (decision is Decision.CONFLICT)
    assert result.remediated is (bool(writes) and bool(drifted))


def test_the_record_may_name_the_identity() -> None:
    """A callable record is asked with the observation: a same-named object that is not the
    one recorded (another ARN) stays a stranger's."""
    seen: list[Observation] = []

    def recorded(observation: Observation) -> bool:
        seen.append(observation)
        return observation.observed == "recorded-one"

    other = FakeKind(state=(None, "someone-elses"))
    assert sync_object(other, None, "v", ours=OURS, recorded=recorded).decision is Decision.CONFLICT
    ours = FakeKind(state=(None, "recorded-one"))
    assert sync_object(ours, None, "v", ours=OURS, recorded=recorded).decision is Decision.ADOPT
    assert [o.observed for o in seen] == ["someone-elses", "recorded-one"]


def test_a_lost_answer_while_restoring_a_mark_is_observed_not_repeated() -> None:
    kind = FakeKind(state=(None, "widened"), fail_after={"adopt": client_error("ServiceUnavailable", 503)})
    result = sync_object(kind, None, "v", ours=OURS, managed_before=True, recorded=True)
    assert kind.writes == ["adopt"] and result.error is None and result.recovered


def test_drift_is_named_only_when_managed_before() -> None:
    drifted = sync_object(FakeKind(state=(OURS, "old")), None, "v", managed_before=True, ours=OURS)
    assert drifted.drifted == ("value",) and drifted.remediated
    unfinished = sync_object(FakeKind(state=(OURS, "old")), None, "v", managed_before=False, ours=OURS)
    assert unfinished.drifted == () and not unfinished.remediated
    gone = sync_object(FakeKind(state=None), None, "v", managed_before=True, report_only=True, ours=OURS)
    assert gone.drifted == ("existence",) and not gone.remediated


DELETE_CASES = [
    ("ours-deleted", (OURS, "v"), False, Decision.DELETE, ["delete"], None),
    ("ours-retained", (OURS, "v"), True, Decision.LEAVE, [], (OURS, "v")),
    ("absent-done", None, False, Decision.NOOP, [], None),
    ("unmarked-left", (None, "v"), False, Decision.LEAVE, [], (None, "v")),
    ("foreign-left", (THEIRS, "v"), False, Decision.LEAVE, [], (THEIRS, "v")),
]
# (id, state, retain, decision, writes, final): with our record of the object.
RECORDED_DELETE_CASES = [
    # A widened policy stripped of its marks is not left behind when its resource goes.
    ("mark-stripped-deleted", (None, "widened"), False, Decision.DELETE, ["delete"], None),
    ("mark-stripped-retained", (None, "widened"), True, Decision.LEAVE, [], (None, "widened")),
    ("foreign-recorded-left", (THEIRS, "v"), False, Decision.LEAVE, [], (THEIRS, "v")),
]


@pytest.mark.parametrize("case", RECORDED_DELETE_CASES, ids=[c[0] for c in RECORDED_DELETE_CASES])
def test_delete_with_the_record(case: tuple) -> None:
    _, state, retain, decision, writes, final = case
    kind = FakeKind(state=state)
    result = delete_object(kind, None, "v", retain=retain, recorded=True)
    assert result.decision is decision and kind.writes == writes and kind.state == final


@pytest.mark.parametrize("case", DELETE_CASES, ids=[c[0] for c in DELETE_CASES])
def test_delete_object_cases(case: tuple) -> None:
    _, state, retain, decision, writes, final = case
    kind = FakeKind(state=state)
    result = delete_object(kind, None, "v", retain=retain)
    assert result.decision is decision
    assert kind.writes == writes
    assert kind.state == final
    assert result.error is None


@pytest.mark.parametrize("error", [
    client_error("ServiceUnavailable", 503), client_error("ThrottlingException", 400),
    client_error("InternalFailure", 500), ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
], ids=["503", "throttled", "500", "read-timeout"])
@pytest.mark.parametrize("action,state", [("create", None), ("update", (OURS, "old")), ("adopt", (None, "old"))],
                         ids=["create", "update", "adopt"])
def test_lost_answer_is_observed_not_repeated(error: BaseException, action: str, state: Any) -> None:
    kind = FakeKind(state=state, fail_after={action: error})
    result = sync_object(kind, None, "v", adopt_existing=True, ours=OURS)
    assert kind.writes == [action]  # exactly one write, never a blind second one
    assert result.error is None and result.recovered
    assert result.observation.up_to_date


def test_failed_write_that_did_nothing_is_an_error_and_not_repeated() -> None:
    kind = FakeKind(state=(OURS, "old"), fail_before={"update": client_error("ServiceUnavailable", 503)})
    result = sync_object(kind, None, "v", ours=OURS)
    assert kind.writes == [] and kind.state == (OURS, "old")
    assert result.error is not None and result.error.retryable and result.error.reason == reasons.AWS_UNAVAILABLE


def test_terminal_write_error_is_not_observed_again() -> None:
    kind = FakeKind(state=(OURS, "old"), fail_before={"update": client_error("ValidationException", 400)})
    result = sync_object(kind, None, "v", ours=OURS)
    assert kind.reads == 1
    assert result.error is not None and not result.error.retryable


def test_already_exists_on_create_observes_again_and_decides() -> None:
    class Racing(FakeKind):
        def observe(self, client: Any, desired: Any) -> Observation:
            seen = super().observe(client, desired)
            if self.reads == 1:
                self.state = (THEIRS, "x")  # created by someone else right after our read
                return ABSENT
            return seen

    kind = Racing()
    result = sync_object(kind, None, "v", ours=OURS)
    assert kind.writes == []
    assert result.decision is Decision.CONFLICT and result.error.reason == reasons.OWNERSHIP_CONFLICT


def test_lost_delete_answer_is_done() -> None:
    kind = FakeKind(state=(OURS, "v"), fail_after={"delete": client_error("ServiceUnavailable", 503)})
    result = delete_object(kind, None, "v")
    assert kind.writes == ["delete"] and result.error is None and result.recovered


def test_recording_actor_never_writes_and_records_what_would_be_written() -> None:
    actor = RecordingActor()
    kinds = {case[0]: FakeKind(state=case[1]) for case in SYNC_CASES}
    for case in SYNC_CASES:
        kind = kinds[case[0]]
        before = kind.state
        result = sync_object(kind, None, "v", actor=actor, adopt_existing=case[2], report_only=case[3],
                             managed_before=case[4], ours=OURS)
        assert kind.writes == [] and kind.state == before
        if result.decision in loop.WRITES:
            assert result.written is not None and result.written.facts == {"arn": "<planned>"}
    planned = [(p.action) for p in actor.planned]
    expected = [c[6][0] for c in SYNC_CASES if c[6]]
    assert planned == expected


def test_observe_failure_is_classified_once() -> None:
    class Broken(FakeKind):
        def observe(self, client: Any, desired: Any) -> Observation:
            raise client_error("AccessDeniedException", 403, "Describe")

    result = sync_object(Broken(), None, "v", ours=OURS)
    assert result.error is not None and result.error.reason == reasons.AWS_ACCESS_DENIED
    assert result.error.message.startswith("fake object 'x': ")


@pytest.mark.parametrize("mark,verdict", [(None, Owner.UNMARKED), ("", Owner.UNMARKED), (OURS, Owner.OURS),
                                          (THEIRS, Owner.FOREIGN)], ids=["none", "empty", "ours", "theirs"])
def test_owner_of_mark(mark: str | None, verdict: Owner) -> None:
    assert owner_of_mark(mark, OURS) is verdict


def test_decide_tables_cover_every_owner() -> None:
    for owner in Owner:
        obs = Observation(owner is not Owner.ABSENT, owner)
        assert isinstance(decide(obs, adopt_existing=False, report_only=False, managed_before=False), Decision)
        assert isinstance(decide_delete(obs, retain=False), Decision)
        for recorded in (False, True):
            assert isinstance(decide(obs, adopt_existing=False, report_only=True, managed_before=True,
                                     recorded=recorded), Decision)
            assert isinstance(decide_delete(obs, retain=False, recorded=recorded), Decision)
