"""The aws tier's explicit, reviewed TenancyPolicy: every field open.

These tests exercise the AWS adapters, the owner marks and plan with fixed names (namespace
``team``, role ``exec-role``, family ``web``, repositories ``app``, other accounts) that the
shipped default refuses before any AWS call, as it should (it scopes every field to the
namespace: controller/tenancy.py). So they judge under this policy, the one an admin writes for
a cluster with one trusted team; the shipped default itself is held by tests/unit/test_tenancy.py
and tests/e2e/test_tenancy_guard.py.
"""

from __future__ import annotations

from controller import tenancy

OPEN = tenancy.from_spec("aws-tier-open", {"defaultAction": "Allow", "default": {}})
assert OPEN.error is None and OPEN.default == {}
