"""Ownership marks inside documents that have no tags: statement Sid prefixes.

IAM inline policies, ECR repository policies, repository creation templates and the
registry policy carry no tags, so the operator marks the statements it owns by their
``Sid``. This module is the one rule for that mark, used by
``controller.aws.iam_policies`` and ``controller.aws.repository_policies`` alike.

The mark of the owner ``<cluster-id>/<namespace>/<name>`` is::

    Regaccess <readable> <hash> Z

- ``readable``: the namespace and the name reduced to ``[a-z0-9]`` (at most 20 + 30
  characters), for people reading a policy; it decides nothing.
- ``hash``: 32 upper-case hex digits (128 bits) of HMAC-SHA256, keyed with the
  cluster id, over the owner encoded without ambiguity (each of cluster id,
  namespace and name length-prefixed, so ``a/bc`` and ``ab/c`` differ). The cluster
  id is both the key and part of the message: two clusters sharing a registry or an
  account never share a mark.
- ``Z``: the tail. It is neither in the readable part (lower case, digits) nor in the
  hash (digits, ``A``-``F``), so a mark ends at its first ``Z``: one owner's mark never
  starts another owner's Sids.

IAM and ECR accept Sids of ASCII letters and digits only; a mark is at most
``MAX_MARK_CHARS`` (92) characters, the Sids that carry it at most 92 + 25 (the
longest statement name, ``DecryptRegistryCredential``). IAM documents no Sid length
limit; every character counts against the policy size limits (10,240 characters).

Why a mark cannot be forged: to take another owner's statements for its own, a tenant
would need a namespace/name whose mark equals the victim's. The readable part is not
compared alone, the 128-bit hash is; finding a second input with a given HMAC-SHA256
value is a second-preimage search of about 2^128 tries. The key (the cluster id) is
not a secret (it is in the owner tags and the operator's flags): the key gives each
cluster its own hash function, the 128 bits are what make a search hopeless.

Migration: versions before this one wrote ``Regaccess <readable> <10 hex> X`` (40
bits of unkeyed sha256; ECR statements left the cluster id out). ``legacy_mark()``
gives that old mark of an owner; the adapters accept it as ours-but-outdated only
where status records the object as ours, and rewrite it once with the new mark
(docs/concepts.md, "Ownership marks").
"""

from __future__ import annotations

import hashlib
import hmac
import re

SID_HEAD = "Regaccess"
SID_TAIL = "Z"
# The tail of the marks written before keyed marks (see legacy_mark).
LEGACY_SID_TAIL = "X"
HASH_CHARS = 32   # 128 bits
LEGACY_HASH_CHARS = 10
READABLE_NAMESPACE = 20
READABLE_NAME = 30
MAX_MARK_CHARS = len(SID_HEAD) + READABLE_NAMESPACE + READABLE_NAME + HASH_CHARS + len(SID_TAIL)
_NOT_SID_CHAR = re.compile(r"[^a-z0-9]")
# Any owner's mark at the start of a Sid, this format or the legacy one: the head, the
# readable part, the upper-case hex hash, a tail. "RegaccessNotes" is no mark.
ANY_MARK = re.compile(rf"^{SID_HEAD}[a-z0-9]*[0-9A-F]+[{SID_TAIL}{LEGACY_SID_TAIL}]")


def _readable(namespace: str, name: str) -> str:
    return (_NOT_SID_CHAR.sub("", namespace.lower())[:READABLE_NAMESPACE]
            + _NOT_SID_CHAR.sub("", name.lower())[:READABLE_NAME])


def _encoded(*parts: str) -> bytes:
    """The parts length-prefixed (``<bytes>:<part>`` each): no two tuples encode alike."""
    out = b""
    for part in parts:
        raw = part.encode()
        out += str(len(raw)).encode() + b":" + raw
    return out


def owner_digest(cluster_id: str, namespace: str, name: str) -> str:
    """HMAC-SHA256 (key: the cluster id) of the encoded owner, as 32 upper-case hex digits."""
    mac = hmac.new(cluster_id.encode(), _encoded(cluster_id, namespace, name), hashlib.sha256)
    return mac.hexdigest()[:HASH_CHARS].upper()


def sid_prefix(cluster_id: str, namespace: str, name: str) -> str:
    """The Sid prefix that marks the statements of cluster_id/namespace/name."""
    return f"{SID_HEAD}{_readable(namespace, name)}{owner_digest(cluster_id, namespace, name)}{SID_TAIL}"


def split_owner(owner: str) -> tuple[str, str, str]:
    """``<cluster-id>/<namespace>/<name>`` as its three parts (none of them holds a ``/``:
    the cluster id is validated, namespaces and names are Kubernetes names)."""
    cluster_id, namespace, name = owner.split("/", 2)
    return cluster_id, namespace, name


def owner_sid_prefix(owner: str) -> str:
    """``sid_prefix`` of an owner mark ``<cluster-id>/<namespace>/<name>``."""
    return sid_prefix(*split_owner(owner))


def legacy_mark(scope: str, name: str) -> str:
    """The mark versions before keyed marks wrote: readable part, 10 hex of sha256, ``X``.

    ECR statements used ``scope`` = the namespace (no cluster id); IAM inline policies
    ``<cluster-id>/<namespace>``. Forgeable (40 unkeyed bits): only ever accepted where
    status records the object as ours (see the module docstring)."""
    digest = hashlib.sha256(f"{scope}/{name}".encode()).hexdigest()[:LEGACY_HASH_CHARS].upper()
    return f"{SID_HEAD}{_readable(scope, name)}{digest}{LEGACY_SID_TAIL}"


def remarked(sid: str, old: str, new: str) -> str:
    """A Sid carrying the mark ``old`` as it reads with ``new`` instead (others unchanged)."""
    return new + sid[len(old):] if sid.startswith(old) else sid
