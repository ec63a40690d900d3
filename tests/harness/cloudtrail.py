"""A stand-in for CloudTrail + EventBridge: turns a test's out-of-band AWS call into the event AWS would send.

moto does not emit CloudTrail events; its SQS is real. A test that changes AWS
behind the operator's back calls ``out_of_band(client, "PutRolePolicy", ...)``
instead of the boto3 method: the call is made (against the AWS test server),
then the EventBridge envelope of its CloudTrail management event is built by
``envelope`` and sent to a real (moto) SQS queue, where the operator's poller
reads it like any other.

The shape follows AWS's published examples of an EventBridge "AWS API Call via
CloudTrail" event (EventBridge User Guide, "Events from AWS services", and the
CloudTrail User Guide's "CloudTrail record contents"): an envelope
``{version, id, detail-type, source: "aws.<service>", account, time, region,
resources, detail}`` whose ``detail`` is the CloudTrail record ``{eventVersion,
userIdentity, eventTime, eventSource: "<service>.amazonaws.com", eventName,
awsRegion, requestParameters, responseElements, requestID, eventID, readOnly,
eventType: "AwsApiCall", managementEvent, recipientAccountId}``.
``requestParameters`` and ``responseElements`` carry the API's own member names
with a lower-case first letter (CloudTrail's convention: PutRolePolicy logs
``{roleName, policyName, policyDocument}``, PutSecretValue ``{secretId,
clientRequestToken}``, RegisterTaskDefinition's response
``{taskDefinition: {family, revision, ...}}``). Like CloudTrail, it leaves
secret values out (``secretString``, ``secretBinary``).

What it does not imitate: delivery delay (AWS: typically seconds to minutes)
and IAM's us-east-1-only delivery.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from botocore import xform_name

from tests.harness.world import ACCOUNT

DETAIL_TYPE = "AWS API Call via CloudTrail"
HIDDEN = frozenset({"secretString", "secretBinary"})  # CloudTrail never logs secret values
# An identity that is not the operator's: a person at the console.
PERSON = {"type": "IAMUser", "principalId": "AIDAEXAMPLEPERSON", "arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
          "accountId": ACCOUNT, "userName": "alice"}


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _camel(value: Any) -> Any:
    """Member names with a lower-case first letter, recursively; secret values dropped."""
    if isinstance(value, dict):
        return {_lower_first(k): _camel(v) for k, v in value.items()
                if _lower_first(k) not in HIDDEN and k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    return value


def envelope(service: str, operation: str, request: dict[str, Any], response: dict[str, Any] | None = None, *,
             region: str = "us-east-1", identity: dict[str, Any] | None = None, error_code: str | None = None,
             when: dt.datetime | None = None) -> dict[str, Any]:
    """The EventBridge envelope of the CloudTrail event of one call (boto3 member names in)."""
    stamp = (when or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    detail: dict[str, Any] = {
        "eventVersion": "1.08",
        "userIdentity": identity or PERSON,
        "eventTime": stamp,
        "eventSource": f"{service}.amazonaws.com",
        "eventName": operation,
        "awsRegion": region,
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": _camel(request) or None,
        "responseElements": _camel(response or {}) or None,
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }
    if error_code:
        detail["errorCode"] = error_code
        detail["errorMessage"] = "refused"
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": DETAIL_TYPE, "source": f"aws.{service}",
            "account": ACCOUNT, "time": stamp, "region": region, "resources": [], "detail": detail}


def send(sqs: Any, queue_url: str, event: dict[str, Any]) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(event))


def out_of_band(client: Any, operation: str, sqs: Any, queue_url: str, **params: Any) -> dict[str, Any]:
    """Make one AWS call as a person would, then deliver its CloudTrail event to the queue."""
    response = getattr(client, xform_name(operation))(**params)
    service = client.meta.service_model.signing_name  # ECR: "ecr", not its endpoint "api.ecr"
    send(sqs, queue_url, envelope(service, operation, params, response, region=client.meta.region_name))
    return response
