"""The Kubernetes API server's answers, classified like AWS errors (pure).

The operator's own Kubernetes writes (ECRPullSecret's Secret and ServiceAccount
adapters in ``controller.kubeobjects``) go through the same reconcile loop as
the AWS kinds, so their failures need the same two answers: which class
(retry, terminal, observe again) and whether the write may have been stored
anyway. This module gives them for ``controller.kubeclient.ApiError``; the AWS
layer (``controller.aws.errors``) knows nothing of Kubernetes, and the reconcile
loop (``controller.reconcile.loop``) picks the classifier by the error's type.
"""

from __future__ import annotations

import json

from controller.aws.errors import Classified, ErrorClass, clean_message
from controller.kubeclient import ApiError

# The API server's Status reasons for the answers the Kubernetes adapters can get.
_CLASSES = {404: ErrorClass.NOT_FOUND, 409: ErrorClass.TRANSIENT, 403: ErrorClass.ACCESS_DENIED,
            401: ErrorClass.ACCESS_DENIED, 429: ErrorClass.THROTTLED}


def classify(error: ApiError) -> Classified:
    """The class of one API server answer, from its HTTP status and Status ``reason``."""
    try:
        body = json.loads(error.body)
        code, message = str(body.get("reason") or f"HTTP{error.status}"), str(body.get("message") or "")
    except (ValueError, AttributeError):
        code, message = f"HTTP{error.status}", ""
    cls = _CLASSES.get(error.status)
    if error.status == 409 and code == "AlreadyExists":
        cls = ErrorClass.ALREADY_EXISTS  # a create that lost the race: observe again
    if cls is None:
        cls = ErrorClass.TRANSIENT if error.status >= 500 else ErrorClass.INVALID
    return Classified(cls, code, clean_message(message), api="kubernetes")


def outcome_unknown(error: ApiError) -> bool:
    """May the API server have stored the write that got this answer?

    429 and 5xx may come after the write was stored; a 409 on an update is a stale
    resourceVersion (refused, nothing stored), and every other 4xx is a refusal.
    """
    return error.status == 429 or error.status >= 500
