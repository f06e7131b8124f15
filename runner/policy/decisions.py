"""The policy's decision on every capability a job asks for, and what a job may then use.

    decide(mission, policy, warnings=())   one Decision per capability per job instance
                                           (`runner.policy.capabilities`), plus a denied
                                           `check` for each finding of a check the policy
                                           enforces (`runner.policy.security_checks`, and
                                           the loader's `warnings`, e.g. `credential`)
    granted(decisions, job_key) -> Grants  what one job instance may use; PolicyDenied
                                           when anything it asks for was denied
    denials_message(decisions) -> str      one line per denial (the same denial of many
                                           instances of a job once), for the run's error
    grouped(decisions) -> [Grouped]        identical decisions of a job's instances, once

A capability is allowed by the top-level lists (rule "base": `images`, `tools`, `uses`,
`limits`) or by the first rule, in file order, whose `match` globs (fnmatch, case-sensitive)
match the `Subject` (the mission's file path, the event and ref the invoker gives, the job's
id, the mission's declared name) and whose `allow` grants it. Each decision says
why, per `Kind`: what granted it, or why it was denied and what would allow it (the text
`policy check --explain` prints). See docs/policy.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any, Final, Literal, assert_never

from runner.engine.catalog import Catalog
from runner.errors import InvalidInput, PolicyDenied
from runner.findings import Finding, Severity
from runner.mission.actions import ActionKind, kind_of, vendoring
from runner.mission.model import Mission
from runner.mission.plan import JobInstance
from runner.policy.capabilities import (
    Capability,
    Kind,
    is_image_reference,
    is_pinned,
    mission_capabilities,
    service_of,
)
from runner.policy.model import BASE, BUILTIN, Grants, Limits, Policy, Rule, Subject, allow_key
from runner.policy.security_checks import SecurityCheck, enforced_findings, with_enforcement

CHECK: Final = "check"  # the capability of a decision on an enforced security check


@dataclass(frozen=True)
class Decision:
    mission: str
    job: str  # the job instance key ("test (1, linux)")
    capability: Kind | Literal["check"]
    value: str
    allowed: bool
    rule: str | None  # "base", a rule name, "builtin"; None when denied
    reason: str
    keypath: str
    line: int
    col: int
    path: str = ""  # the mission file
    limits: Limits | None = None  # on the image decision: the job instance's limits
    job_id: str = ""  # the job whose instance this is (not serialized: `job` names it)

    def serialize(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mission": self.mission,
            "path": self.path,
            "job": self.job,
            "capability": str(self.capability),
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


def decide(
    mission: Mission,
    policy: Policy,
    warnings: Iterable[Finding] = (),
    *,
    event: str = "",
    ref: str = "",
    catalog: Catalog | None = None,
) -> list[Decision]:
    """The decision on every capability of every job instance, in plan order.

    `warnings` are the loader's warnings about the mission (`load_mission(path)[1]`): those
    of a check the policy enforces (e.g. `credential`) become denials, like the security
    checks of `runner.policy.security_checks` that it enforces. `event` and `ref` are the
    invoker's (`--event`, `--ref`); "" is unknown, which only a rule's `*` matches. With
    the tool `catalog`, an allowed tool's reason says what it brings into the container.
    """
    decisions: list[Decision] = []
    enforced: list[Finding] = []
    if policy.denied is None and policy.enforce:
        enforced = enforced_findings(mission, policy.enforce)
        enforced += [
            f
            for f in with_enforcement(warnings, policy.enforce)
            if f.severity is Severity.ERROR and f.rule in policy.enforce
        ]
    toolchains = {(name, version): image for name, version, image in policy.toolchains}
    for inst, caps in mission_capabilities(mission, dict(policy.runs_on), toolchains):
        subject = Subject(mission.path, inst.job.id, mission.name, event, ref)
        limits = policy.limits_for(subject)
        for cap in caps:
            decision = _decide_one(mission, policy, inst, cap, subject)
            if cap.kind is Kind.TOOL and decision.allowed and catalog is not None:
                decision = replace(decision, reason=f"{decision.reason}; {_brings(cap, catalog)}")
            if cap.kind is Kind.IMAGE:
                decision = replace(decision, limits=limits)
            decisions.append(decision)
        for finding in enforced:
            on_image = finding.keypath.endswith(".container")
            if finding.rule == SecurityCheck.UNPINNED_IMAGE and on_image:
                continue  # decided on the instance's image decision
            if _concerns(finding.keypath, inst.job.id):
                decisions.append(_check_decision(mission, inst, finding))
    return decisions


def _brings(cap: Capability, catalog: Catalog) -> str:
    """What an allowed tool brings into the container, from the catalog (or by name)."""
    try:
        return catalog.get(cap.value).describe()
    except InvalidInput as exc:  # a multi-call binary
        return f"{exc.message}: the run will refuse it"


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
        capability=CHECK,
        value=finding.rule,
        allowed=False,
        rule=None,
        reason=f"{finding.message} (the policy enforces {finding.rule})",
        keypath=finding.keypath,
        line=finding.line,
        col=finding.col,
        path=mission.path,
        job_id=inst.job.id,
    )


def _decide_one(
    mission: Mission, policy: Policy, inst: JobInstance, cap: Capability, subject: Subject
) -> Decision:
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
            job_id=inst.job.id,
        )

    if cap.builtin:
        return make(True, BUILTIN, cap.builtin)
    if cap.refused:
        return make(False, None, cap.refused)
    if policy.denied is not None:
        return make(False, None, policy.denied)
    unpinned = (
        cap.kind is Kind.IMAGE
        and SecurityCheck.UNPINNED_IMAGE in policy.enforce
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
    for rule in policy.rules_for(subject):
        if rule.grants(cap):
            return make(True, rule.name, _granted_by(cap, f"rule {rule.name}"))
    return make(False, None, _why_denied(policy, cap, subject))


# ---------------------------------------------------------------------- explaining


DOCKER_TOOLS = (
    "; it runs with only the job's `tools:`, cut from that image "
    "(the whole image only with `tools: all`, which needs its own grant)"
)


def _granted_by(cap: Capability, who: str) -> str:
    match cap.kind:
        case Kind.RESOURCE:
            return f"{cap.value} is within the ceiling of {who}"
        case Kind.USES if cap.value.startswith("docker://"):
            return f"granted by {who}{DOCKER_TOOLS}"
        case (
            Kind.IMAGE
            | Kind.TOOL
            | Kind.USES
            | Kind.SECRET
            | Kind.NETWORK
            | Kind.EXEC
            | Kind.TOOLS_ALL
        ):
            return f"granted by {who}"
        case _:
            assert_never(cap.kind)


def _why_denied(policy: Policy, cap: Capability, subject: Subject) -> str:
    scope = subject.describe(policy.match_keys)
    match cap.kind:
        case Kind.RESOURCE:
            head = (
                f"{cap.value} is above the limit of {policy.limits.timeout_minutes:g} minutes "
                f"and no rule matching {scope} raises it"
            )
        case Kind.IMAGE | Kind.TOOL | Kind.USES:
            key = allow_key(cap.kind)
            head = f"neither the top-level `{key}:` nor a rule matching {scope} grants it"
        case Kind.TOOLS_ALL if ".services." in cap.keypath:
            head = (
                "a service runs its image whole (its own program, or its entrypoint and "
                f"command), not cut to the job's `tools:`, and no rule matching {scope} "
                "grants that"
            )
        case Kind.SECRET | Kind.NETWORK | Kind.EXEC | Kind.TOOLS_ALL:
            head = f"no rule matching {scope} grants it"
        case _:
            assert_never(cap.kind)
    if cap.kind is Kind.USES and kind_of(cap.value) is ActionKind.MARKETPLACE:
        # granting it would not make it run: say how to run what it does instead
        return (
            f"{cap.value} is a marketplace action, which runner never runs; {vendoring(cap.value)}"
        )
    elsewhere = [r for r in policy.rules if r.grants(cap) and not r.matches(subject)]
    if elsewhere:
        names = ", ".join(r.name for r in elsewhere)
        head += f"; rule {names} would, but does not match this job"
        misses = [f"{r.name}: {_miss(r, subject)}" for r in elsewhere[:3]]
        head += f" ({'; '.join(misses)})"
    return f"{head}; to allow it: {_how(cap.kind)} in {policy.path}"


def _miss(rule: Rule, subject: Subject) -> str:
    """Which of a rule's match globs the subject fails, with what it has instead."""
    have = {
        "path": subject.path,
        "mission": subject.mission,
        "job": subject.job,
        "event": subject.event,
        "ref": subject.ref,
    }
    missed = [
        f"{key} {glob!r} is not {have[key] or '(unknown)'!r}"
        for key, glob in rule.globs().items()
        if not fnmatchcase(have[key], glob)
    ]
    return ", ".join(missed)


def _how(kind: Kind) -> str:
    """What in the policy would allow a request of `kind`."""
    key = allow_key(kind)
    match kind:
        case Kind.IMAGE:
            return f"add a pattern to `{key}:` (or a rule's `allow.{key}`)"
        case Kind.TOOL:
            return f"add it to `{key}:` (or a rule's `allow.{key}`)"
        case Kind.USES:
            return f"add a pattern to `{key}:` (or a rule's `allow.{key}`)"
        case Kind.SECRET:
            return f"a rule with `allow: {{{key}: [NAME]}}`"
        case Kind.NETWORK:
            return f"a rule with `allow: {{{key}: egress}}`"
        case Kind.EXEC | Kind.TOOLS_ALL:
            return f"a rule with `allow: {{{key}: true}}`"
        case Kind.RESOURCE:
            return f"a rule with `allow: {{{key}: {{timeout-minutes: N}}}}`"
        case _:
            assert_never(kind)


# ---------------------------------------------------------------------- using


def denials(decisions: Iterable[Decision]) -> list[Decision]:
    return [d for d in decisions if not d.allowed]


@dataclass(frozen=True)
class Grouped:
    """One decision made alike for several instances of a job (`jobs`: their keys)."""

    decision: Decision
    jobs: tuple[str, ...]

    def instances(self, of: int) -> str:
        """` (29 instances)` when it concerns all `of` instances of its job (more than one),
        ` (2 of 29 instances: test (1), test (2))` for some, "" for a job of one instance."""
        count = len(self.jobs)
        if of <= 1:
            return ""
        if count == of:
            return f" ({count} instances)"
        shown = ", ".join(self.jobs[:3]) + (", ..." if count > 3 else "")
        return f" ({count} of {of} instances: {shown})"


def grouped(decisions: Iterable[Decision]) -> list[Grouped]:
    """Decisions that differ only in their job instance, once each, in first-seen order."""
    found: dict[tuple[Any, ...], list[Decision]] = {}
    for d in decisions:
        where = (d.mission, d.path, d.job_id or d.job, d.keypath, d.line, d.col)
        found.setdefault((*where, d.capability, d.value, d.allowed, d.rule, d.reason), []).append(d)
    return [Grouped(same[0], tuple(d.job for d in same)) for same in found.values()]


def denials_message(decisions: Iterable[Decision]) -> str:
    """One line per denial: `path:line:col: keypath: <capability> <value> denied to <job>: why`;
    the same denial of several instances of a job once (`denied to 29 instances of job
    'test' (test (1), test (2), ...)`)."""
    lines = []
    for group in grouped(denials(decisions)):
        d = group.decision
        if len(group.jobs) == 1:
            whom = f"job {d.job!r}"
        else:
            shown = ", ".join(group.jobs[:3]) + (", ..." if len(group.jobs) > 3 else "")
            whom = f"{len(group.jobs)} instances of job {d.job_id!r} ({shown})"
        lines.append(
            f"{d.path}:{d.line}:{d.col}: {d.keypath}: {d.capability} {d.value} denied to "
            f"{whom}: {d.reason}"
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
    image: Decision | None = None
    services: dict[str, str] = {}
    tools: list[str] = []
    all_tools = network = exec_ = False
    secrets: set[str] = set()
    uses: set[str] = set()
    for d in mine:
        match d.capability:
            case Kind.IMAGE:
                service = service_of(d.keypath)
                if service is None:
                    image = d
                else:
                    services[service] = d.value
            case Kind.TOOL:
                tools.append(d.value)
            case Kind.TOOLS_ALL:
                # a service's (at services.<name>) takes the image whole for it alone
                all_tools = all_tools or d.keypath.endswith(".tools")
            case Kind.USES:
                uses.add(d.value)
            case Kind.SECRET:
                if d.rule != BUILTIN:  # a builtin secret (GITHUB_TOKEN) is not passed in
                    secrets.add(d.value)
            case Kind.NETWORK:
                network = True
            case Kind.EXEC:
                exec_ = True
            case Kind.RESOURCE:
                pass  # within the limits, which the image decision carries
            case "check":
                pass  # never allowed: a job with one was refused above
            case _:
                assert_never(d.capability)
    if image is None:
        raise ValueError(f"no image decision for job {job_key!r}")
    return Grants(
        image=image.value,
        tools="all" if all_tools else tuple(tools),
        network=network,
        secrets=frozenset(secrets),
        exec=exec_,
        limits=image.limits if image.limits is not None else Limits(),
        uses=frozenset(uses),
        services=services,
    )
