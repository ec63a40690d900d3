"""The drift-event queues (SQS): check, receive with a long poll, delete after handling. Facts only.

Called by ``controller.drift_events.Poller`` (in a worker thread). boto3's
standard SQS client, so ``AWS_ENDPOINT_URL`` (tests: moto's SQS) and the usual
credential chain apply; the Region is the queue URL's
(``https://sqs.<region>.amazonaws.com/<account>/<name>``), else the default.
"""

from __future__ import annotations

import re
from typing import Any, Callable

WAIT_SECONDS = 20  # SQS's longest long poll: an idle queue costs 3 requests a minute
MAX_MESSAGES = 10  # SQS's largest batch
# What ``attributes`` reads: the queue's ARN (it exists, and is the one the policy names) and its
# backlog (messages waiting: a large one at start is events that queued while no operator ran).
ATTRIBUTES = ("QueueArn", "ApproximateNumberOfMessages")

_REGION = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com/")


def queue_region(url: str) -> str | None:
    """Pure: the Region in a standard SQS queue URL (None: an endpoint override, e.g. tests)."""
    match = _REGION.match(url)
    return match.group(1) if match else None


def attributes(client: Any, url: str) -> dict[str, str]:
    """GetQueueAttributes: the queue is reachable with our rights (raises otherwise)."""
    answer = client.get_queue_attributes(QueueUrl=url, AttributeNames=list(ATTRIBUTES))
    return dict(answer.get("Attributes") or {})


def queue_name(url: str) -> str:
    """Pure: the queue's name, the URL's last path segment (a metric label)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def receive(client: Any, url: str, wait_seconds: int = WAIT_SECONDS) -> list[dict[str, Any]]:
    answer = client.receive_message(QueueUrl=url, MaxNumberOfMessages=MAX_MESSAGES, WaitTimeSeconds=wait_seconds)
    return list(answer.get("Messages") or [])


def delete(client: Any, url: str, receipt_handle: str) -> None:
    client.delete_message(QueueUrl=url, ReceiptHandle=receipt_handle)


def clients(make: Callable[[str | None], Any], urls: list[str]) -> dict[str, Any]:
    """One client per queue, in the queue's Region."""
    return {url: make(queue_region(url)) for url in urls}
