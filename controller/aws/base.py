"""The shape every AWS object kind follows (crossplane's Observe/Create/Update/Delete).

Each module in ``controller/aws/`` has the same rooms:

- ``desired(...)``: pure, builds the exact boto3 request (or document) wanted;
- ``compare(desired, observed)``: pure, returns the named differences (ACK's
  Delta), so an update touches only what differs and a no-op resync writes
  nothing;
- ``observe(client, ...)``: one cheap read, returns an ``Observation`` (NotFound
  means "absent", never an error);
- ``create / update / delete``: thin boto3 calls (AlreadyExists on create means
  "observe again", NotFound on delete means done).

AWS modules never touch kopf or status; reconcilers in ``controller/reconcile``
decide what to call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Observation:
    """What one read of an AWS object says."""

    exists: bool
    # True when the object carries our owner tag (or the service has no tags and
    # ownership is decided another way, e.g. by Sid prefix).
    owned: bool = True
    differences: tuple[str, ...] = ()
    observed: dict[str, Any] = field(default_factory=dict)

    @property
    def up_to_date(self) -> bool:
        return self.exists and not self.differences


ABSENT = Observation(exists=False, owned=False)
