"""The ECS deployments stand-in (tests/harness/ecs_standin.py) writes deployments as botocore's model says.

Every member of a deployment it makes is a member of ECS's ``Deployment`` shape, of that
member's type, and enum members (status is free text in the model; rolloutState is an enum)
take only the model's values; the deployment controller type it rolls is the model's ``ECS``.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import botocore.session
import pytest

from controller.aws import ecs_services
from tests.harness import ecs_standin

pytestmark = pytest.mark.upstream

MODEL = botocore.session.get_session().get_service_model("ecs")
DEPLOYMENT = MODEL.shape_for("Deployment")
PYTHON_TYPES = {"string": str, "integer": int, "timestamp": dt.datetime, "long": int, "boolean": bool}


@pytest.mark.parametrize("state", ["IN_PROGRESS", "COMPLETED"])
def test_deployments_fit_the_model(state):
    service = SimpleNamespace(desired_count=2, launch_type="FARGATE")
    made = ecs_standin.new_deployment(service, "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2",
                                      state=state)
    for key, value in made.items():
        assert key in DEPLOYMENT.members, key
        shape = DEPLOYMENT.members[key]
        assert isinstance(value, PYTHON_TYPES[shape.type_name]), key
        if getattr(shape, "enum", None):
            assert value in shape.enum, (key, value)


def test_the_rollout_states_we_read_and_write_are_the_models():
    states = set(DEPLOYMENT.members["rolloutState"].enum)
    assert {ecs_services.IN_PROGRESS, ecs_services.COMPLETED, ecs_services.FAILED} == states
    assert ecs_services.ROLLING_UPDATE in MODEL.shape_for("DeploymentControllerType").enum


def test_update_service_takes_a_task_definition_and_the_adapter_sends_no_force():
    members = MODEL.operation_model("UpdateService").input_shape.members
    assert {"cluster", "service", "taskDefinition"} <= set(members)
    assert "forceNewDeployment" in members  # exists; controller/aws/ecs_services.update never sends it
