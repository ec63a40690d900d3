"""What AWS added since the lock, for the calls the operator makes (run by scripts/check-upstream).

Compares two botocore service models: the locked botocore's data (``--locked DIR``, a
``botocore/data`` folder) and the botocore this interpreter imports (the newest, in
check-upstream's throwaway venv). For every AWS operation in the operator's own IAM policy
(``controller.iampolicy.document``, the one list of what it calls) it prints the request and
answer members and enum values that are new, each marked

- ``handled``: the name is in the operator's code (``controller/``), so the models, adapters or
  validation know it (the tripwire tests say whether they know it right);
- ``not named``: the operator neither sends nor reads it by name (new optional members of
  documents it passes through untouched land here too).

Nothing here decides pass or fail: the tripwire tests (``pytest -m upstream``) do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from botocore.loaders import Loader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller import iampolicy  # noqa: E402


def operations() -> dict[str, set[str]]:
    """service -> operations the operator is allowed to call (and so calls)."""
    found: dict[str, set[str]] = {}
    for statement in iampolicy.document(iampolicy.Options())["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            service, operation = action.split(":", 1)
            found.setdefault(service, set()).add(operation)
    return found


def shapes_of(model: dict, shape: str, path: str, seen: set[str], out: dict[str, dict]) -> None:
    """Every structure member and enum reachable from ``shape``, keyed by a readable path."""
    if shape in seen:
        return
    seen = seen | {shape}
    body = model["shapes"].get(shape, {})
    if body.get("enum"):
        out[path] = {"enum": set(body["enum"])}
    if body.get("type") == "structure":
        out[path] = {"members": set(body.get("members", {}))}
        for member, ref in body.get("members", {}).items():
            shapes_of(model, ref["shape"], f"{path}.{member}", seen, out)
    elif body.get("type") == "list":
        shapes_of(model, body["member"]["shape"], f"{path}[]", seen, out)
    elif body.get("type") == "map":
        shapes_of(model, body["value"]["shape"], f"{path}{{}}", seen, out)


def reachable(model: dict, operation: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    spec = model["operations"].get(operation, {})
    for side in ("input", "output"):
        if side in spec:
            shapes_of(model, spec[side]["shape"], f"{operation}.{side}", set(), out)
    return out


def code_text() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "controller").rglob("*.py"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locked", required=True, help="the locked botocore's data folder")
    args = parser.parse_args()
    import botocore

    newest_loader = Loader()
    locked_loader = Loader(extra_search_paths=[args.locked], include_default_search_paths=False)
    code = code_text()
    print(f"botocore {botocore.__version__} against the lock's, for the operations the operator calls:")
    total = 0
    for service, ops in sorted(operations().items()):
        newest = newest_loader.load_service_model(service, "service-2")
        locked = locked_loader.load_service_model(service, "service-2")
        for operation in sorted(ops):
            if operation not in newest["operations"]:
                continue  # an IAM action with no API operation (iam:PassRole, kms:GenerateDataKey...)
            if operation not in locked["operations"]:
                print(f"  {service}:{operation}: new operation")
                continue
            before, after = reachable(locked, operation), reachable(newest, operation)
            for path, now in sorted(after.items()):
                then = before.get(path, {})
                for key, what in (("members", "member"), ("enum", "value")):
                    for added in sorted(now.get(key, set()) - then.get(key, set())):
                        if path not in before and key == "members":
                            continue  # a wholly new structure: its parent member is reported
                        total += 1
                        verdict = "handled" if f'"{added}"' in code or f"'{added}'" in code or \
                            f"{added}=" in code or f"{added}:" in code else "not named"
                        print(f"  {service}:{path} new {what} {added!r}: {verdict}")
    print(f"{total} additions" if total else "no additions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
