"""Old names of the Batch job definition functions, kept only for ``controller.plan`` (issue 17).

The adapter is ``controller.aws.revisioned_definitions.JOB_DEFINITIONS``. Delete
this module when plan.py runs on the loop (it then imports nothing from here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.aws.base import ABSENT, Observation
from controller.aws import revisioned_definitions as rd
from controller.aws.revisioned_definitions import JOB_DEFINITIONS as TABLE
from controller.aws.revisioned_definitions import CREDENTIALS, Desired

CREDENTIAL_FIELD = f"containerProperties.{CREDENTIALS}"
NOT_FOUND_MESSAGE = TABLE.not_found_message("{name}")
UNSUPPORTED_MESSAGE = rd.UNSUPPORTED_MESSAGE.format(noun=TABLE.noun, revision="{revision}")
NO_EXECUTION_ROLE_MESSAGE = rd.NO_EXECUTION_ROLE_MESSAGE.format(
    noun=TABLE.noun, revision="{revision}", role_field=TABLE.role_field, product=TABLE.product)


@dataclass(frozen=True)
class Latest:
    job_definition: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.job_definition.get('jobDefinitionName')}:{self.job_definition.get('revision')}"

    @property
    def container(self) -> dict[str, Any] | None:
        return self.job_definition.get("containerProperties")


def observe(client: Any, name: str) -> Observation:
    found = TABLE.read(client, name)
    return ABSENT if found is None else Observation(exists=True, observed={"latest": Latest(found[0])})


def compare(job_definition: dict[str, Any], secret_arn: str, secret_name: str | None = None) -> tuple[str, ...]:
    latest = TABLE.latest(job_definition, [])
    return tuple(d.path for d in TABLE.differences(latest, Desired(latest.label, secret_arn, "", secret_name)))
