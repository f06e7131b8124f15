"""`runner init` (runner.commands.init): the starter policy, catalog and mission it writes
validate, pass `policy check` and run as they are; it never overwrites a file, and never
writes outside the repository, whatever links the tree holds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import invoke, runner_cli

from runner.commands.init import FILES


def test_init_writes_a_starter_that_validates_and_passes_policy_check(
    in_tmp: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    done = invoke(state, "init")
    assert done.code == 0, done.err
    assert done.out.splitlines() == [
        "wrote policies/default.yml",
        "wrote containers/tools.yml",
        "wrote .missions/ci.yml",
        "next: `runner validate`, `runner policy check`, then `runner run`",
    ]
    assert sorted(str(p.relative_to(in_tmp)) for p in in_tmp.rglob("*") if p.is_file()) == [
        ".missions/ci.yml",
        "containers/tools.yml",
        "policies/default.yml",
    ]
    assert (
        (in_tmp / "policies" / "default.yml")
        .read_text()
        .startswith("# runner's policy for repo (SPEC 5)")
    )
    validated = invoke(state, "validate", "--json")
    assert validated.code == 0, validated.out + validated.err
    assert [f["valid"] for f in json.loads(validated.out)] == [True]
    checked = invoke(state, "policy", "check")
    assert checked.code == 0, checked.out + checked.err
    assert "1 mission, 1 job: 4 allowed, 0 denied" in checked.out
    assert "catalog: containers/tools.yml (working tree)" in checked.out


@pytest.mark.parametrize("existing", sorted(FILES))
def test_init_never_overwrites_and_then_writes_nothing(
    in_tmp: Path, tmp_path: Path, existing: str
) -> None:
    (in_tmp / existing).parent.mkdir(parents=True)
    (in_tmp / existing).write_text("mine\n")
    done = invoke(tmp_path / "state", "init")
    assert done.code == 2
    assert done.err.startswith(
        f"runner: error: {existing} already exists in {in_tmp}: runner init never overwrites "
        "a file, so it wrote nothing"
    ), done.err
    assert "Traceback" not in done.err
    assert (in_tmp / existing).read_text() == "mine\n"
    assert [p for p in in_tmp.rglob("*") if p.is_file()] == [in_tmp / existing]


def test_a_link_in_the_tree_never_makes_init_write_outside_it(in_tmp: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, in_tmp / "policies")
    done = invoke(tmp_path / "state", "init")
    assert done.code == 2, done.err
    assert "policies" in done.err and "Traceback" not in done.err
    assert list(outside.iterdir()) == []
    assert not (in_tmp / ".missions").exists()


def test_a_dangling_link_where_a_file_goes_is_not_written_through(
    in_tmp: Path, tmp_path: Path
) -> None:
    (in_tmp / ".missions").mkdir()
    target = in_tmp / "elsewhere.yml"
    os.symlink(target, in_tmp / ".missions" / "ci.yml")
    done = invoke(tmp_path / "state", "init")
    assert done.code == 2
    assert ".missions/ci.yml already exists" in done.err
    assert not target.exists()
    assert not (in_tmp / "policies").exists()


def test_a_repository_name_cannot_write_yaml_into_the_policy(tmp_path: Path) -> None:
    repo = tmp_path / "x\nimages: [evil]"
    repo.mkdir()
    old = Path.cwd()
    os.chdir(repo)
    try:
        assert invoke(tmp_path / "state", "init").code == 0
        checked = invoke(tmp_path / "state", "policy", "check")
    finally:
        os.chdir(old)
    assert checked.code == 0, checked.err
    policy = (repo / "policies" / "default.yml").read_text()
    assert policy.startswith("# runner's policy for this repository (SPEC 5)")
    assert "evil" not in policy


@pytest.mark.docker
def test_the_starter_mission_runs(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    state = tmp_path / "state"
    assert runner_cli(repo, state, "init").returncode == 0
    done = runner_cli(repo, state, "run", "--json")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert {key: job["status"] for key, job in result["jobs"].items()} == {"check": "success"}
