"""Old names of the ECS task definition functions, kept only for ``controller.plan`` (issue 17).

The adapter is ``controller.aws.revisioned_definitions.TASK_DEFINITIONS``. Delete
this module when plan.py runs on the loop (it then imports nothing from here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.aws.base import ABSENT, Observation
from controller.aws import revisioned_definitions as rd
from controller.aws.revisioned_definitions import TASK_DEFINITIONS as TABLE
from controller.aws.revisioned_definitions import Desired

FAMILY_MISSING_MESSAGE = TABLE.not_found_message("{family}")
UNKNOWN_CONTAINERS_MESSAGE = rd.UNKNOWN_CONTAINERS_MESSAGE.format(
    noun=TABLE.noun, revision="{revision}", unknown="{unknown}", known="{known}")
NO_EXECUTION_ROLE_MESSAGE = rd.NO_EXECUTION_ROLE_MESSAGE.format(
    noun=TABLE.noun, revision="{revision}", role_field=TABLE.role_field, product=TABLE.product)


@dataclass(frozen=True)
class Latest:
    task_definition: dict[str, Any]
    tags: list[dict[str, str]]

    @property
    def label(self) -> str:
        return f"{self.task_definition.get('family')}:{self.task_definition.get('revision')}"


def observe(client: Any, family: str) -> Observation:
    found = TABLE.read(client, family)
    if found is None:
        return ABSENT
    tags = [{"key": k, "value": v} for k, v in found[1]]
    return Observation(exists=True, observed={"latest": Latest(found[0], tags)})


def chosen_containers(task_definition: dict[str, Any], wanted: list[str] | None) -> tuple[list[str], list[str]]:
    latest = TABLE.latest(task_definition, [], tuple(wanted or ()))
    return [str(n) for n in latest.chosen], list(latest.unknown)


def compare(task_definition: dict[str, Any], chosen: list[str], secret_arn: str,
            secret_name: str | None = None) -> tuple[str, ...]:
    latest = TABLE.latest(task_definition, [], tuple(chosen))
    return tuple(d.path for d in TABLE.differences(latest, Desired(latest.label, secret_arn, "", secret_name)))


def revision_request(latest: Latest, chosen: list[str], secret_arn: str, owner: str | None = None) -> dict[str, Any]:
    facts = TABLE.latest(latest.task_definition, [(t["key"], t["value"]) for t in latest.tags], tuple(chosen))
    return TABLE.revision_request(facts, Desired(facts.label, secret_arn, owner or ""))
