"""`runner policy diff OLD NEW`: the RFC 6902 JSON Patch between two policies, and in words
what it grants and revokes (`runner.policy.diff`).

Both files are loaded as `run` would load them: a missing or empty one is the deny-all
policy (an empty document), an invalid one is an error (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path

from runner.app import App
from runner.policy.diff import diff
from runner.policy.loader import load_policy
from runner.policy.model import Policy

_COLORS = {"granted": "yellow", "loosened": "yellow", "revoked": "green", "tightened": "green"}


def main(app: App, old: Path, new: Path) -> int:
    found = diff(load_policy(old, app.root), load_policy(new, app.root))
    out = app.out
    if out.json_mode:
        out.json(
            {
                "old": _identity(found.old),
                "new": _identity(found.new),
                "patch": found.patch,
                "changes": [c.serialize() for c in found.changes],
            }
        )
        return 0
    for policy, label in ((found.old, "old"), (found.new, "new")):
        state = f" ({policy.denied})" if policy.denied else ""
        out.line(f"{label}: {policy.path} sha256:{policy.digest[:12]}{state}")
    if not found.patch:
        out.line("no change")
        return 0
    for change in found.changes:
        out.line(out.paint(str(change), _COLORS.get(change.verb, "bold")))
    out.line("patch (RFC 6902):")
    for op in found.patch:
        out.line(f"  {json.dumps(op, sort_keys=True, ensure_ascii=False)}")
    return 0


def _identity(policy: Policy) -> dict[str, str | None]:
    return {"path": policy.path, "digest": policy.digest, "denied": policy.denied}
