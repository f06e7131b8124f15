"""The policy as values: what it grants, to whom, within which limits (SPEC 5).

    Policy   the top-level lists (`images`, `tools`, `uses`, `limits`), the rules, the
             security checks it enforces, the weaker guarantees it accepts (`accept`),
             how images are built (`build`: the engine's `BuildRules`), or `denied`: why
             it denies everything
    Rule     whom it matches (`match`: globs over the mission's file path, the event and
             the ref the invoker gives, the job's id and the mission's declared name)
             and what it allows (`allow`), one field per capability kind
    Limits   a job's container limits, its workspace quota and the bounds of the
             artifacts it produces; `LimitRaise`: the ceilings a rule raises the
             container limits to (the quota and artifact bounds are the top level's)
    Grants   what one job instance may use, once every request of it is allowed

`Rule.grants(capability)` is the one place that says which `allow` field grants which
`Kind`, and `allow_key(kind)` which key of `allow:` holds it (tests hold
`schemas/policy.yml` to it). Reading a file into these is `runner.policy.loader`; deciding
on each request is `runner.policy.decisions`. See docs/policy.md.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal, assert_never

from runner.engine.images import BuildRules
from runner.policy.capabilities import Capability, Kind
from runner.policy.security_checks import SecurityCheck
from runner.trusted import POLICY_PATH, Origin

DEFAULT_PATH = Path(POLICY_PATH)
VERSION = 1
BASE = "base"
BUILTIN = "builtin"
RULE = "policy"
# `accept:` values: a guarantee runner fails closed on unless the policy accepts its loss
EGRESS_TO_HOST = "egress-to-host"  # egress where runner cannot keep the host out of reach
# Kubernetes (README "Kubernetes"): a cluster whose network plugin ignores NetworkPolicy,
# and the kubelet's world-writable termination-log file on an executable filesystem
UNENFORCED_NETWORK_POLICY = "unenforced-network-policy"
EXECUTABLE_TERMINATION_LOG = "executable-termination-log"


@dataclass(frozen=True)
class Limits:
    timeout_minutes: float = 60.0
    memory: str = "1g"
    memory_bytes: int = 1024**3
    cpus: float = 1.0
    pids: int = 256
    user: int = 65534
    workspace_bytes: int = 2 * 1024**3  # the job's writes to its workspace, at most
    artifact_bytes: int = 1024**3  # one artifact's tar, at most
    artifact_files: int = 10_000  # members of one artifact's tar, at most
    artifact_depth: int = 64  # path components of an artifact's member, at most

    def serialize(self) -> dict[str, Any]:
        """The container limits, integers only, so that the ledger's canonical JSON (no
        floats) can hold them (the whole policy is in `policy.changed`)."""
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


def allow_key(kind: Kind) -> str:
    """The key of a rule's `allow:` that grants `kind`."""
    match kind:
        case Kind.IMAGE:
            return "images"
        case Kind.TOOL:
            return "tools"
        case Kind.USES:
            return "uses"
        case Kind.SECRET:
            return "secrets"
        case Kind.NETWORK:
            return "network"
        case Kind.EXEC:
            return "exec"
        case Kind.TOOLS_ALL:
            return "tools-all"
        case Kind.RESOURCE:
            return "limits"
        case _:
            assert_never(kind)


MATCH_KEYS = ("path", "mission", "job", "event", "ref")


@dataclass(frozen=True)
class Subject:
    """What a rule is matched against: one job of one mission file, run for one event at
    one ref. The path, event and ref come from the invoker and the file system; the job id
    and the mission's name are written in the mission. "" is unknown: only `*` matches it."""

    path: str  # the mission's repository-relative file (`.missions/release.yml`)
    job: str  # the job id (not the matrix instance key)
    mission: str = ""  # the `name:` it declares
    event: str = ""
    ref: str = ""  # `refs/heads/main`

    def describe(self, keys: frozenset[str] = frozenset(MATCH_KEYS)) -> str:
        """`mission 'release' (.missions/release.yml), job 'publish' on push at
        refs/heads/main`, naming only the facts in `keys` beyond mission and job (the
        match keys some rule uses)."""
        text = f"mission {self.mission!r}"
        if "path" in keys:
            text += f" ({self.path})"
        text += f", job {self.job!r}"
        if "event" in keys:
            text += f" on {self.event or '(no event)'}"
        if "ref" in keys:
            text += f" at {self.ref or '(no ref)'}"
        return text


@dataclass(frozen=True)
class Rule:
    """A rule of the policy. The grant fields have no defaults, so that a new one must be
    given wherever a rule is made from scratch (the loader, `Rule.nothing`). The match
    globs default to `*`, as an absent `match` key."""

    name: str
    mission: str  # glob over the mission's declared name; never alone (the loader)
    job: str  # glob over the job's id
    images: tuple[str, ...]
    tools: tuple[str, ...]
    uses: tuple[str, ...]
    secrets: frozenset[str]  # upper-cased
    network: bool
    exec: bool
    tools_all: bool
    limits: LimitRaise
    description: str = ""
    path: str = "*"  # glob over the mission's repository-relative file path
    event: str = "*"  # glob over the event (`--event`)
    ref: str = "*"  # glob over the ref (`--ref`, else git's HEAD)

    @classmethod
    def nothing(cls, name: str = "", mission: str = "", job: str = "") -> Rule:
        """A rule that grants nothing."""
        return cls(
            name,
            mission,
            job,
            images=(),
            tools=(),
            uses=(),
            secrets=frozenset(),
            network=False,
            exec=False,
            tools_all=False,
            limits=LimitRaise(),
        )

    def globs(self) -> dict[str, str]:
        """The match keys as written (`*` for an absent one), in `MATCH_KEYS` order."""
        return {key: getattr(self, key) for key in MATCH_KEYS}

    def describe_match(self, other: Rule | None = None) -> str:
        """`mission 'release', job 'publish', path '.missions/release.yml'`: the mission
        and job globs, then each other key that narrows it (with `other`: that differs
        from `other`'s)."""
        extra = [
            f"{key} {glob!r}"
            for key, glob in self.globs().items()
            if key not in ("mission", "job")
            and (glob != other.globs()[key] if other is not None else glob != "*")
        ]
        return ", ".join([f"mission {self.mission!r}", f"job {self.job!r}", *extra])

    def matches(self, subject: Subject) -> bool:
        return (
            fnmatchcase(subject.path, self.path)
            and fnmatchcase(subject.mission, self.mission)
            and fnmatchcase(subject.job, self.job)
            and fnmatchcase(subject.event, self.event)
            and fnmatchcase(subject.ref, self.ref)
        )

    def grants(self, cap: Capability) -> bool:
        match cap.kind:
            case Kind.IMAGE:
                return any(fnmatchcase(cap.value, p) for p in self.images)
            case Kind.TOOL:
                return cap.value in self.tools or self.tools_all
            case Kind.USES:
                return any(fnmatchcase(cap.value, p) for p in self.uses)
            case Kind.SECRET:
                return cap.value in self.secrets
            case Kind.NETWORK:
                return self.network
            case Kind.EXEC:
                return self.exec
            case Kind.TOOLS_ALL:
                return self.tools_all
            case Kind.RESOURCE:
                ceiling = self.limits.timeout_minutes
                return cap.minutes is not None and ceiling is not None and cap.minutes <= ceiling
            case _:
                assert_never(cap.kind)


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
    enforce: frozenset[SecurityCheck] = frozenset()
    accept: frozenset[str] = frozenset()  # EGRESS_TO_HOST, UNENFORCED_NETWORK_POLICY, ...
    build: BuildRules = field(default_factory=BuildRules)
    runs_on: tuple[tuple[str, str], ...] = ()  # `runs-on:` runner label -> image, in order
    toolchains: tuple[tuple[str, str, str], ...] = ()  # `toolchains:` (name, version, image)
    denied: str | None = None  # set: the policy denies everything, and this says why
    origin: Origin | None = field(default=None, compare=False)  # where it was read from

    @property
    def accepts_egress_to_host(self) -> bool:
        """Whether jobs granted egress may run where the host cannot be kept out of reach
        (else such a job is refused: fail closed)."""
        return self.denied is None and EGRESS_TO_HOST in self.accept

    @property
    def accepts_unenforced_network_policy(self) -> bool:
        """Whether jobs that rely on having no network may run on a Kubernetes cluster
        that does not enforce NetworkPolicy (else they are refused: fail closed)."""
        return self.denied is None and UNENFORCED_NETWORK_POLICY in self.accept

    @property
    def accepts_executable_termination_log(self) -> bool:
        """Whether runner-init may let the kubelet's termination-log file be writable and
        executable in Kubernetes steps (else such a step is refused: fail closed)."""
        return self.denied is None and EXECUTABLE_TERMINATION_LOG in self.accept

    @functools.cached_property
    def base(self) -> Rule:
        """The top-level lists, as a rule matching everything."""
        return replace(
            Rule.nothing(BASE, "*", "*"),
            images=self.images,
            tools=self.tools,
            uses=self.uses,
            limits=LimitRaise(timeout_minutes=self.limits.timeout_minutes),
        )

    @functools.cached_property
    def match_keys(self) -> frozenset[str]:
        """The match keys some rule narrows on (its glob is not `*`)."""
        return frozenset(k for rule in self.rules for k, v in rule.globs().items() if v != "*")

    def rules_for(self, subject: Subject) -> list[Rule]:
        return [rule for rule in self.rules if rule.matches(subject)]

    def limits_for(self, mission: str | Subject, job: str = "") -> Limits:
        """The base limits raised by every rule matching the subject (a `Subject`, or a
        mission name and a job id, with nothing else known); the user: the first rule
        that sets one."""
        subject = mission if isinstance(mission, Subject) else Subject("", job, mission)
        limits = self.limits
        user: int | None = None
        for rule in self.rules_for(subject):
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
class Grants:
    """What one job instance may use (`runner.policy.decisions.granted`)."""

    image: str
    tools: tuple[str, ...] | Literal["all"]
    network: bool
    secrets: frozenset[str]
    exec: bool
    limits: Limits
    uses: frozenset[str] = frozenset()
    services: Mapping[str, str] = field(default_factory=dict)  # service name -> its image
