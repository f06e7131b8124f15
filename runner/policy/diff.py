"""What changes between two policies: the RFC 6902 JSON Patch between their documents,
and in words what it grants and revokes (`granted: tools += curl (rule release-may-publish)`).

    diff(old, new) -> PolicyDiff   the patch and the `Change`s, scope by scope ("base": the
                                   top-level lists; "rule NAME"), grant kind by grant kind
                                   (`Kind` order), then each limit, then `enforce`

A deny-all policy grants nothing, so the diff against it shows everything. Verbs:
`granted`, `revoked`, `changed` (a rule's `match`, a `user`), `tightened` / `loosened`
(`enforce`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, assert_never

import jsonpatch

from runner.policy.capabilities import Kind
from runner.policy.model import BASE, LimitRaise, Policy, Rule


@dataclass(frozen=True)
class Change:
    verb: str  # granted | revoked | changed | tightened | loosened
    text: str
    scope: str  # "base" or "rule NAME"

    def __str__(self) -> str:
        return f"{self.verb}: {self.text} ({self.scope})"

    def serialize(self) -> dict[str, str]:
        return {"verb": self.verb, "text": self.text, "scope": self.scope}


@dataclass(frozen=True)
class PolicyDiff:
    old: Policy
    new: Policy
    patch: list[dict[str, Any]]  # RFC 6902 operations from old.document to new.document
    changes: list[Change]


def diff(old: Policy, new: Policy) -> PolicyDiff:
    patch = jsonpatch.make_patch(dict(old.document), dict(new.document)).patch
    return PolicyDiff(old, new, patch, summarize(old, new))


def summarize(old: Policy, new: Policy) -> list[Change]:
    """What changes, in words: each grant added or removed, each limit raised or lowered."""
    before, after = _scopes(old), _scopes(new)
    changes: list[Change] = []
    for scope in [*before, *(s for s in after if s not in before)]:
        changes.extend(_compare_scope(scope, before.get(scope), after.get(scope)))
    for name in sorted(new.enforce - old.enforce):
        changes.append(Change("tightened", f"enforce += {name}", BASE))
    for name in sorted(old.enforce - new.enforce):
        changes.append(Change("loosened", f"enforce -= {name}", BASE))
    return changes


def _scopes(policy: Policy) -> dict[str, tuple[Rule, LimitRaise]]:
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


def _flag(on: bool) -> set[str]:
    return {""} if on else set()


def _granted(rule: Rule, kind: Kind) -> tuple[str, set[str]] | None:
    """How a change of `kind` is named, and what `rule` grants of it ({""}: a flag that is
    on); None for the resource ceiling, which is compared with the other limits."""
    match kind:
        case Kind.IMAGE:
            return "images", set(rule.images)
        case Kind.TOOL:
            return "tools", set(rule.tools)
        case Kind.USES:
            return "uses", set(rule.uses)
        case Kind.SECRET:
            return "secrets", set(rule.secrets)
        case Kind.NETWORK:
            return "network egress", _flag(rule.network)
        case Kind.EXEC:
            return "exec", _flag(rule.exec)
        case Kind.TOOLS_ALL:
            return "tools-all", _flag(rule.tools_all)
        case Kind.RESOURCE:
            return None
        case _:
            assert_never(kind)


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


def _compare_scope(
    scope: str, old: tuple[Rule, LimitRaise] | None, new: tuple[Rule, LimitRaise] | None
) -> list[Change]:
    changes: list[Change] = []
    empty = (Rule.nothing(), LimitRaise())
    (old_rule, old_limits), (new_rule, new_limits) = old or empty, new or empty
    if old and new and old_rule.globs() != new_rule.globs():
        changes.append(
            Change(
                "changed",
                f"match {new_rule.describe_match(old_rule)} "
                f"(was {old_rule.describe_match(new_rule)})",
                scope,
            )
        )
    for kind in Kind:
        before, after = _granted(old_rule, kind), _granted(new_rule, kind)
        if before is None or after is None:
            continue
        name, was, now = after[0], before[1], after[1]
        for value in sorted(now - was):
            changes.append(Change("granted", f"{name} += {value}" if value else name, scope))
        for value in sorted(was - now):
            changes.append(Change("revoked", f"{name} -= {value}" if value else name, scope))
    was_limits, now_limits = _limit_values(old_limits), _limit_values(new_limits)
    for key in was_limits:
        a, b = was_limits[key], now_limits[key]
        if a == b:
            continue
        text = f"limits.{key} {_shown(key, a, old_limits)} -> {_shown(key, b, new_limits)}"
        if key == "user" or a is None or b is None:
            verb = "granted" if a is None else "revoked" if b is None else "changed"
        else:
            verb = "granted" if b > a else "revoked"
        changes.append(Change(verb, text, scope))
    return changes
