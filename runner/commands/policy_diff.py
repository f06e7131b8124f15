"""`runner policy diff OLD NEW`: the RFC 6902 JSON Patch between two policies, and in words
what it grants and revokes (`granted: tools += curl (rule release-may-publish)`).

Both files are loaded as `run` would load them: a missing or empty one is the deny-all
policy (an empty document), an invalid one is an error (exit 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch

from runner.app import App
from runner.policy.model import BASE, LimitRaise, Policy, Rule, load_policy


@dataclass(frozen=True)
class Change:
    verb: str  # granted | revoked | changed | tightened | loosened
    text: str
    scope: str  # "base" or "rule NAME"

    def __str__(self) -> str:
        return f"{self.verb}: {self.text} ({self.scope})"

    def serialize(self) -> dict[str, str]:
        return {"verb": self.verb, "text": self.text, "scope": self.scope}


def _limit_values(limits: LimitRaise) -> dict[str, Any]:
    return {
        "timeout-minutes": limits.timeout_minutes,
        "memory": limits.memory_bytes,
        "cpus": limits.cpus,
        "pids": limits.pids,
        "user": limits.user,
    }


def _shown(key: str, value: Any, raw: LimitRaise) -> str:
    if value is None:
        return "unset"
    if key == "memory":
        return str(raw.memory)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _grants(policy: Policy) -> dict[str, tuple[Rule, LimitRaise]]:
    """Scope -> (what it grants, its limits); the base scope is the top-level lists."""
    if policy.denied is not None:
        return {}
    base = policy.limits
    base_limits = LimitRaise(
        timeout_minutes=base.timeout_minutes,
        memory=base.memory,
        memory_bytes=base.memory_bytes,
        cpus=base.cpus,
        pids=base.pids,
        user=base.user,
    )
    scopes = {BASE: (policy.base, base_limits)}
    for rule in policy.rules:
        scopes[f"rule {rule.name}"] = (rule, rule.limits)
    return scopes


def _lists(rule: Rule) -> dict[str, set[str]]:
    lists = {
        "images": set(rule.images),
        "tools": set(rule.tools),
        "uses": set(rule.uses),
        "secrets": set(rule.secrets),
    }
    for flag, on in (("network egress", rule.network), ("exec", rule.exec)):
        lists[flag] = {""} if on else set()
    lists["tools-all"] = {""} if rule.tools_all else set()
    return lists


def _compare_scope(
    scope: str, old: tuple[Rule, LimitRaise] | None, new: tuple[Rule, LimitRaise] | None
) -> list[Change]:
    changes: list[Change] = []
    empty = (Rule("", "", ""), LimitRaise())
    (old_rule, old_limits), (new_rule, new_limits) = old or empty, new or empty
    if old and new and (old_rule.mission, old_rule.job) != (new_rule.mission, new_rule.job):
        changes.append(
            Change(
                "changed",
                f"match mission {new_rule.mission!r}, job {new_rule.job!r} (was mission "
                f"{old_rule.mission!r}, job {old_rule.job!r})",
                scope,
            )
        )
    before, after = _lists(old_rule), _lists(new_rule)
    for key in after:
        for value in sorted(after[key] - before[key]):
            changes.append(Change("granted", f"{key} += {value}" if value else key, scope))
        for value in sorted(before[key] - after[key]):
            changes.append(Change("revoked", f"{key} -= {value}" if value else key, scope))
    was, now = _limit_values(old_limits), _limit_values(new_limits)
    for key in was:
        a, b = was[key], now[key]
        if a == b:
            continue
        text = f"limits.{key} {_shown(key, a, old_limits)} -> {_shown(key, b, new_limits)}"
        if key == "user" or a is None or b is None:
            verb = "granted" if a is None else "revoked" if b is None else "changed"
        else:
            verb = "granted" if b > a else "revoked"
        changes.append(Change(verb, text, scope))
    return changes


def summarize(old: Policy, new: Policy) -> list[Change]:
    """What changes, in words: each grant added or removed, each limit raised or lowered."""
    before, after = _grants(old), _grants(new)
    changes: list[Change] = []
    for scope in [*before, *(s for s in after if s not in before)]:
        changes.extend(_compare_scope(scope, before.get(scope), after.get(scope)))
    for name in sorted(new.enforce - old.enforce):
        changes.append(Change("tightened", f"enforce += {name}", BASE))
    for name in sorted(old.enforce - new.enforce):
        changes.append(Change("loosened", f"enforce -= {name}", BASE))
    return changes


def main(app: App, old: Path, new: Path) -> int:
    before = load_policy(old, app.root)
    after = load_policy(new, app.root)
    patch = jsonpatch.make_patch(dict(before.document), dict(after.document)).patch
    changes = summarize(before, after)
    out = app.out
    if out.json_mode:
        out.json(
            {
                "old": {"path": before.path, "digest": before.digest, "denied": before.denied},
                "new": {"path": after.path, "digest": after.digest, "denied": after.denied},
                "patch": patch,
                "changes": [c.serialize() for c in changes],
            }
        )
        return 0
    for policy, label in ((before, "old"), (after, "new")):
        state = f" ({policy.denied})" if policy.denied else ""
        out.line(f"{label}: {policy.path} sha256:{policy.digest[:12]}{state}")
    if not patch:
        out.line("no change")
        return 0
    colors = {"granted": "yellow", "loosened": "yellow", "revoked": "green", "tightened": "green"}
    for change in changes:
        out.line(out.paint(str(change), colors.get(change.verb, "bold")))
    out.line("patch (RFC 6902):")
    for op in patch:
        out.line(f"  {json.dumps(op, sort_keys=True, ensure_ascii=False)}")
    return 0
