"""Security checks on a mission, in the spirit of zizmor: warnings a policy may enforce.

    template-injection  untrusted input (`inputs.*`, `github.event.*`, `github.head_ref`,
                        `github.ref_name`: a branch name is anyone's to choose) expanded
                        into a `run:` script, where a crafted value runs commands, or
                        passed through `with:` to a local action, whose `run:` steps
                        expand its inputs
    mission-secrets     secrets requested at the top level reach every job that inherits
    unpinned-image      an image reference (not a `containers/<name>`) without @sha256:
    tools-all           a job that gets its whole image (`tools: all`)
    credential          a literal credential-like value: found by the mission loader's
                        validation (SPEC 4), not here

`SecurityCheck` is the one list of them: the names a policy's `enforce: [...]` accepts
(tests hold `schemas/policy.yml` to it) and the rule of every finding they emit. Each is a
`Finding` WARNING; an enforced check's findings become denials (`runner.policy.decisions`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from typing import assert_never

from runner.findings import Finding, Severity
from runner.mission.model import Mission
from runner.mission.plan import instances
from runner.policy.capabilities import (
    context_reads,
    expression_sources,
    is_image_reference,
    is_pinned,
    resolve,
)


class SecurityCheck(enum.StrEnum):
    """Every check a policy may enforce, in the order their findings are listed."""

    TEMPLATE_INJECTION = "template-injection"
    MISSION_SECRETS = "mission-secrets"
    UNPINNED_IMAGE = "unpinned-image"
    TOOLS_ALL = "tools-all"
    CREDENTIAL = "credential"


def security_check(rule: str) -> SecurityCheck | None:
    """The check a finding's rule names; None when it is not a security check."""
    try:
        return SecurityCheck(rule)
    except ValueError:
        return None


def _finding(mission: Mission, keypath: str, message: str, check: SecurityCheck) -> Finding:
    line, col = mission.where(keypath)
    return Finding(mission.path, line, col, message, check.value, keypath, Severity.WARNING)


UNTRUSTED_GITHUB = frozenset({"event", "head_ref", "ref_name"})  # `github.*` others choose


def untrusted_inputs(source: str) -> list[str]:
    """What in one expression source comes from outside: `inputs.x`, `github.event...`."""
    lowered = source.lower()
    if "inputs" not in lowered and "github" not in lowered:
        return []
    found: list[str] = []
    for key in context_reads(source, "inputs") or ():
        found.append(f"inputs.{key}" if key else "inputs")
    for key in context_reads(source, "github") or ():
        if key is None:
            found.append("github")  # toJSON(github), github[expr]: the event is in there
        elif key.lower() in UNTRUSTED_GITHUB:
            found.append(f"github.{key}")
    return found


def _template_injection(mission: Mission) -> Iterator[Finding]:
    for job in mission.jobs.values():
        for step in job.steps:
            if step.uses is not None and step.uses.startswith("./"):
                yield from _into_local_action(mission, job.id, step.index, step.uses, step.with_)
            if not step.run:
                continue
            keypath = f"jobs.{job.id}.steps[{step.index}].run"
            for source in expression_sources(step.run) or []:
                names = untrusted_inputs(source)
                if not names:
                    continue
                var = names[0].split(".")[-1].upper().replace("-", "_")
                yield _finding(
                    mission,
                    keypath,
                    f"untrusted input {', '.join(names)} is expanded into the script "
                    f"(`${{{{{source}}}}}`): a crafted value runs as shell code; pass it "
                    f"through env (env: {{{var}: '${{{{ {source.strip()} }}}}'}}) and use "
                    f'"${var}" in the script',
                    SecurityCheck.TEMPLATE_INJECTION,
                )


def _into_local_action(
    mission: Mission, job_id: str, index: int, uses: str, given: Mapping[str, str]
) -> Iterator[Finding]:
    """Untrusted input handed to a local composite action: its `run:` steps expand
    `${{ inputs.NAME }}` into their scripts (the usual way to use an input), so the value
    reaches a shell as surely as when the mission expands it itself."""
    for name, value in given.items():
        for source in expression_sources(value) or []:
            names = untrusted_inputs(source)
            if not names:
                continue
            yield _finding(
                mission,
                f"jobs.{job_id}.steps[{index}].with.{name}",
                f"untrusted input {', '.join(names)} is passed to the local action {uses} "
                f"as input {name!r} (`${{{{{source}}}}}`), which its run: steps expand into "
                f"their scripts as ${{{{ inputs.{name} }}}}: a crafted value runs as shell "
                'code; in the action, pass the input through env and use "$VAR"',
                SecurityCheck.TEMPLATE_INJECTION,
            )


def _mission_secrets(mission: Mission) -> Iterator[Finding]:
    secrets = mission.permissions.secrets
    inheriting = [job.id for job in mission.jobs.values() if job.permissions is None]
    if secrets and inheriting:
        yield _finding(
            mission,
            "permissions.secrets",
            f"secrets {', '.join(secrets)} are requested for the whole mission and reach "
            f"every job that does not set its own permissions ({', '.join(inheriting)}); "
            "request them in `jobs.<id>.permissions.secrets` of the jobs that need them",
            SecurityCheck.MISSION_SECRETS,
        )


def _unpinned_images(mission: Mission) -> Iterator[Finding]:
    for job_id, insts in instances(mission).items():
        job = mission.jobs[job_id]
        seen: set[str] = set()
        if job.container is not None:
            for inst in insts:
                image, why = resolve(job.container, inst.matrix, dynamic=inst.dynamic)
                if not why:
                    seen.add(image)
            for image in sorted(seen):
                if is_image_reference(image) and not is_pinned(image):
                    yield _unpinned(mission, f"jobs.{job_id}.container", image)
        for step in job.steps:
            if step.uses and step.uses.startswith("docker://"):
                image = step.uses[len("docker://") :]
                if not is_pinned(image):
                    yield _unpinned(mission, f"jobs.{job_id}.steps[{step.index}].uses", image)


def _unpinned(mission: Mission, keypath: str, image: str) -> Finding:
    return _finding(
        mission,
        keypath,
        f"image {image} is not pinned by digest: its tag can move to other content; pin it "
        f"({image.split('@')[0]}@sha256:<digest>)",
        SecurityCheck.UNPINNED_IMAGE,
    )


def _tools_all(mission: Mission) -> Iterator[Finding]:
    for job in mission.jobs.values():
        if job.tools == "all":
            yield _finding(
                mission,
                f"jobs.{job.id}.tools",
                "the job gets its whole image (`tools: all`): every executable in it, not "
                "only the ones it needs; list the tools instead",
                SecurityCheck.TOOLS_ALL,
            )


def _findings(check: SecurityCheck, mission: Mission) -> Iterator[Finding]:
    match check:
        case SecurityCheck.TEMPLATE_INJECTION:
            return _template_injection(mission)
        case SecurityCheck.MISSION_SECRETS:
            return _mission_secrets(mission)
        case SecurityCheck.UNPINNED_IMAGE:
            return _unpinned_images(mission)
        case SecurityCheck.TOOLS_ALL:
            return _tools_all(mission)
        case SecurityCheck.CREDENTIAL:
            return iter(())  # the mission loader's validation finds these (SPEC 4)
        case _:
            assert_never(check)


def security_findings(mission: Mission) -> list[Finding]:
    """Every security warning about `mission`, check by check in `SecurityCheck` order."""
    return [finding for check in SecurityCheck for finding in _findings(check, mission)]


def enforced_findings(mission: Mission, enforce: Iterable[SecurityCheck]) -> list[Finding]:
    """The findings of the checks a policy enforces, as errors."""
    wanted = frozenset(enforce)
    if not wanted:
        return []
    return [
        Finding(f.path, f.line, f.col, f.message, f.rule, f.keypath, Severity.ERROR)
        for f in security_findings(mission)
        if f.rule in wanted
    ]


def with_enforcement(
    findings: Iterable[Finding], enforce: Iterable[SecurityCheck]
) -> list[Finding]:
    """`findings` with those of enforced checks raised to errors."""
    wanted = frozenset(enforce)
    return [
        Finding(f.path, f.line, f.col, f.message, f.rule, f.keypath, Severity.ERROR)
        if f.rule in wanted and f.severity is Severity.WARNING
        else f
        for f in findings
    ]
