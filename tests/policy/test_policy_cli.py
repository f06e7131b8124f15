"""`runner policy check` and `runner policy diff`, through the CLI on real files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonpatch
import pytest
from conftest import invoke

from runner.mission.loader import load_mission
from runner.policy.decisions import decide, granted
from runner.policy.loader import load_policy

REPO = Path(__file__).resolve().parents[2]

CI = """\
name: ci
on: [push]
jobs:
  lint:
    container: python
    tools: [sh, python3]
    steps:
      - run: python3 -m compileall -q src
  publish:
    needs: [lint]
    permissions: {network: egress, secrets: [DEPLOY_TOKEN]}
    tools: [sh, curl]
    steps:
      - run: curl -T dist.tar "$URL"
        env: {TOKEN: "${{ secrets.DEPLOY_TOKEN }}"}
"""

POLICY = """\
version: 1
images: [base, python]
tools: [sh, python3]
limits: {timeout-minutes: 30, memory: 1g, cpus: 1, pids: 256}
"""

RELEASE_RULE = """\
rules:
  - name: ci-may-publish
    match: {path: .missions/ci.yml, mission: ci, job: publish}
    allow: {network: egress, secrets: [DEPLOY_TOKEN], tools: [curl]}
"""


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def repo(in_tmp: Path) -> Path:
    write(in_tmp, ".missions/ci.yml", CI)
    return in_tmp


def test_check_denies_what_the_policy_does_not_grant(repo: Path) -> None:
    write(repo, "policies/default.yml", POLICY)
    result = invoke(repo / ".runner", "policy", "check")
    assert result.code == 3
    assert result.out.splitlines() == [
        f"policy: policies/default.yml (sha256:{_digest(repo)[:12]})",
        ".missions/ci.yml: mission ci",
        "  job lint",
        "    allowed  image python",
        "    allowed  tool sh",
        "    allowed  tool python3",
        "  job publish",
        "    allowed  image base",
        "    allowed  tool sh",
        "    denied   tool curl",
        "    denied   network egress",
        "    denied   secret DEPLOY_TOKEN",
        "1 mission, 2 jobs: 5 allowed, 3 denied",
        "run with --explain to see why each was denied",
    ]


def _digest(root: Path) -> str:
    return load_policy(None, root).digest


def test_explain_names_the_rule_or_the_reason_and_place(repo: Path) -> None:
    write(repo, "policies/default.yml", POLICY)
    lines = invoke(repo / ".runner", "policy", "check", "--explain").out.splitlines()
    assert "    allowed  image python  [base] granted by the top-level lists" in lines
    assert (
        "    denied   network egress  at jobs.publish.permissions.network (11:28): no rule "
        "matching mission 'ci', job 'publish' grants it; to allow it: a rule with "
        "`allow: {network: egress}` in policies/default.yml"
    ) in lines
    assert any(
        line.startswith(
            "    denied   secret DEPLOY_TOKEN  at jobs.publish.permissions.secrets[0] (11:46)"
        )
        for line in lines
    )


def test_a_matching_rule_allows_and_check_exits_0(repo: Path) -> None:
    write(repo, "policies/default.yml", POLICY + RELEASE_RULE)
    result = invoke(repo / ".runner", "policy", "check", "--explain")
    assert result.code == 0, result.out
    assert "    allowed  network egress  [ci-may-publish] granted by rule ci-may-publish" in (
        result.out.splitlines()
    )
    assert result.out.splitlines()[-1] == "1 mission, 2 jobs: 8 allowed, 0 denied"


def test_json_is_a_list_of_decisions(repo: Path) -> None:
    write(repo, "policies/default.yml", POLICY)
    result = invoke(repo / ".runner", "policy", "check", "--json")
    assert result.code == 3
    decisions = json.loads(result.out)
    assert isinstance(decisions, list) and len(decisions) == 8
    denied = [d for d in decisions if not d["allowed"]]
    assert [(d["job"], d["capability"], d["value"], d["keypath"]) for d in denied] == [
        ("publish", "tool", "curl", "jobs.publish.tools[1]"),
        ("publish", "network", "egress", "jobs.publish.permissions.network"),
        ("publish", "secret", "DEPLOY_TOKEN", "jobs.publish.permissions.secrets[0]"),
    ]
    assert denied[0]["line"] == 12 and denied[0]["path"] == ".missions/ci.yml"


def test_no_policy_denies_everything_and_says_why(repo: Path) -> None:
    result = invoke(repo / ".runner", "policy", "check", "--explain")
    assert result.code == 3
    lines = result.out.splitlines()
    why = "no policy at policies/default.yml: everything is denied; write one (see docs/policy.md)"
    assert lines[0] == f"policy: {why}"
    assert f"    denied   image python  at jobs.lint.container (5:16): {why}" in lines
    assert lines[-1] == "1 mission, 2 jobs: 0 allowed, 8 denied"


def test_an_invalid_policy_is_exit_2_with_positions(repo: Path) -> None:
    write(repo, "policies/default.yml", POLICY + "tools-all: true\n")
    result = invoke(repo / ".runner", "policy", "check")
    assert result.code == 2
    assert (
        "policies/default.yml:5:1: tools-all: unknown key; a policy holds only the keys "
        "documented in docs/policy.md [policy]"
    ) in result.err
    assert result.out == ""


def test_named_missions_and_a_policy_option(repo: Path) -> None:
    write(repo, "strict.yml", "version: 1\nimages: [python]\ntools: [sh, python3]\n")
    write(
        repo,
        "other/one.yml",
        "name: one\njobs:\n  a:\n    container: python\n    steps: [{run: 'true'}]\n",
    )
    result = invoke(repo / ".runner", "policy", "check", "--policy", "strict.yml", "other/one.yml")
    assert result.code == 0, result.out + result.err
    assert result.out.splitlines()[:2] == [
        f"policy: strict.yml (sha256:{_digest_of(repo / 'strict.yml', repo)[:12]})",
        "other/one.yml: mission one",
    ]


def _digest_of(path: Path, root: Path) -> str:
    return load_policy(path, root).digest


def test_security_warnings_are_shown_and_enforced_ones_deny(repo: Path) -> None:
    write(
        repo,
        ".missions/pr.yml",
        """\
        name: pr
        on: [pull_request]
        jobs:
          greet:
            steps:
              - run: echo "${{ github.head_ref }}"
        """,
    )
    write(repo, "policies/default.yml", "version: 1\nimages: [base]\ntools: [sh]\n")
    lax = invoke(repo / ".runner", "policy", "check", ".missions/pr.yml")
    assert lax.code == 0
    assert ".missions/pr.yml:6:14: warning: jobs.greet.steps[0].run: untrusted input" in lax.out
    write(
        repo,
        "policies/default.yml",
        "version: 1\nimages: [base]\ntools: [sh]\nenforce: [template-injection]\n",
    )
    strict = invoke(repo / ".runner", "policy", "check", "--explain", ".missions/pr.yml")
    assert strict.code == 3
    assert (
        "    denied   check template-injection  at jobs.greet.steps[0].run (6:14): untrusted"
        in strict.out
    )
    assert "warning:" not in strict.out


def test_enforced_credential_warnings_from_validation_deny(repo: Path) -> None:
    write(
        repo,
        ".missions/db.yml",
        """\
        name: db
        jobs:
          migrate:
            env: {DB_PASSWORD: hunter2hunter2}
            steps: [{run: "true"}]
        """,
    )
    write(repo, "policies/default.yml", "version: 1\nimages: [base]\ntools: [sh]\n")
    assert invoke(repo / ".runner", "policy", "check", ".missions/db.yml").code == 0
    write(
        repo,
        "policies/default.yml",
        "version: 1\nimages: [base]\ntools: [sh]\nenforce: [credential]\n",
    )
    result = invoke(repo / ".runner", "policy", "check", "--json", ".missions/db.yml")
    assert result.code == 3
    (denied,) = [d for d in json.loads(result.out) if not d["allowed"]]
    assert (denied["capability"], denied["value"], denied["keypath"]) == (
        "check",
        "credential",
        "jobs.migrate.env.DB_PASSWORD",
    )


# ---------------------------------------------------------------------- adversarial missions


@pytest.mark.parametrize(
    ("mission", "error"),
    [
        # a grant smuggled through an unknown key: the mission's schema refuses it (exit 2)
        (
            "name: x\njobs:\n  a:\n    privileged: true\n    steps: [{run: 'true'}]\n",
            ".missions/x.yml:4:5: jobs.a.privileged: unknown key",
        ),
        (
            "name: x\njobs:\n  a:\n    permissions: {network: egress, capabilities: [SYS_ADMIN]}\n"
            "    steps: [{run: 'true'}]\n",
            ".missions/x.yml:4:36: jobs.a.permissions.capabilities: unknown key",
        ),
        # duplicate keys: the second `tools` must not hide behind the first
        (
            "name: x\njobs:\n  a:\n    tools: [sh]\n    tools: [sh, curl]\n    steps: [{run: 'true'}]\n",
            '.missions/x.yml:5:5: jobs.a.tools: duplicate key "tools"',
        ),
        # a merge key is not merged (YAML 1.2): it is an unknown key
        (
            "name: x\njobs:\n  a:\n    <<: {permissions: {network: egress}}\n    steps: [{run: 'true'}]\n",
            ".missions/x.yml:4:5: jobs.a.<<: unknown key",
        ),
    ],
)
def test_smuggled_capabilities_are_refused(in_tmp: Path, mission: str, error: str) -> None:
    write(in_tmp, "policies/default.yml", POLICY)
    write(in_tmp, ".missions/x.yml", mission)
    result = invoke(in_tmp / ".runner", "policy", "check")
    assert result.code == 2
    assert error in result.err


def test_anchors_and_merge_keys_do_not_escape_the_decision(in_tmp: Path) -> None:
    write(in_tmp, "policies/default.yml", POLICY)
    write(
        in_tmp,
        ".missions/x.yml",
        """\
        name: x
        on: [push]
        jobs:
          a: &job
            tools: [sh, curl]
            permissions: {network: egress}
            steps: [{run: 'true'}]
          b: *job
        """,
    )
    result = invoke(in_tmp / ".runner", "policy", "check", "--json")
    assert result.code == 3
    denied = {
        (d["job"], d["capability"], d["value"]) for d in json.loads(result.out) if not d["allowed"]
    }
    assert denied == {
        ("a", "tool", "curl"),
        ("a", "network", "egress"),
        ("b", "tool", "curl"),
        ("b", "network", "egress"),
    }


def test_on_is_a_string_key_in_missions(in_tmp: Path) -> None:
    write(in_tmp, "policies/default.yml", POLICY)
    write(
        in_tmp,
        ".missions/x.yml",
        "name: x\non: [push]\njobs:\n  a:\n    permissions: {network: egress}\n    steps: [{run: 'true'}]\n",
    )
    result = invoke(in_tmp / ".runner", "policy", "check", "--json")
    assert result.code == 3
    assert {"capability": "network", "allowed": False}.items() <= next(
        d for d in json.loads(result.out) if d["capability"] == "network"
    ).items()


def test_matrix_image_from_a_yaml_matrix(in_tmp: Path) -> None:
    write(in_tmp, "policies/default.yml", POLICY)
    write(
        in_tmp,
        ".missions/m.yml",
        """\
        name: m
        jobs:
          t:
            container: ${{ matrix.image }}
            strategy: {matrix: {image: [python, "evil.io/miner:latest"]}}
            steps: [{run: 'true'}]
        """,
    )
    result = invoke(in_tmp / ".runner", "policy", "check", "--json")
    assert result.code == 3
    images = {
        (d["job"], d["value"], d["allowed"])
        for d in json.loads(result.out)
        if d["capability"] == "image"
    }
    assert images == {
        ("t (python)", "python", True),
        ("t (evil.io/miner:latest)", "evil.io/miner:latest", False),
    }


# ---------------------------------------------------------------------- diff


def test_diff_summarizes_grants_and_revocations(in_tmp: Path) -> None:
    old = write(in_tmp, "old.yml", POLICY + RELEASE_RULE)
    new = write(
        in_tmp,
        "new.yml",
        """\
        version: 1
        images: [base, python]
        tools: [sh, python3, cat]
        limits: {timeout-minutes: 60, memory: 512m, cpus: 1, pids: 256}
        enforce: [tools-all]
        rules:
          - name: ci-may-publish
            match: {path: .missions/ci.yml, mission: ci, job: "pub*"}
            allow: {network: egress, tools: [curl, wget]}
          - name: nightly
            match: {path: .missions/nightly.yml, mission: nightly, job: "*"}
            allow: {exec: true}
        """,
    )
    result = invoke(in_tmp / ".runner", "policy", "diff", str(old), str(new))
    assert result.code == 0
    lines = result.out.splitlines()
    summary = lines[2 : lines.index("patch (RFC 6902):")]
    assert summary == [
        "granted: tools += cat (base)",
        "granted: limits.timeout-minutes 30 -> 60 (base)",
        "revoked: limits.memory 1g -> 512m (base)",
        "changed: match mission 'ci', job 'pub*' (was mission 'ci', job 'publish') (rule ci-may-publish)",
        "granted: tools += wget (rule ci-may-publish)",
        "revoked: secrets -= DEPLOY_TOKEN (rule ci-may-publish)",
        "granted: exec (rule nightly)",
        "tightened: enforce += tools-all (base)",
    ]
    patch = [json.loads(line) for line in lines[lines.index("patch (RFC 6902):") + 1 :]]
    before, after = load_policy(old, in_tmp), load_policy(new, in_tmp)
    assert jsonpatch.apply_patch(dict(before.document), patch) == after.document


def test_diff_from_no_policy_grants_everything_and_json(in_tmp: Path) -> None:
    new = write(in_tmp, "new.yml", POLICY)
    result = invoke(in_tmp / ".runner", "policy", "diff", "absent.yml", str(new), "--json")
    doc = json.loads(result.out)
    assert doc["old"]["denied"].startswith("no policy at absent.yml")
    assert {"op": "add", "path": "/version", "value": 1} in doc["patch"]
    granted = [c["text"] for c in doc["changes"] if c["verb"] == "granted"]
    assert granted[:4] == ["images += base", "images += python", "tools += python3", "tools += sh"]


def test_diff_of_equal_policies(in_tmp: Path) -> None:
    a = write(in_tmp, "a.yml", POLICY)
    b = write(
        in_tmp, "b.yml", "# same, reordered\n" + "\n".join(reversed(POLICY.splitlines())) + "\n"
    )
    result = invoke(in_tmp / ".runner", "policy", "diff", str(a), str(b))
    assert result.code == 0
    assert result.out.splitlines()[-1] == "no change"


def test_diff_of_an_invalid_policy_is_exit_2(in_tmp: Path) -> None:
    a = write(in_tmp, "a.yml", POLICY)
    b = write(
        in_tmp,
        "b.yml",
        POLICY + "rules: [{name: x, match: {mission: '*', job: '*'}, allow: {root: true}}]\n",
    )
    result = invoke(in_tmp / ".runner", "policy", "diff", str(a), str(b))
    assert result.code == 2
    assert "b.yml:5:60: rules[0].allow.root: unknown key" in result.err


def test_the_real_command_line(in_tmp: Path) -> None:
    write(in_tmp, ".missions/ci.yml", CI)
    write(in_tmp, "policies/default.yml", POLICY + RELEASE_RULE)
    runner = Path(sys.executable).parent / "runner"
    done = subprocess.run(
        [str(runner), "policy", "check", "--explain"],
        cwd=in_tmp,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "[ci-may-publish] granted by rule ci-may-publish" in done.stdout


MATRIX = """\
name: m
on: [push]
jobs:
  test:
    strategy: {matrix: {python: [python3, python3.11, "a/b"], shard: [1, 2]}}
    tools: [sh, "${{ matrix.python }}"]
    permissions: {network: egress}
    steps: [{run: "${{ matrix.python }} -V"}]
"""


def test_a_denial_of_many_matrix_instances_is_shown_once(in_tmp: Path) -> None:
    write(in_tmp, "policies/default.yml", POLICY)
    write(in_tmp, ".missions/m.yml", MATRIX)
    result = invoke(in_tmp / ".runner", "policy", "check")
    assert result.code == 3
    assert result.out.splitlines()[1:9] == [
        ".missions/m.yml: mission m",
        "  job test (6 instances: test (python3, 1), test (python3, 2), test (python3.11, 1), ...)",
        "    allowed  image base",
        "    allowed  tool sh",
        "    allowed  tool python3 (2 of 6 instances: test (python3, 1), test (python3, 2))",
        "    denied   network egress (6 instances)",
        "    denied   tool python3.11 (2 of 6 instances: test (python3.11, 1), "
        "test (python3.11, 2))",
        "    denied   tool a/b (2 of 6 instances: test (a/b, 1), test (a/b, 2))",
    ]
    plan = invoke(in_tmp / ".runner", "plan", ".missions/m.yml").out.splitlines()
    denials = [line for line in plan if line.startswith("    denied")]
    assert denials == [
        "    denied network egress (6 instances): no rule matching mission 'm', job 'test' "
        "grants it; to allow it: a rule with `allow: {network: egress}` in policies/default.yml",
        "    denied tool python3.11 (2 instances): neither the top-level `tools:` nor a rule "
        "matching mission 'm', job 'test' grants it; to allow it: add it to `tools:` (or a "
        "rule's `allow.tools`) in policies/default.yml",
        "    denied tool a/b (2 instances): 'a/b' (from ${{ matrix.python }}) is not a tool name",
    ]
    assert "tools: sh, python3  " in plan[3]  # the instance's own tool, not the expression


def test_a_run_names_a_denial_of_many_instances_once(in_tmp: Path) -> None:
    write(in_tmp, "policies/default.yml", POLICY)
    write(in_tmp, ".missions/m.yml", MATRIX)
    result = invoke(in_tmp / ".runner", "run", ".missions/m.yml")
    assert result.code == 3
    egress = [line for line in result.err.splitlines() if "network egress" in line]
    assert egress == [
        "runner: error: .missions/m.yml:7:28: jobs.test.permissions.network: network egress "
        "denied to 6 "
        "instances of job 'test' (test (python3, 1), test (python3, 2), test (python3.11, 1), "
        "...): no rule matching mission 'm', job 'test' grants it; to allow it: a rule with "
        "`allow: {network: egress}` in policies/default.yml"
    ]


def test_a_windows_instance_asks_for_nothing_and_plan_says_it_is_skipped(in_tmp: Path) -> None:
    write(in_tmp, "policies/default.yml", POLICY)
    write(
        in_tmp,
        ".missions/m.yml",
        """\
        name: m
        on: [push]
        jobs:
          test:
            strategy:
              matrix:
                os: [ubuntu-latest, windows-latest]
                include: [{os: ubuntu-latest, tool: python3}, {os: windows-latest, tool: pwsh}]
            runs-on: ${{ matrix.os }}
            tools: [sh, "${{ matrix.tool }}"]
            steps: [{run: echo hi}]
        """,
    )
    checked = invoke(in_tmp / ".runner", "policy", "check", "--json")
    assert checked.code == 0, checked.out
    assert {d["job"] for d in json.loads(checked.out)} == {"test (ubuntu-latest, python3)"}
    plan = invoke(in_tmp / ".runner", "plan", ".missions/m.yml")
    assert plan.code == 0
    assert (
        "  test (windows-latest, pwsh)  skipped: runs-on windows-latest: runner runs jobs in Linux "
        "containers only, so this job is skipped"
    ) in plan.out.splitlines()


def test_runs_on_labels_map_to_images_through_the_policy(in_tmp: Path) -> None:
    write(
        in_tmp,
        "policies/default.yml",
        POLICY + "runs-on: {ubuntu-latest: python, ubuntu-22.04: evil.io/miner:1}\n",
    )
    write(
        in_tmp,
        ".missions/m.yml",
        """\
        name: m
        on: [push]
        jobs:
          mapped: {runs-on: ubuntu-latest, steps: [{run: 'true'}]}
          unmapped: {runs-on: ubuntu-24.04, steps: [{run: 'true'}]}
          own: {runs-on: ubuntu-latest, container: base, steps: [{run: 'true'}]}
          matrix:
            strategy: {matrix: {os: [ubuntu-latest, ubuntu-22.04]}}
            runs-on: [self-hosted, "${{ matrix.os }}"]
            steps: [{run: 'true'}]
        """,
    )
    result = invoke(in_tmp / ".runner", "policy", "check", "--json")
    assert result.code == 3
    images = [
        (d["job"], d["value"], d["keypath"], d["line"], d["allowed"])
        for d in json.loads(result.out)
        if d["capability"] == "image"
    ]
    assert images == [
        ("mapped", "python", "jobs.mapped.runs-on", 4, True),
        ("unmapped", "base", "jobs.unmapped.container", 5, True),
        ("own", "base", "jobs.own.container", 6, True),
        ("matrix (ubuntu-latest)", "python", "jobs.matrix.runs-on", 9, True),
        ("matrix (ubuntu-22.04)", "evil.io/miner:1", "jobs.matrix.runs-on", 9, False),
    ]
    policy = load_policy(None, in_tmp)
    mission, _ = load_mission(in_tmp / ".missions/m.yml", root=in_tmp)
    assert granted(decide(mission, policy), "mapped").image == "python"  # what a run uses


def test_a_runs_on_map_that_is_not_label_to_image_is_refused(in_tmp: Path) -> None:
    write(in_tmp, "policies/default.yml", POLICY + "runs-on: {ubuntu-latest: [python]}\n")
    write(in_tmp, ".missions/m.yml", "name: m\non: [push]\njobs:\n  j: {steps: [{run: 'true'}]}\n")
    result = invoke(in_tmp / ".runner", "policy", "check")
    assert result.code == 2
    assert result.err.splitlines()[0] == (
        'policies/default.yml:5:11: runs-on.ubuntu-latest: must be a string, not ["python"] '
        "[policy]"
    )


TOOLCHAINS = """\
toolchains:
  python: {"3.11": python, "3.12": python}
  node: {"20": base}
"""


def test_setup_actions_select_the_image_the_policy_maps_their_version_to(in_tmp: Path) -> None:
    write(in_tmp, "policies/default.yml", POLICY + TOOLCHAINS)
    write(
        in_tmp,
        ".missions/m.yml",
        """\
        name: m
        on: [push]
        jobs:
          py:
            strategy: {matrix: {python-version: ["3.11", "3.13"]}}
            steps:
              - uses: actions/checkout@v4
              - uses: actions/setup-python@v5
                with: {python-version: "${{ matrix.python-version }}"}
              - run: 'true'
          both:
            steps:
              - {uses: actions/setup-python@v5, with: {python-version: "3.12"}}
              - {uses: actions/setup-node@v4, with: {node-version: 20}}
              - run: 'true'
          own:
            container: base
            steps:
              - {uses: actions/setup-python@v5, with: {python-version: "3.9"}}
              - run: 'true'
          rust:
            steps:
              - uses: dtolnay/rust-toolchain@stable
              - run: 'true'
        """,
    )
    result = invoke(in_tmp / ".runner", "policy", "check", "--json")
    assert result.code == 3
    decisions = json.loads(result.out)
    images = [
        (d["job"], d["value"], d["keypath"], d["allowed"], d["reason"])
        for d in decisions
        if d["capability"] == "image"
    ]
    assert images == [
        ("py (3.11)", "python", "jobs.py.steps[1].uses", True, "granted by the top-level lists"),
        (
            "py (3.13)",
            "python 3.13",
            "jobs.py.steps[1].uses",
            False,
            "no image in the policy's `toolchains:` provides python 3.13 (it maps python "
            '3.11, 3.12): add `toolchains: {python: {"3.13": IMAGE}}` to the policy, IMAGE one '
            "it allows that has it on PATH",
        ),
        (
            "both",
            "python 3.12 + node 20",
            "jobs.both.steps[0].uses",
            False,
            "a job runs in one image, but its setup actions map to several (python 3.12 -> "
            "python, node 20 -> base): map these versions to one image that has them all",
        ),
        ("own", "base", "jobs.own.container", True, "granted by the top-level lists"),
        (
            "rust",
            "rust stable",
            "jobs.rust.steps[0].uses",
            False,
            "no image in the policy's `toolchains:` provides rust stable: add `toolchains: "
            '{rust: {"stable": IMAGE}}` to the policy, IMAGE one it allows that has it on PATH',
        ),
    ]
    setups = {d["value"]: d["rule"] for d in decisions if d["capability"] == "uses"}
    assert setups == {
        "actions/checkout@v4": "builtin",
        "actions/setup-python@v5": "builtin",
        "actions/setup-node@v4": "builtin",
        "dtolnay/rust-toolchain@stable": "builtin",
    }
