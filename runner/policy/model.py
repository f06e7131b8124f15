"""The default-deny policy: what it grants, and the decision on every capability a job asks.

    load_policy(path, root) -> Policy      fail closed: no policy, an empty one or one that
                                           is not a mapping denies everything (and says
                                           why); an unknown key or a bad value anywhere is
                                           InvalidPolicy (exit 2), never a looser policy
                                           (runner.policy_loader)
    decide(mission, policy, warnings=())   one Decision per capability per job instance
                                           (runner.capabilities), plus a denied `check`
                                           for each finding of a check the policy
                                           enforces (runner.security_checks, and the
                                           loader's `warnings`, e.g. `credential`)
    granted(decisions, job_key) -> Grants  what one job instance may use; PolicyDenied
                                           when anything it asks for was denied
    denials_message(decisions) -> str      one line per denial, for the run's error

A capability is allowed by the top-level lists (rule "base": `images`, `tools`, `uses`,
`limits`) or by the first rule, in file order, whose `match` globs (fnmatch, case-sensitive)
match the mission's name and the job's id and whose `allow` grants it. See docs/policy.md.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from runner.errors import PolicyDenied
from runner.findings import Finding, Severity
from runner.mission.model import Mission
from runner.mission.plan import JobInstance
from runner.policy.capabilities import (
    Capability,
    is_image_reference,
    is_pinned,
    mission_capabilities,
)

DEFAULT_PATH = Path("policies/default.yml")
VERSION = 1
BASE = "base"
BUILTIN = "builtin"
RULE = "policy"
ENFORCEABLE = ("template-injection", "mission-secrets", "unpinned-image", "tools-all", "credential")

# ---------------------------------------------------------------------- records


@dataclass(frozen=True)
class Limits:
    timeout_minutes: float = 60.0
    memory: str = "1g"
    memory_bytes: int = 1024**3
    cpus: float = 1.0
    pids: int = 256
    user: int = 65534

    def serialize(self) -> dict[str, Any]:
        """Integers only, so that the ledger's canonical JSON (no floats) can hold it."""
        return {
            "timeout_seconds": round(self.timeout_minutes * 60),
            "memory": self.memory,
            "memory_bytes": self.memory_bytes,
            "millicpus": round(self.cpus * 1000),
            "pids": self.pids,
            "user": self.user,
        }


@dataclass(frozen=True)
class LimitRaise:
    """A rule's `allow.limits`: each given value is a ceiling the matched jobs may reach."""

    timeout_minutes: float | None = None
    memory: str | None = None
    memory_bytes: int | None = None
    cpus: float | None = None
    pids: int | None = None
    user: int | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    mission: str  # glob over the mission's name
    job: str  # glob over the job's id
    images: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    network: bool = False
    secrets: frozenset[str] = frozenset()  # upper-cased
    exec: bool = False
    tools_all: bool = False
    limits: LimitRaise = field(default_factory=LimitRaise)
    description: str = ""

    def matches(self, mission: str, job: str) -> bool:
        return fnmatchcase(mission, self.mission) and fnmatchcase(job, self.job)

    def grants(self, cap: Capability) -> bool:
        if cap.kind == "image":
            return any(fnmatchcase(cap.value, p) for p in self.images)
        if cap.kind == "tool":
            return cap.value in self.tools or self.tools_all
        if cap.kind == "tools-all":
            return self.tools_all
        if cap.kind == "uses":
            return any(fnmatchcase(cap.value, p) for p in self.uses)
        if cap.kind == "network":
            return self.network
        if cap.kind == "secret":
            return cap.value in self.secrets
        if cap.kind == "exec":
            return self.exec
        if cap.kind == "resource":
            ceiling = self.limits.timeout_minutes
            return cap.minutes is not None and ceiling is not None and cap.minutes <= ceiling
        return False


@dataclass(frozen=True)
class Policy:
    path: str  # as shown to the user
    document: Mapping[str, Any] = field(repr=False)  # the file's content, for JSON Patch
    digest: str  # sha256 of the canonical JSON of `document`
    images: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    rules: tuple[Rule, ...] = ()
    enforce: frozenset[str] = frozenset()
    denied: str | None = None  # set: the policy denies everything, and this says why

    @functools.cached_property
    def base(self) -> Rule:
        """The top-level lists, as a rule matching everything."""
        return Rule(
            BASE,
            "*",
            "*",
            images=self.images,
            tools=self.tools,
            uses=self.uses,
            limits=LimitRaise(timeout_minutes=self.limits.timeout_minutes),
        )

    def rules_for(self, mission: str, job: str) -> list[Rule]:
        return [rule for rule in self.rules if rule.matches(mission, job)]

    def limits_for(self, mission: str, job: str) -> Limits:
        """The base limits raised by every matching rule (the user: the first that sets one)."""
        limits = self.limits
        user: int | None = None
        for rule in self.rules_for(mission, job):
            lr = rule.limits
            if lr.timeout_minutes is not None and lr.timeout_minutes > limits.timeout_minutes:
                limits = replace(limits, timeout_minutes=lr.timeout_minutes)
            if lr.memory and lr.memory_bytes and lr.memory_bytes > limits.memory_bytes:
                limits = replace(limits, memory=lr.memory, memory_bytes=lr.memory_bytes)
            if lr.cpus is not None and lr.cpus > limits.cpus:
                limits = replace(limits, cpus=lr.cpus)
            if lr.pids is not None and lr.pids > limits.pids:
                limits = replace(limits, pids=lr.pids)
            if user is None and lr.user is not None:
                user = lr.user
        return limits if user is None else replace(limits, user=user)


@dataclass(frozen=True)
class Decision:
    mission: str
    job: str  # the job instance key ("test (1, linux)")
    capability: str  # image tool tools-all network secret exec resource uses | check
    value: str
    allowed: bool
    rule: str | None  # "base", a rule name, "builtin"; None when denied
    reason: str
    keypath: str
    line: int
    col: int
    path: str = ""  # the mission file
    limits: Limits | None = None  # on the image decision: the job instance's limits

    def serialize(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mission": self.mission,
            "path": self.path,
            "job": self.job,
            "capability": self.capability,
            "value": self.value,
            "allowed": self.allowed,
            "rule": self.rule,
            "reason": self.reason,
            "keypath": self.keypath,
            "line": self.line,
            "col": self.col,
        }
        if self.limits is not None:
            out["limits"] = self.limits.serialize()
        return out

    def __str__(self) -> str:
        verdict = "allowed" if self.allowed else "denied"
        return f"{self.capability} {self.value}: {verdict} ({self.reason})"


@dataclass(frozen=True)
class Grants:
    image: str
    tools: tuple[str, ...] | Literal["all"]
    network: bool
    secrets: frozenset[str]
    exec: bool
    limits: Limits
    uses: frozenset[str] = frozenset()


def load_policy(path: Path | None, root: Path) -> Policy:
    """The policy at `path` (default `root/policies/default.yml`), failing closed; see
    `runner.policy_loader`."""
    from runner.policy.loader import load

    return load(path, root)


# ---------------------------------------------------------------------- deciding


def decide(mission: Mission, policy: Policy, warnings: Iterable[Finding] = ()) -> list[Decision]:
    """The decision on every capability of every job instance, in plan order.

    `warnings` are the loader's warnings about the mission (`load_mission(path)[1]`): those
    of a check the policy enforces (e.g. `credential`) become denials, like the security
    checks of `runner.security_checks` that it enforces.
    """
    from runner.policy.security_checks import enforced_findings, with_enforcement

    decisions: list[Decision] = []
    enforced: list[Finding] = []
    if policy.denied is None and policy.enforce:
        enforced = enforced_findings(mission, policy.enforce)
        enforced += [
            f
            for f in with_enforcement(warnings, policy.enforce)
            if f.severity is Severity.ERROR and f.rule in policy.enforce
        ]
    for inst, caps in mission_capabilities(mission):
        limits = policy.limits_for(mission.name, inst.job.id)
        for cap in caps:
            decision = _decide_one(mission, policy, inst, cap)
            if cap.kind == "image":
                decision = replace(decision, limits=limits)
            decisions.append(decision)
        for finding in enforced:
            if finding.rule == "unpinned-image" and finding.keypath.endswith(".container"):
                continue  # decided on the instance's image decision
            if _concerns(finding.keypath, inst.job.id):
                decisions.append(_check_decision(mission, inst, finding))
    return decisions


def _concerns(keypath: str, job_id: str) -> bool:
    """Whether a finding at keypath concerns job_id (mission-level findings concern all)."""
    if not keypath.startswith("jobs."):
        return True
    rest = keypath[len("jobs.") :]
    return rest == job_id or rest.startswith(f"{job_id}.") or rest.startswith(f"{job_id}[")


def _check_decision(mission: Mission, inst: JobInstance, finding: Finding) -> Decision:
    return Decision(
        mission=mission.name,
        job=inst.key,
        capability="check",
        value=finding.rule,
        allowed=False,
        rule=None,
        reason=f"{finding.message} (the policy enforces {finding.rule})",
        keypath=finding.keypath,
        line=finding.line,
        col=finding.col,
        path=mission.path,
    )


def _decide_one(mission: Mission, policy: Policy, inst: JobInstance, cap: Capability) -> Decision:
    line, col = mission.where(cap.keypath)

    def make(allowed: bool, rule: str | None, reason: str) -> Decision:
        return Decision(
            mission=mission.name,
            job=inst.key,
            capability=cap.kind,
            value=cap.value,
            allowed=allowed,
            rule=rule,
            reason=reason,
            keypath=cap.keypath,
            line=line,
            col=col,
            path=mission.path,
        )

    if cap.builtin:
        return make(True, BUILTIN, cap.builtin)
    if cap.refused:
        return make(False, None, cap.refused)
    if policy.denied is not None:
        return make(False, None, policy.denied)
    unpinned = (
        cap.kind == "image"
        and "unpinned-image" in policy.enforce
        and is_image_reference(cap.value)
        and not is_pinned(cap.value)
    )
    if unpinned:
        return make(
            False,
            None,
            f"image {cap.value} is not pinned by digest and the policy enforces unpinned-image; "
            f"pin it ({cap.value.split('@')[0]}@sha256:<digest>)",
        )
    if policy.base.grants(cap):
        return make(True, BASE, _granted_by(cap, "the top-level lists"))
    for rule in policy.rules_for(mission.name, inst.job.id):
        if rule.grants(cap):
            return make(True, rule.name, _granted_by(cap, f"rule {rule.name}"))
    return make(False, None, _why_denied(mission, policy, inst, cap))


def _granted_by(cap: Capability, who: str) -> str:
    if cap.kind == "resource":
        return f"{cap.value} is within the ceiling of {who}"
    return f"granted by {who}"


def _why_denied(mission: Mission, policy: Policy, inst: JobInstance, cap: Capability) -> str:
    job = inst.job.id
    scope = f"mission {mission.name!r}, job {job!r}"
    if cap.kind == "resource":
        head = (
            f"{cap.value} is above the limit of {policy.limits.timeout_minutes:g} minutes "
            f"and no rule matching {scope} raises it"
        )
    elif cap.kind in ("image", "tool", "uses"):
        head = f"neither the top-level `{cap.kind}s:` nor a rule matching {scope} grants it"
    else:
        head = f"no rule matching {scope} grants it"
    if cap.kind == "uses" and not cap.value.startswith(("./", "docker://")):
        head += " (a marketplace action cannot run here anyway: vendor it under ./actions/)"
    elsewhere = [r.name for r in policy.rules if r.grants(cap) and not r.matches(mission.name, job)]
    if elsewhere:
        head += f"; rule {', '.join(elsewhere)} would, but does not match this job"
    return f"{head}; to allow it: {_HOW[cap.kind]} in {policy.path}"


_HOW = {
    "image": "add a pattern to `images:` (or a rule's `allow.images`)",
    "tool": "add it to `tools:` (or a rule's `allow.tools`)",
    "tools-all": "a rule with `allow: {tools-all: true}`",
    "network": "a rule with `allow: {network: egress}`",
    "secret": "a rule with `allow: {secrets: [NAME]}`",
    "exec": "a rule with `allow: {exec: true}`",
    "resource": "a rule with `allow: {limits: {timeout-minutes: N}}`",
    "uses": "add a pattern to `uses:` (or a rule's `allow.uses`)",
}


def denials(decisions: Iterable[Decision]) -> list[Decision]:
    return [d for d in decisions if not d.allowed]


def denials_message(decisions: Iterable[Decision]) -> str:
    """One line per denial: `path:line:col: keypath: <capability> <value> denied to <job>: why`."""
    lines = []
    for d in denials(decisions):
        lines.append(
            f"{d.path}:{d.line}:{d.col}: {d.keypath}: {d.capability} {d.value} denied to job "
            f"{d.job!r}: {d.reason}"
        )
    return "\n".join(lines)


def granted(decisions: Sequence[Decision], job_key: str, *, mission: str | None = None) -> Grants:
    """What job instance `job_key` may use; PolicyDenied if anything it asks for was denied."""
    mine = [d for d in decisions if d.job == job_key and (mission is None or d.mission == mission)]
    if not mine:
        raise ValueError(f"no decisions for job {job_key!r}")
    refused = denials(mine)
    if refused:
        raise PolicyDenied(
            f"{len(refused)} request{'s' if len(refused) != 1 else ''} of job {job_key!r} "
            f"denied by the policy:\n{denials_message(refused)}"
        )
    image = next(d for d in mine if d.capability == "image")
    tools: tuple[str, ...] | Literal["all"] = tuple(d.value for d in mine if d.capability == "tool")
    if any(d.capability == "tools-all" for d in mine):
        tools = "all"
    return Grants(
        image=image.value,
        tools=tools,
        network=any(d.capability == "network" for d in mine),
        secrets=frozenset(d.value for d in mine if d.capability == "secret" and d.rule != BUILTIN),
        exec=any(d.capability == "exec" for d in mine),
        limits=image.limits if image.limits is not None else Limits(),
        uses=frozenset(d.value for d in mine if d.capability == "uses"),
    )


def findings_of(decisions: Iterable[Decision]) -> list[Finding]:
    """Denials as findings (`path:line:col: keypath: message [policy]`)."""
    return [
        Finding(
            d.path,
            d.line,
            d.col,
            f"{d.capability} {d.value} denied to job {d.job!r}: {d.reason}",
            RULE,
            d.keypath,
            Severity.ERROR,
        )
        for d in denials(decisions)
    ]
