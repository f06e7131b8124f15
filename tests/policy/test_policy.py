"""The default-deny policy: loading (fail closed), decisions, grants, denial messages."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.audit import canonical
from runner.errors import InvalidPolicy, PolicyDenied
from runner.mission.loader import discover_missions, load_mission
from runner.mission.model import Job, Matrix, Mission, Permissions, Step, Strategy
from runner.policy.capabilities import Kind
from runner.policy.decisions import Decision, decide, denials_message, granted
from runner.policy.loader import load_policy, memory_bytes
from runner.policy.model import Limits, Policy, allow_key
from runner.policy.security_checks import SecurityCheck

REPO = Path(__file__).resolve().parents[2]


def write(root: Path, text: str, name: str = "policies/default.yml") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def policy_of(tmp_path: Path, text: str) -> Policy:
    write(tmp_path, text)
    return load_policy(None, tmp_path)


def job(job_id: str = "build", **fields: Any) -> Job:
    fields.setdefault("steps", (Step(index=0, run="true"),))
    return Job(id=job_id, **fields)


def mission(*jobs: Job, name: str = "ci", **fields: Any) -> Mission:
    return Mission(
        path=".missions/ci.yml",
        digest="0" * 64,
        name=name,
        jobs={j.id: j for j in jobs},
        **fields,
    )


def verdicts(decisions: list[Decision]) -> dict[tuple[str, str], tuple[bool, str | None]]:
    return {(d.capability, d.value): (d.allowed, d.rule) for d in decisions}


EVERYTHING = job(
    "publish",
    container="python",
    tools=("sh", "curl"),
    timeout_minutes=90,
    permissions=Permissions(network="egress", secrets=("DEPLOY_TOKEN",), exec=True),
    steps=(Step(index=0, run="./publish"), Step(index=1, uses="./actions/lint")),
)

WIDE = """\
    version: 1
    images: [python]
    tools: [sh]
    rules:
      - name: release-may-publish
        match: {path: ".missions/*", mission: release, job: publish}
        allow:
          tools: [curl]
          network: egress
          secrets: [DEPLOY_TOKEN]
          exec: true
          uses: ["./actions/*"]
          limits: {timeout-minutes: 120}
"""


# ---------------------------------------------------------------------- fail closed


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "no policy at policies/default.yml: everything is denied; write one"),
        ("", "the policy policies/default.yml is empty: everything is denied"),
        ("# nothing but a comment\n", "is empty: everything is denied"),
        ("~\n", "is empty: everything is denied"),
        ("- version: 1\n", "is a list, not a mapping: everything is denied"),
        ("allow everything\n", "is a scalar, not a mapping: everything is denied"),
    ],
)
def test_absent_empty_or_non_mapping_policy_denies_everything(
    tmp_path: Path, content: str | None, why: str
) -> None:
    if content is not None:
        write(tmp_path, content)
    policy = load_policy(None, tmp_path)
    assert policy.denied is not None and why in policy.denied
    decisions = decide(mission(EVERYTHING, name="release"), policy)
    assert decisions and not any(d.allowed for d in decisions)
    assert all(d.reason == policy.denied for d in decisions)
    assert {d.capability for d in decisions} == {
        "image", "tool", "network", "secret", "exec", "resource", "uses"
    }  # fmt: skip


def test_unreadable_policy_denies_everything(tmp_path: Path) -> None:
    (tmp_path / "policies" / "default.yml").mkdir(parents=True)  # a directory: cannot be read
    policy = load_policy(None, tmp_path)
    assert policy.denied is not None and "cannot read the policy" in policy.denied
    assert not any(d.allowed for d in decide(mission(job()), policy))


def test_explicit_missing_path_is_named(tmp_path: Path) -> None:
    policy = load_policy(Path("elsewhere/strict.yml"), tmp_path)
    assert policy.denied == (
        "no policy at elsewhere/strict.yml: everything is denied; write one (see docs/policy.md)"
    )


def invalid(tmp_path: Path, text: str) -> list[str]:
    write(tmp_path, text)
    with pytest.raises(InvalidPolicy) as info:
        load_policy(None, tmp_path)
    assert info.value.exit_code == 2
    return [str(f) for f in info.value.findings]


def test_unknown_top_level_key_is_an_error_with_its_position(tmp_path: Path) -> None:
    found = invalid(tmp_path, "version: 1\nimages: [base]\nnetwork: egress\n")
    assert found == [
        "policies/default.yml:3:1: network: unknown key; a policy holds only the keys "
        "documented in docs/policy.md [policy]"
    ]


def test_unknown_key_inside_a_rule_is_an_error(tmp_path: Path) -> None:
    found = invalid(
        tmp_path,
        """\
        version: 1
        rules:
          - name: sneaky
            match: {mission: "*", job: "*"}
            allow: {tools: [sh], privileged: true}
        """,
    )
    assert len(found) == 1
    assert found[0].startswith("policies/default.yml:5:26: rules[0].allow.privileged: unknown key")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("version: 1\ntools: sh\n", "policies/default.yml:2:8: tools: must be a list"),
        ("version: 1\ntools: [sh, 'cu rl']\n", "tools[1]:"),
        ("version: 1\ntools: ['../bin/sh']\n", "tools[0]:"),
        ("version: 1\nlimits: {pids: true}\n", "limits.pids: must be an integer, not true"),
        ("version: 1\nlimits: {cpus: lots}\n", 'limits.cpus: must be a number, not "lots"'),
        ("version: 1\nlimits: {memory: 1 gallon}\n", "limits.memory:"),
        ("version: 1\nlimits: {memory: 1k}\n", "limits.memory: '1k' is less than the 6m"),
        ("version: 1\nlimits: {memory: 2048t}\n", "limits.memory: '2048t' is more than 1024t"),
        ("version: 1\nlimits: {pids: 99999999}\n", "limits.pids: 99999999 is above the bound"),
        ("version: 1\nlimits: {user: 0}\n", "limits.user: 0 is below the bound 1"),
        ("version: 1\nlimits: {timeout-minutes: 0}\n", "limits.timeout-minutes: 0 is below"),
        ("version: 1\nenforce: [everything]\n", 'enforce[0]: "everything" is not allowed'),
        ("version: 2\nimages: [base]\n", "version: unsupported policy version 2"),
        ("version: true\n", "version: must be an integer, not true"),
        ("version: '1'\n", 'version: must be an integer, not "1"'),
        ("images: [base]\n", ": required key is missing"),
        (
            "version: 1\nrules: [{name: r, match: {mission: x}, allow: {tools: [sh]}}]\n",
            "match.job",
        ),
        ("version: 1\nrules: [{name: r, match: {mission: x, job: y}, allow: {}}]\n", "allow"),
        (
            "version: 1\nrules: [{name: r, match: {mission: x, job: y}, allow: {network: all}}]\n",
            'rules[0].allow.network: "all" is not allowed; one of: egress',
        ),
        (
            "version: 1\nrules: [{name: r, match: {mission: x, job: y}, allow: {exec: yes}}]\n",
            'rules[0].allow.exec: must be a boolean, not "yes"',  # YAML 1.2: `yes` is a string
        ),
        (
            "version: 1\nrules: [{name: r, match: {mission: x, job: y}, allow: {secrets: ['A B']}}]\n",
            "rules[0].allow.secrets[0]",
        ),
    ],
)
def test_bad_values_are_errors_never_a_looser_policy(tmp_path: Path, text: str, where: str) -> None:
    found = invalid(tmp_path, text)
    assert any(where in line for line in found), found


def test_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    found = invalid(tmp_path, "version: 1\ntools: [sh]\ntools: [sh, curl]\n")
    assert found == [
        'policies/default.yml:3:1: tools: duplicate key "tools" (first at line 2, col 1) [yaml]'
    ]


def test_merge_keys_cannot_smuggle_grants(tmp_path: Path) -> None:
    found = invalid(
        tmp_path,
        """\
        version: 1
        common: &wide {network: egress}
        rules:
          - name: r
            match: {mission: "*", job: "*"}
            allow: {<<: *wide, tools: [sh]}
        """,
    )
    assert any("common: unknown key" in f for f in found)
    assert any("rules[0].allow.<<: unknown key" in f for f in found)


def test_anchors_are_plain_copies(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        """\
        version: 1
        tools: &t [sh, cat]
        rules:
          - {name: r, match: {mission: "*", job: "*"}, allow: {tools: *t}}
        """,
    )
    assert policy.rules[0].tools == ("sh", "cat")


def test_yaml_tags_are_refused(tmp_path: Path) -> None:
    found = invalid(tmp_path, "version: 1\ntools: !!python/tuple [sh]\n")
    assert any("tag !!python/tuple is not allowed" in f for f in found)


def test_on_and_yes_keys_are_strings_and_unknown(tmp_path: Path) -> None:
    found = invalid(tmp_path, "version: 1\non: [sh]\n")
    assert found == [
        "policies/default.yml:2:1: on: unknown key; a policy holds only the keys documented "
        "in docs/policy.md [policy]"
    ]


def test_duplicate_and_reserved_rule_names(tmp_path: Path) -> None:
    found = invalid(
        tmp_path,
        """\
        version: 1
        rules:
          - {name: a, match: {mission: "*", job: "*"}, allow: {tools: [sh]}}
          - {name: a, match: {mission: "*", job: "*"}, allow: {tools: [cat]}}
          - {name: base, match: {mission: "*", job: "*"}, allow: {tools: [cat]}}
        """,
    )
    assert any('rules[1].name: duplicate rule name "a" (first: rules[0])' in f for f in found)
    assert any('rules[2].name: "base" is reserved' in f for f in found)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = invalid(tmp_path, "version: 1\nimages: base\ntools: [sh, 3]\nextra: 1\n")
    assert len(found) == 3


# ---------------------------------------------------------------------- the record


def test_limits_default_and_parse(tmp_path: Path) -> None:
    assert policy_of(tmp_path, "version: 1\n").limits == Limits()
    policy = policy_of(
        tmp_path,
        "version: 1\nlimits: {timeout-minutes: 5, memory: 512m, cpus: 0.5, pids: 64, user: 1000}\n",
    )
    assert policy.limits == Limits(5.0, "512m", 512 * 1024**2, 0.5, 64, 1000)
    assert memory_bytes("2GiB") == 2 * 1024**3
    assert memory_bytes(4096) == 4096
    assert memory_bytes("12 parsecs") is None


def test_digest_is_canonical(tmp_path: Path) -> None:
    a = policy_of(tmp_path, "version: 1\ntools: [sh]\nimages: [base]\n")
    b = policy_of(
        tmp_path, "# reordered, commented\nimages: [base]   # same\nversion: 1\ntools: [sh]\n"
    )
    c = policy_of(tmp_path, "version: 1\ntools: [sh, cat]\nimages: [base]\n")
    assert a.digest == b.digest != c.digest
    assert a.document == {"version": 1, "tools": ["sh"], "images": ["base"]}
    assert len(a.digest) == 64


def test_the_document_and_decisions_hold_no_floats_for_the_ledger(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        "version: 1\nimages: [base]\ntools: [sh]\n"
        "limits: {timeout-minutes: 2.5, cpus: 2.0, pids: 64}\n"
        "rules: [{name: r, match: {mission: '*', job: '*'}, allow: {limits: {cpus: 2.25}}}]\n",
    )
    assert policy.document["limits"] == {"timeout-minutes": "2.5", "cpus": 2, "pids": 64}
    assert policy.document["rules"][0]["allow"]["limits"] == {"cpus": "2.25"}
    assert policy.limits.cpus == 2.0 and policy.limits.timeout_minutes == 2.5
    assert policy.limits_for("ci", "build").cpus == 2.25
    canonical.dumps(dict(policy.document))
    for decision in decide(mission(job(timeout_minutes=1.5)), policy):
        canonical.dumps(decision.serialize())


def test_the_projects_own_policy_loads_and_is_tight() -> None:
    policy = load_policy(None, REPO)
    assert policy.denied is None
    assert set(policy.images) == {"base", "python"}
    assert {"sh", "cat", "python3"} <= set(policy.tools)
    assert not {"curl", "wget", "bash", "docker", "sudo"} & set(policy.tools)
    assert not any(r.network or r.exec or r.tools_all or r.secrets for r in policy.rules)
    assert set(policy.enforce) == set(SecurityCheck)


def test_the_projects_own_missions_pass_its_own_policy() -> None:
    paths = discover_missions(REPO)
    assert paths
    policy = load_policy(None, REPO)
    for path in paths:
        mission, warnings = load_mission(path)
        denied = [d for d in decide(mission, policy, warnings) if not d.allowed]
        assert denied == [], denials_message(denied)


# ---------------------------------------------------------------------- decisions


def test_every_capability_is_denied_by_a_policy_that_grants_nothing(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, "version: 1\n")
    decisions = decide(mission(EVERYTHING, name="release"), policy)
    assert verdicts(decisions) == {
        ("image", "python"): (False, None),
        ("tool", "sh"): (False, None),
        ("tool", "curl"): (False, None),
        ("network", "egress"): (False, None),
        ("secret", "DEPLOY_TOKEN"): (False, None),
        ("exec", "workspace"): (False, None),
        ("resource", "timeout-minutes=90"): (False, None),
        ("uses", "./actions/lint"): (False, None),
    }


# What a rule's `allow:` holds to grant each kind to EVERYTHING or WHOLE_IMAGE: a new kind
# without an entry here fails the test below.
ALLOW_ONE = {
    Kind.IMAGE: ["python"],
    Kind.TOOL: ["sh", "curl"],
    Kind.USES: ["./actions/*"],
    Kind.SECRET: ["deploy_token"],
    Kind.NETWORK: "egress",
    Kind.EXEC: True,
    Kind.TOOLS_ALL: True,
    Kind.RESOURCE: {"timeout-minutes": 90},
}
WHOLE_IMAGE = job("whole", tools="all")


@pytest.mark.parametrize("kind", list(Kind))
def test_a_rule_allowing_one_kind_grants_that_kind_and_no_other(tmp_path: Path, kind: Kind) -> None:
    allow = {allow_key(kind): ALLOW_ONE[kind]}
    rule = {"name": "one", "match": {"mission": "*", "job": "*"}, "allow": allow}
    policy = policy_of(tmp_path, f"version: 1\nrules: [{json.dumps(rule)}]\n")
    decisions = decide(mission(EVERYTHING, WHOLE_IMAGE), policy)
    assert {d.capability for d in decisions} == set(Kind)
    granted_kinds = {d.capability for d in decisions if d.allowed}
    implied = {Kind.TOOL} if kind is Kind.TOOLS_ALL else set()  # a whole image has every tool
    assert granted_kinds == {kind, *implied}
    assert all(d.rule == "one" for d in decisions if d.allowed)


def test_the_schema_allows_exactly_one_key_per_capability_kind() -> None:
    schema = yaml.safe_load((REPO / "schemas" / "policy.yml").read_text(encoding="utf-8"))
    allow = schema["rules"]["schema"]["schema"]["allow"]["schema"]
    assert sorted(allow) == sorted(allow_key(kind) for kind in Kind)


def test_the_docs_table_lists_every_capability_kind() -> None:
    text = (REPO / "docs" / "policy.md").read_text(encoding="utf-8")
    table = text[text.index("| capability | from | allowed by |") :].split("\n\n")[0]
    rows = re.findall(r"^\| `([a-z-]+)` \|", table, re.MULTILINE)
    assert sorted(rows) == sorted([*(kind.value for kind in Kind), "check"])


def test_a_matching_rule_grants_and_is_named(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, WIDE)
    decisions = decide(mission(EVERYTHING, name="release"), policy)
    assert verdicts(decisions) == {
        ("image", "python"): (True, "base"),
        ("tool", "sh"): (True, "base"),
        ("tool", "curl"): (True, "release-may-publish"),
        ("network", "egress"): (True, "release-may-publish"),
        ("secret", "DEPLOY_TOKEN"): (True, "release-may-publish"),
        ("exec", "workspace"): (True, "release-may-publish"),
        ("resource", "timeout-minutes=90"): (True, "release-may-publish"),
        ("uses", "./actions/lint"): (True, "release-may-publish"),
    }


@pytest.mark.parametrize(
    ("mission_name", "job_id"),
    [("ci", "publish"), ("release", "build"), ("release-2", "publish"), ("Release", "publish")],
)
def test_rules_are_scoped_by_mission_and_job(
    tmp_path: Path, mission_name: str, job_id: str
) -> None:
    policy = policy_of(tmp_path, WIDE)
    the_job = job(
        job_id, container="python", tools=("sh", "curl"), permissions=EVERYTHING.permissions
    )
    decisions = decide(mission(the_job, name=mission_name), policy)
    v = verdicts(decisions)
    assert v[("image", "python")] == (True, "base")
    for key in [
        ("tool", "curl"),
        ("network", "egress"),
        ("secret", "DEPLOY_TOKEN"),
        ("exec", "workspace"),
    ]:
        assert v[key] == (False, None)
    denied = next(d for d in decisions if d.capability == "network")
    assert "rule release-may-publish would, but does not match this job" in denied.reason


def test_globs_match_mission_and_job(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        """\
        version: 1
        images: [base]
        tools: [sh]
        rules:
          - name: deploys
            match: {path: ".missions/*", mission: "rel*", job: "deploy-?"}
            allow: {network: egress}
        """,
    )
    perms = Permissions(network="egress")
    allowed = decide(mission(job("deploy-1", permissions=perms), name="release"), policy)
    denied = decide(mission(job("deploy-10", permissions=perms), name="release"), policy)
    assert verdicts(allowed)[("network", "egress")] == (True, "deploys")
    assert verdicts(denied)[("network", "egress")] == (False, None)


def test_the_first_matching_rule_that_grants_is_named(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        """\
        version: 1
        images: [base]
        rules:
          - {name: other, match: {mission: "*", job: "*"}, allow: {tools: [cat]}}
          - {name: first, match: {mission: "*", job: "*"}, allow: {tools: [sh]}}
          - {name: second, match: {mission: "*", job: "*"}, allow: {tools: [sh]}}
        """,
    )
    assert verdicts(decide(mission(job()), policy))[("tool", "sh")] == (True, "first")


def test_image_patterns_are_globs_and_exact_otherwise(tmp_path: Path) -> None:
    digest = "a" * 64
    policy = policy_of(
        tmp_path,
        """\
        version: 1
        images: [base, "docker.io/library/python:3.12-slim@sha256:*"]
        tools: [sh]
        """,
    )
    good = f"docker.io/library/python:3.12-slim@sha256:{digest}"
    for image, allowed in [
        (good, True),
        ("docker.io/library/python:3.12-slim", False),
        ("python", False),
        ("base:latest", False),
        ("evil.io/base", False),
        ("Base", False),
    ]:
        decisions = decide(mission(job(container=image)), policy)
        assert verdicts(decisions)[("image", image)][0] is allowed, image


def test_tools_all_needs_a_rule_and_such_a_rule_covers_named_tools(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        """\
        version: 1
        images: [base]
        tools: [sh, all]
        rules:
          - {name: toolchain, match: {mission: "*", job: heavy}, allow: {tools-all: true}}
        """,
    )
    assert verdicts(decide(mission(job("light", tools="all")), policy)) == {
        ("image", "base"): (True, "base"),
        ("tools-all", "all"): (False, None),
    }
    heavy = decide(mission(job("heavy", tools="all")), policy)
    assert verdicts(heavy)[("tools-all", "all")] == (True, "toolchain")
    named = decide(mission(job("heavy", tools=("gcc",))), policy)
    assert verdicts(named)[("tool", "gcc")] == (True, "toolchain")


def test_resource_limits(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        """\
        version: 1
        images: [base]
        tools: [sh]
        limits: {timeout-minutes: 30, memory: 1g}
        rules:
          - name: slow
            match: {mission: "*", job: slow}
            allow: {limits: {timeout-minutes: 120, memory: 4g, pids: 1024, user: 1000}}
          - name: slower
            match: {mission: "*", job: slow}
            allow: {limits: {memory: 2g, cpus: 2, user: 2000}}
        """,
    )
    ok = decide(mission(job("fast", timeout_minutes=30)), policy)
    assert verdicts(ok)[("resource", "timeout-minutes=30")] == (True, "base")
    over = decide(mission(job("fast", timeout_minutes=31)), policy)
    assert verdicts(over)[("resource", "timeout-minutes=31")] == (False, None)
    slow = job("slow", timeout_minutes=100, steps=(Step(index=0, run="x", timeout_minutes=500),))
    decisions = decide(mission(slow), policy)
    assert verdicts(decisions)[("resource", "timeout-minutes=100")] == (True, "slow")
    assert verdicts(decisions)[("resource", "timeout-minutes=500")] == (False, None)
    assert policy.limits_for("ci", "slow") == Limits(120.0, "4g", 4 * 1024**3, 2.0, 1024, 1000)
    assert policy.limits_for("ci", "fast") == Limits(30.0, "1g", 1024**3, 1.0, 256, 65534)


def test_secrets_match_case_insensitively_and_only_by_name(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        """\
        version: 1
        images: [base]
        tools: [sh]
        rules:
          - {name: s, match: {mission: "*", job: "*"}, allow: {secrets: [deploy_token]}}
        """,
    )
    steps = (
        Step(
            index=0, run="x", env={"A": "${{ secrets.Deploy_Token }}", "B": "${{ secrets.OTHER }}"}
        ),
    )
    v = verdicts(decide(mission(job(steps=steps)), policy))
    assert v[("secret", "DEPLOY_TOKEN")] == (True, "s")
    assert v[("secret", "OTHER")] == (False, None)


def test_uses_allowlist_at_top_level(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        'version: 1\nimages: [base]\ntools: [sh]\nuses: ["./actions/*", "docker://base@sha256:*"]\n',
    )
    steps = tuple(
        Step(index=i, uses=u)
        for i, u in enumerate(
            [
                "./actions/lint",
                "./actions/../../etc",
                "./other/x",
                "docker://alpine:3",
                "acme/deploy@v1",
                "actions/checkout@v4",
            ]
        )
    )
    v = verdicts(decide(mission(job(steps=steps)), policy))
    assert v == {
        ("image", "base"): (True, "base"),
        ("tool", "sh"): (True, "base"),
        ("uses", "./actions/lint"): (True, "base"),
        ("uses", "./actions/../../etc"): (False, None),
        ("uses", "./other/x"): (False, None),
        ("uses", "docker://alpine:3"): (False, None),
        ("uses", "acme/deploy@v1"): (False, None),
        ("uses", "actions/checkout@v4"): (True, "builtin"),
    }


# ---------------------------------------------------------------------- matrix


def test_matrix_images_are_decided_per_instance(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, "version: 1\nimages: [base, python]\ntools: [sh]\n")
    strategy = Strategy(matrix=Matrix(axes={"image": ("base", "python", "evil:latest")}))
    decisions = decide(mission(job(container="${{ matrix.image }}", strategy=strategy)), policy)
    images = {(d.job, d.value, d.allowed) for d in decisions if d.capability == "image"}
    assert images == {
        ("build (base)", "base", True),
        ("build (python)", "python", True),
        ("build (evil:latest)", "evil:latest", False),
    }
    assert granted(decisions, "build (python)").image == "python"
    with pytest.raises(PolicyDenied):
        granted(decisions, "build (evil:latest)")


@pytest.mark.parametrize(
    ("container", "matrix", "why"),
    [
        (
            "${{ matrix.image }}",
            Matrix(expression="${{ fromJSON(needs.a.outputs.m) }}"),
            "the matrix is computed at run time",
        ),
        ("${{ inputs.image }}", Matrix(axes={"x": (1,)}), "it reads `inputs`"),
        ("${{ matrix.imgae }}", Matrix(axes={"image": ("base",)}), "has no value for"),
        ("${{ matrix.image }}", Matrix(axes={"image": ({"n": "base"},)}), "not a string"),
        ("${{ format('{0}', matrix.image) }}", Matrix(axes={"image": ("base",)}), "only plain"),
        ("${{ matrix.image }}", Matrix(axes={"image": ("${{ secrets.X }}",)}), "another"),
    ],
)
def test_images_that_cannot_be_resolved_are_denied(
    tmp_path: Path, container: str, matrix: Matrix, why: str
) -> None:
    policy = policy_of(tmp_path, 'version: 1\nimages: ["*"]\ntools: [sh]\n')
    decisions = decide(mission(job(container=container, strategy=Strategy(matrix=matrix))), policy)
    images = [d for d in decisions if d.capability == "image"]
    assert images and not any(d.allowed for d in images)
    assert all(why in d.reason for d in images)


# ---------------------------------------------------------------------- grants, messages


def test_granted_collects_what_a_job_may_use(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, WIDE)
    decisions = decide(mission(EVERYTHING, name="release"), policy)
    grants = granted(decisions, "publish")
    assert grants.image == "python"
    assert grants.tools == ("sh", "curl")
    assert grants.network and grants.exec
    assert grants.secrets == frozenset({"DEPLOY_TOKEN"})
    assert grants.limits.timeout_minutes == 120.0
    assert grants.uses == frozenset({"./actions/lint"})


def test_granted_refuses_a_denied_job(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, WIDE)
    decisions = decide(mission(EVERYTHING, name="ci"), policy)
    with pytest.raises(PolicyDenied) as info:
        granted(decisions, "publish")
    assert info.value.exit_code == 3
    assert "6 requests of job 'publish' denied by the policy" in info.value.message


def test_denials_message_has_one_line_per_denial_with_its_place(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, "version: 1\nimages: [base]\ntools: [sh]\n")
    the_job = job("publish", permissions=Permissions(network="egress"))
    m = mission(the_job, positions={"jobs.publish.permissions.network": (12, 18)})
    message = denials_message(decide(m, policy))
    assert message == (
        ".missions/ci.yml:12:18: jobs.publish.permissions.network: network egress denied to "
        "job 'publish': no rule matching mission 'ci', job 'publish' grants it; to allow it: "
        "a rule with `allow: {network: egress}` in policies/default.yml"
    )


def test_mission_level_permissions_are_inherited_and_pointed_at(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, "version: 1\nimages: [base]\ntools: [sh]\n")
    m = mission(
        job("a"),
        job("b", permissions=Permissions()),
        permissions=Permissions(network="egress"),
        positions={"permissions.network": (3, 24)},
    )
    network = [d for d in decide(m, policy) if d.capability == "network"]
    assert [(d.job, d.keypath, d.line, d.col) for d in network] == [
        ("a", "permissions.network", 3, 24)
    ]


def test_decision_serializes(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, "version: 1\nimages: [base]\ntools: [sh]\n")
    image = decide(mission(job()), policy)[0]
    assert image.serialize() == {
        "mission": "ci",
        "path": ".missions/ci.yml",
        "job": "build",
        "capability": "image",
        "value": "base",
        "allowed": True,
        "rule": "base",
        "reason": "granted by the top-level lists",
        "keypath": "jobs.build.container",
        "line": 1,
        "col": 1,
        "limits": {
            "timeout_seconds": 3600,
            "memory": "1g",
            "memory_bytes": 1024**3,
            "millicpus": 1000,
            "pids": 256,
            "user": 65534,
        },
    }


# ---------------------------------------------------------------------- enforcement


def test_enforced_checks_become_denials(tmp_path: Path) -> None:
    run = 'echo "${{ github.event.pull_request.title }}"'
    m = mission(job(steps=(Step(index=0, run=run),), container="python:3.12"))
    lax = policy_of(tmp_path, 'version: 1\nimages: ["*"]\ntools: [sh]\n')
    assert all(d.allowed for d in decide(m, lax))
    strict = policy_of(
        tmp_path,
        'version: 1\nimages: ["*"]\ntools: [sh]\nenforce: [template-injection, unpinned-image]\n',
    )
    denied = [d for d in decide(m, strict) if not d.allowed]
    assert [(d.capability, d.value, d.keypath) for d in denied] == [
        ("image", "python:3.12", "jobs.build.container"),
        ("check", "template-injection", "jobs.build.steps[0].run"),
    ]
    assert "not pinned by digest" in denied[0].reason
    assert "(the policy enforces template-injection)" in denied[1].reason


def test_a_denied_marketplace_action_says_how_to_vendor_it_never_to_grant_it(
    tmp_path: Path,
) -> None:
    """Granting a marketplace action would not make it run: the denial says how to run
    what it does instead (the issue's "a hint that leads to a run that fails anyway")."""
    policy = policy_of(tmp_path, "version: 1\nimages: [base]\n")
    step = Step(index=0, uses="actions/dependency-review-action@v4")
    decisions = decide(mission(job("lint", steps=(step,))), policy)
    denied = next(d for d in decisions if d.capability == "uses")
    assert not denied.allowed
    assert "to allow it" not in denied.reason
    assert "./actions/dependency-review-action/action.yml" in denied.reason
    assert "allow `./actions/*` in the policy's `uses:`" in denied.reason
