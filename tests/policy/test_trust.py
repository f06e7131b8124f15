"""The trust boundary, as a pull request's author would test it: rules match what the
author cannot choose (the mission's file, the event, the ref), the policy and the catalog
come from where the invoker says and are shown with their origin, and a repository's
catalog cannot widen a tool."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import invoke

from runner.errors import InvalidPolicy
from runner.mission.loader import parse_mission
from runner.policy.decisions import decide
from runner.policy.loader import load_policy

POLICY = """\
version: 1
images: [base]
tools: [sh]
rules:
  - name: release-may-publish
    match: {path: .missions/release.yml, job: publish, event: push, ref: refs/heads/main}
    allow: {secrets: [DEPLOY_TOKEN], network: egress}
"""

RELEASE = """\
name: release
on: [push]
jobs:
  publish:
    permissions: {secrets: [DEPLOY_TOKEN], network: egress}
    steps: [{run: echo publishing}]
"""

# what a pull request adds: another file claiming the release's name and job
HIJACK = RELEASE.replace("on: [push]", "on: [pull_request, push]")


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        capture_output=True,
        check=True,
    )


@pytest.fixture
def repo(in_tmp: Path) -> Path:
    write(in_tmp, "policies/default.yml", POLICY)
    write(in_tmp, ".missions/release.yml", RELEASE)
    return in_tmp


def secret_verdicts(result_out: str) -> dict[tuple[str, str], bool]:
    return {
        (d["path"], d["value"]): d["allowed"]
        for d in json.loads(result_out)
        if d["capability"] == "secret"
    }


def test_a_file_declaring_the_releases_name_gets_nothing(repo: Path) -> None:
    write(repo, ".missions/lint.yml", HIJACK)
    args = ("--json", "--event", "push", "--ref", "refs/heads/main")
    done = invoke(repo / ".runner", "policy", "check", ".missions/lint.yml", *args)
    assert done.code == 3
    assert secret_verdicts(done.out) == {(".missions/lint.yml", "DEPLOY_TOKEN"): False}
    done = invoke(repo / ".runner", "policy", "check", ".missions/release.yml", *args)
    assert done.code == 0
    assert secret_verdicts(done.out) == {(".missions/release.yml", "DEPLOY_TOKEN"): True}


@pytest.mark.parametrize(
    ("event", "ref"),
    [("pull_request", "refs/heads/main"), ("push", "refs/heads/feature"), ("push", "")],
)
def test_the_event_and_the_ref_are_the_invokers(repo: Path, event: str, ref: str) -> None:
    done = invoke(repo / ".runner", "policy", "check", "--explain", "--event", event, "--ref", ref)
    assert done.code == 3
    denied = next(line for line in done.out.splitlines() if "denied   secret" in line)
    assert (
        f"no rule matching mission 'release' (.missions/release.yml), job 'publish' on "
        f"{event} at {ref or '(no ref)'} grants it; rule release-may-publish would, but does "
        "not match this job (release-may-publish: "
    ) in denied


def test_the_ref_defaults_to_gits_head(repo: Path) -> None:
    git(repo, "init", "-q", "-b", "main")
    done = invoke(repo / ".runner", "policy", "check", "--event", "push")
    assert done.code == 0, done.out
    git(repo, "checkout", "-q", "-b", "feature")
    assert invoke(repo / ".runner", "policy", "check", "--event", "push").code == 3


def test_the_validator_refuses_two_missions_of_one_name(repo: Path) -> None:
    write(repo, ".missions/lint.yml", HIJACK)
    done = invoke(repo / ".runner", "validate")
    assert done.code == 2
    assert (
        '.missions/release.yml:1:7: name: mission name "release" is also the name of '
        ".missions/lint.yml: each mission needs its own name [name]"
    ) in done.out.splitlines()
    done = invoke(repo / ".runner", "policy", "check", "--event", "push")
    assert done.code == 2 and "mission name(s) used twice" in done.err


def test_a_rule_naming_only_a_mission_is_an_error(in_tmp: Path) -> None:
    write(
        in_tmp,
        "policies/default.yml",
        "version: 1\nrules:\n  - {name: r, match: {mission: release, job: publish}, "
        "allow: {network: egress}}\n",
    )
    with pytest.raises(InvalidPolicy) as caught:
        load_policy(None, in_tmp)
    assert [str(f) for f in caught.value.findings] == [
        "policies/default.yml:3:32: rules[0].match.mission: `mission:` matches the name a "
        "mission declares, which any file can declare (a .missions/lint.yml may say `name: "
        "release`); match the mission's file instead: `path: .missions/release.yml` [policy]"
    ]


def test_rules_match_globs_over_path_event_and_ref(in_tmp: Path) -> None:
    write(
        in_tmp,
        "policies/default.yml",
        """\
        version: 1
        rules:
          - name: deploys
            match: {path: ".missions/deploy-*.yml", job: "*", event: push, ref: "refs/tags/v*"}
            allow: {network: egress}
        """,
    )
    policy = load_policy(None, in_tmp)
    mission, _ = parse_mission(
        b"name: d\njobs:\n  j:\n    permissions: {network: egress}\n    steps: [{run: x}]\n",
        ".missions/deploy-prod.yml",
    )

    def network(event: str, ref: str, path: str = ".missions/deploy-prod.yml") -> bool:
        moved = (
            mission if path == mission.path else type(mission)(**{**vars(mission), "path": path})
        )
        found = decide(moved, policy, event=event, ref=ref)
        return next(d.allowed for d in found if d.capability == "network")

    assert network("push", "refs/tags/v1.2")
    assert not network("push", "refs/heads/main")
    assert not network("pull_request", "refs/tags/v1.2")
    assert not network("push", "refs/tags/v1.2", ".missions/lint.yml")
    assert not network("", "")  # unknown: only `*` matches


def test_policy_check_and_plan_say_where_the_trusted_inputs_came_from(repo: Path) -> None:
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "trusted")
    write(
        repo,
        "policies/default.yml",
        POLICY.replace("network: egress", "network: egress, exec: true"),
    )
    done = invoke(repo / ".runner", "policy", "check", "--trusted-ref", "main", "--event", "push")
    assert done.code == 0, done.out
    first = done.out.splitlines()[0]
    assert first.startswith("policy: policies/default.yml (sha256:")
    assert first.endswith("from policies/default.yml at main (commit " + first.split("commit ")[1])
    assert first.endswith("; the working tree's copy differs")
    done = invoke(
        repo / ".runner", "plan", ".missions/release.yml", "--json", "--trusted-ref", "main"
    )
    plan = json.loads(done.out)
    policy_origin = plan["trusted"][0]
    assert (policy_origin["what"], policy_origin["source"], policy_origin["ref"]) == (
        "policy",
        "ref",
        "main",
    )
    assert policy_origin["working_tree_differs"] is True
    assert plan["trusted"][1] == {
        "what": "catalog",
        "source": "builtin",
        "path": "runner's built-in tool catalog",
        "sha256": plan["trusted"][1]["sha256"],
    }
    done = invoke(repo / ".runner", "policy", "check", "--json", "--trusted-ref", "main")
    assert all(d["trusted"] == plan["trusted"] for d in json.loads(done.out))


def test_a_catalog_that_widens_a_tool_stops_policy_check(repo: Path) -> None:
    write(
        repo,
        "containers/tools.yml",
        """\
        cat: {paths: [/bin/cat], files: [/bin, /usr/bin, /sbin, /usr/sbin]}
        python3: {paths: [/usr/bin/python3], interpreter: false}
        perl: {paths: [/usr/bin/perl]}
        jq: {paths: [/usr/bin/jq], files: ["/usr/*"]}
        """,
    )
    done = invoke(repo / ".runner", "policy", "check")
    assert done.code == 2
    assert done.err.splitlines() == [
        "runner: error: containers/tools.yml: the tool catalog widens what tools bring:",
        "  cat: changes runner's built-in entry for cat (paths /bin/cat); a repository's "
        "catalog may add tools, never change a built-in one: remove the entry, or name the "
        "tool differently",
        "  python3: changes runner's built-in entry for python3 (paths /usr/bin/python3; "
        "files /usr/lib/python3.*; an interpreter); a repository's catalog may add tools, "
        "never change a built-in one: remove the entry, or name the tool differently",
        "  perl: perl is an interpreter (allowing it allows arbitrary computation): the "
        "entry must say `interpreter: true`",
        "  jq.files[0]: /usr/* is or holds /usr/bin, a directory of executables; a catalog's "
        "files are data: list a program as a tool's `paths` (or as a tool of its own) so that "
        "a policy grants it",
        "  hint: the catalog is trusted configuration: see `runner policy check` and the "
        "README's threat model",
    ]
    assert invoke(repo / ".runner", "plan", ".missions/release.yml").code == 2


def test_an_allowed_tool_says_what_it_brings_and_an_unknown_one_is_noted(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repository's catalog extends runner's (sh stays runner's entry); a tool in no
    catalog is looked up in the image, which, with no engine to look into, is a note."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    write(repo, "containers/tools.yml", "jq: {paths: [/usr/bin/jq], files: [/usr/share/jq]}\n")
    write(repo, "policies/default.yml", POLICY.replace("tools: [sh]", "tools: [sh, jq, frob]"))
    write(
        repo,
        ".missions/tools.yml",
        "name: tools\njobs:\n  t:\n    tools: [sh, jq, frob]\n    steps: [{run: x}]\n",
    )
    done = invoke(repo / ".runner", "policy", "check", "--explain", ".missions/tools.yml")
    assert done.code == 0, done.out + done.err
    lines = done.out.splitlines()
    assert lines[1].startswith("catalog: containers/tools.yml (working tree) (sha256:")
    assert (
        "    allowed  tool jq  [base] granted by the top-level lists; brings /usr/bin/jq and "
        "/usr/share/jq"
    ) in lines
    assert (
        "    allowed  tool sh  [base] granted by the top-level lists; brings /bin/sh; an "
        "interpreter: it can compute anything"
    ) in lines
    assert (
        ".missions/tools.yml:4:21: note: jobs.t.tools[2]: tool 'frob' is in no tool catalog: "
        "it will be looked up by name in image base when the job runs (no Docker engine "
        "answers: its socket /nonexistent/docker.sock does not exist) [tool]"
    ) in lines
