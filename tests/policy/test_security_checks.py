"""zizmor-style security warnings, and their enforcement by a policy."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.findings import Finding, Severity
from runner.mission.loader import load_mission
from runner.mission.model import Job, Matrix, Mission, Permissions, Step, Strategy
from runner.policy.security_checks import (
    SecurityCheck,
    enforced_findings,
    security_check,
    security_findings,
    untrusted_inputs,
    with_enforcement,
)

REPO = Path(__file__).resolve().parents[2]


def mission(*jobs: Job, **fields: Any) -> Mission:
    return Mission(path="m.yml", digest="0" * 64, name="m", jobs={j.id: j for j in jobs}, **fields)


def run_job(run: str, job_id: str = "a", **fields: Any) -> Job:
    return Job(id=job_id, steps=(Step(index=0, run=run),), **fields)


def rules(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.rule, f.keypath) for f in findings]


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("github.head_ref", ["github.head_ref"]),
        ("github.event.pull_request.title", ["github.event"]),
        ("github['event'].issue.body", ["github.event"]),
        ("GITHUB.Head_Ref", ["github.Head_Ref"]),
        ("inputs.name", ["inputs.name"]),
        ("toJSON(github)", ["github"]),
        ("format('{0}', inputs.x)", ["inputs.x"]),
        ("github.sha", []),
        ("github.ref_name", ["github.ref_name"]),  # a branch name is anyone's to choose
        ("matrix.head_ref", []),
        ("env.HEAD_REF", []),
        ("'github.head_ref'", []),
    ],
)
def test_untrusted_inputs(source: str, found: list[str]) -> None:
    assert untrusted_inputs(source) == found


def test_template_injection_in_run_is_a_warning_with_a_fix() -> None:
    m = mission(
        run_job('echo "${{ github.event.issue.title }}"'),
        positions={"jobs.a.steps[0].run": (9, 14)},
    )
    (finding,) = security_findings(m)
    assert finding.severity is Severity.WARNING
    assert str(finding) == (
        "m.yml:9:14: warning: jobs.a.steps[0].run: untrusted input github.event is expanded "
        "into the script (`${{ github.event.issue.title }}`): a crafted value runs as shell "
        "code; pass it through env (env: {EVENT: '${{ github.event.issue.title }}'}) and use "
        '"$EVENT" in the script [template-injection]'
    )


def test_untrusted_input_through_env_is_fine() -> None:
    safe = Job(
        id="a",
        steps=(
            Step(
                index=0,
                run='echo "$TITLE" ${{ github.sha }}',
                env={"TITLE": "${{ github.event.issue.title }}"},
                if_="github.head_ref != ''",
            ),
        ),
    )
    assert security_findings(mission(safe)) == []


def test_mission_level_secrets_reach_every_inheriting_job() -> None:
    m = mission(
        run_job("x", "a"),
        run_job("x", "b", permissions=Permissions()),
        run_job("x", "c"),
        permissions=Permissions(secrets=("DEPLOY", "NPM")),
    )
    (finding,) = security_findings(m)
    assert finding.rule == "mission-secrets" and finding.keypath == "permissions.secrets"
    assert "DEPLOY, NPM" in finding.message and "(a, c)" in finding.message
    everyone_own = mission(
        run_job("x", "a", permissions=Permissions()),
        permissions=Permissions(secrets=("DEPLOY",)),
    )
    assert security_findings(everyone_own) == []


def test_unpinned_image_references_but_not_container_names() -> None:
    pinned = "python:3.12@sha256:" + "b" * 64
    m = mission(
        run_job("x", "named", container="python"),
        run_job("x", "tagged", container="python:3.12"),
        run_job("x", "pinned", container=pinned),
        Job(id="docker", steps=(Step(index=0, uses="docker://alpine:3"),)),
        Job(
            id="matrix",
            container="${{ matrix.image }}",
            strategy=Strategy(matrix=Matrix(axes={"image": ("base", "ghcr.io/x/y:1", pinned)})),
            steps=(Step(index=0, run="x"),),
        ),
    )
    found = security_findings(m)
    assert rules(found) == [
        ("unpinned-image", "jobs.tagged.container"),
        ("unpinned-image", "jobs.docker.steps[0].uses"),
        ("unpinned-image", "jobs.matrix.container"),
    ]
    assert "image ghcr.io/x/y:1 is not pinned by digest" in found[2].message
    assert "(python:3.12@sha256:<digest>)" in found[0].message


def test_tools_all_is_flagged() -> None:
    found = security_findings(mission(Job(id="big", tools="all")))
    assert rules(found) == [("tools-all", "jobs.big.tools")]


def test_enforcement_turns_chosen_warnings_into_errors() -> None:
    m = mission(Job(id="big", tools="all", container="python:3"))
    assert enforced_findings(m, ()) == []
    enforced = enforced_findings(m, ["tools-all"])
    assert [(f.rule, f.severity) for f in enforced] == [("tools-all", Severity.ERROR)]
    mixed = with_enforcement(security_findings(m), ["unpinned-image"])
    assert [(f.rule, f.severity) for f in mixed] == [
        ("unpinned-image", Severity.ERROR),
        ("tools-all", Severity.WARNING),
    ]


# ---------------------------------------------------------------------- the one list


def test_the_schema_accepts_exactly_the_security_checks_in_enforce() -> None:
    schema = yaml.safe_load((REPO / "schemas" / "policy.yml").read_text(encoding="utf-8"))
    accepted = schema["enforce"]["schema"]["allowed"]
    assert sorted(accepted) == sorted(check.value for check in SecurityCheck)


EVERY_CHECK = """\
name: risky
on: [manual]
permissions: {secrets: [DEPLOY_TOKEN]}
jobs:
  a:
    container: python:3.12
    tools: all
    env: {DB_PASSWORD: hunter2hunter2}
    steps:
      - run: echo "${{ github.event.issue.title }}"
"""


def test_the_checks_and_the_loader_emit_exactly_the_security_checks(tmp_path: Path) -> None:
    path = tmp_path / "risky.yml"
    path.write_text(textwrap.dedent(EVERY_CHECK), encoding="utf-8")
    loaded, warnings = load_mission(path)
    emitted = [f.rule for f in [*security_findings(loaded), *warnings]]
    assert {c for c in map(security_check, emitted) if c is not None} == set(SecurityCheck)
    assert [f.rule for f in security_findings(loaded)] == [
        check.value for check in SecurityCheck if check is not SecurityCheck.CREDENTIAL
    ]
    assert security_check("artifact") is None
