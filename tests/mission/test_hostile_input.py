"""A mission written to make runner work or leak: files linked out of the repository,
special files, symlinked action directories, matrices and job counts that explode,
`container:` keys that would undo the hardening, and untrusted input reaching a script
through a local action. Each is one clear error (or a note), found before anything runs."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest
from conftest import invoke

from runner.errors import InvalidInput, InvalidMission
from runner.mission.actions import load_composite
from runner.mission.loader import discover_missions, load_mission, parse_mission
from runner.policy.security_checks import SecurityCheck, security_findings

CANARY = "canary-7b2e-the-host-file"


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A host file outside the repository, shaped like YAML a loader would quote."""
    path = tmp_path / "host" / "shadow"
    path.parent.mkdir()
    path.write_text(f"root: {CANARY}\njobs: [{CANARY}]\n")
    return path


def errors(text: str, path: str = ".missions/m.yml") -> list[str]:
    with pytest.raises(InvalidMission) as caught:
        parse_mission(textwrap.dedent(text).encode(), path)
    return [str(f) for f in caught.value.findings if f.severity.value == "error"]


# -- files ------------------------------------------------------------------------------


def test_a_mission_linked_out_of_the_repository_is_refused_unquoted(
    in_tmp: Path, canary: Path
) -> None:
    (in_tmp / ".missions").mkdir()
    os.symlink(canary, in_tmp / ".missions" / "ci.yml")
    os.mkfifo(in_tmp / ".missions" / "fifo.yml")
    assert [p.name for p in discover_missions(in_tmp)] == ["ci.yml", "fifo.yml"]
    started = time.monotonic()
    done = invoke(in_tmp / ".runner", "validate")
    assert time.monotonic() - started < 5
    assert done.code == 2
    assert done.out.splitlines()[:2] == [
        f".missions/ci.yml:0:0: is a symlink to {canary}: runner reads only regular files "
        "inside the repository [io]",
        ".missions/fifo.yml:0:0: is a FIFO, not a regular file; runner reads only regular "
        "files inside the repository [io]",
    ]
    assert CANARY not in done.out + done.err


def test_a_symlinked_action_directory_outside_never_runs(in_tmp: Path, canary: Path) -> None:
    write(canary.parent, "evil/action.yml", "runs: {using: composite, steps: [{run: id}]}\n")
    (in_tmp / "actions").mkdir()
    os.symlink(canary.parent / "evil", in_tmp / "actions" / "ok")
    with pytest.raises(InvalidInput) as caught:
        load_composite(in_tmp, "./actions/ok")
    assert str(caught.value) == (
        f"actions/ok: is a symlink to {canary.parent / 'evil'}: runner reads only regular "
        "files inside the repository"
    )
    os.unlink(in_tmp / "actions" / "ok")
    (in_tmp / "actions" / "ok").mkdir()
    os.symlink(canary, in_tmp / "actions" / "ok" / "action.yml")
    with pytest.raises(InvalidInput) as caught:
        load_composite(in_tmp, "./actions/ok")
    assert str(caught.value) == (
        f"actions/ok/action.yml: is a symlink to {canary}: runner reads only regular files "
        "inside the repository"
    )


# -- limits -----------------------------------------------------------------------------


def valid(text: str) -> bool:
    parse_mission(textwrap.dedent(text).encode(), ".missions/m.yml")
    return True


def matrix_mission(axes: int, width: int, extra: str = "") -> str:
    values = ",".join(str(i) for i in range(width))
    lines = "\n".join(f"        a{n}: [{values}]" for n in range(axes))
    return (
        "name: m\njobs:\n  big:\n    strategy:\n      matrix:\n"
        f"{lines}\n{extra}    steps: [{{run: echo}}]\n"
    )


def test_an_exploding_matrix_is_refused_before_expansion(in_tmp: Path) -> None:
    text = matrix_mission(4, 40)
    assert len(text) < 600  # a few hundred bytes
    write(in_tmp, ".missions/m.yml", text)
    write(in_tmp, "policies/default.yml", "version: 1\nimages: [base]\ntools: [sh]\n")
    for command in (("validate",), ("plan", ".missions/m.yml"), ("policy", "check")):
        started = time.monotonic()
        done = invoke(in_tmp / ".runner", *command)
        assert time.monotonic() - started < 2, command
        assert done.code == 2, command
        assert (
            ".missions/m.yml:5:7: jobs.big.strategy.matrix: the matrix makes 2560000 job "
            "instances (40 x 40 x 40 x 40 axis values, before exclude and include); a matrix "
            "makes at most 256 (as on GitHub): split the job or narrow its axes [matrix]"
        ) in done.out + done.err


def test_the_matrix_limit_counts_exclude_and_include_as_github_does() -> None:
    assert valid(matrix_mission(2, 16))  # 256: the limit
    assert errors(matrix_mission(2, 16, "        include: [{a0: 99}]\n")) == [
        ".missions/m.yml:5:7: jobs.big.strategy.matrix: the matrix makes 257 job instances "
        "(16 x 16 axis values); a matrix makes at most 256 (as on GitHub): split the job or "
        "narrow its axes [matrix]"
    ]
    assert (
        "the matrix makes 272 job instances"
        in errors(
            matrix_mission(2, 17, "        exclude: [{a0: 0}]\n")  # 17 x 17 - 17
        )[0]
    )
    assert valid(matrix_mission(2, 17, "        exclude: [{a0: 0}, {a0: 1}]\n"))  # 255


def test_jobs_steps_and_instances_are_bounded() -> None:
    many_jobs = "name: m\njobs:\n" + "".join(
        f"  j{i}: {{steps: [{{run: x}}]}}\n" for i in range(1001)
    )
    assert errors(many_jobs) == [
        ".missions/m.yml:2:1: jobs: the mission has 1001 jobs; a mission holds at most 1000 [limit]"
    ]
    many_steps = "name: m\njobs:\n  j:\n    steps:\n" + "      - run: x\n" * 1001
    assert errors(many_steps) == [
        '.missions/m.yml:4:5: jobs.j.steps: job "j" has 1001 steps; a job holds at most 1000 '
        "[limit]"
    ]
    wide = "name: m\njobs:\n" + "".join(
        f"  j{i}:\n    strategy: {{matrix: {{a: [{', '.join(map(str, range(256)))}]}}}}\n"
        "    steps: [{run: x}]\n"
        for i in range(17)
    )
    assert errors(wide) == [
        ".missions/m.yml:2:1: jobs: the mission makes 4352 job instances (matrices expanded); "
        "a mission makes at most 4096 [limit]"
    ]


# -- container --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".", "..", "Python", "a b", "-x", "x."])
def test_a_container_that_names_nothing_is_an_error(name: str) -> None:
    found = errors(f'name: m\njobs:\n  j:\n    container: "{name}"\n    steps: [{{run: x}}]\n')
    assert found == [
        f".missions/m.yml:4:16: jobs.j.container: container {name!r} is "
        + (
            "empty or holds whitespace or control characters"
            if name == "a b"
            else "neither the name of a containers/<name> image (lowercase letters and "
            "digits, with . _ - between them) nor an image reference (name:tag, "
            "registry/name@sha256:...)"
        )
        + " [container]"
    ]


def test_container_keys_that_would_undo_the_hardening_are_errors_the_rest_notes() -> None:
    text = """\
        name: m
        jobs:
          j:
            container:
              image: base
              options: --privileged
              volumes: [/:/host]
              credentials: {username: u, password: "${{ secrets.REG }}"}
              ports: [80]
              env: {A: from-container, B: from-container}
            env: {B: from-job}
            steps: [{run: x}]
        """
    found = errors(text)
    assert found == [
        ".missions/m.yml:6:7: jobs.j.container.options: container.options passes `docker run` "
        "flags (--privileged, --cap-add, --network, -v ...), which could undo the step's "
        "hardening; runner takes none: ask the policy for what the job needs (permissions, "
        "limits) [container]",
        ".missions/m.yml:7:7: jobs.j.container.volumes: container.volumes mounts host paths "
        "or volumes into the step; runner mounts nothing but the job's workspace: pass files "
        "between jobs as artifacts (produces/consumes) [container]",
    ]
    allowed = "\n".join(
        line
        for line in textwrap.dedent(text).splitlines()
        if "options" not in line and "volumes" not in line
    )
    mission, notes = parse_mission(allowed.encode(), ".missions/m.yml")
    assert mission.jobs["j"].env == {"A": "from-container", "B": "from-job"}
    assert [(n.keypath, n.severity.value) for n in notes if n.rule == "container"] == [
        ("jobs.j.container.credentials", "note"),
        ("jobs.j.container.ports", "note"),
    ]


# -- template injection -----------------------------------------------------------------


def test_template_injection_sees_ref_name_and_inputs_handed_to_a_local_action() -> None:
    mission, _ = parse_mission(
        textwrap.dedent(
            """\
            name: m
            jobs:
              j:
                steps:
                  - run: echo "${{ github.ref_name }}"
                  - uses: ./actions/greet
                    with:
                      who: ${{ github.event.pull_request.title }}
                      fixed: hello
            """
        ).encode(),
        ".missions/m.yml",
    )
    found = [
        (f.keypath, f.message.split(" (")[0])
        for f in security_findings(mission)
        if f.rule == SecurityCheck.TEMPLATE_INJECTION
    ]
    assert found == [
        ("jobs.j.steps[0].run", "untrusted input github.ref_name is expanded into the script"),
        (
            "jobs.j.steps[1].with.who",
            "untrusted input github.event is passed to the local action ./actions/greet as "
            "input 'who'",
        ),
    ]


def test_a_mission_file_outside_the_repository_is_the_invokers(tmp_path: Path) -> None:
    mission_file = write(tmp_path, "elsewhere/m.yml", "name: m\njobs: {j: {steps: [{run: x}]}}\n")
    mission, _ = load_mission(mission_file, root=tmp_path / "repo")
    assert mission.path == str(mission_file)
    inside = write(tmp_path, "repo/.missions/m.yml", "name: m\njobs: {j: {steps: [{run: x}]}}\n")
    assert load_mission(inside, root=tmp_path / "repo")[0].path == ".missions/m.yml"
