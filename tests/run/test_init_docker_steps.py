"""`uses: docker://IMAGE` obeys `tools:` (issue 12 item 10): the image is cut down to the
job's tools like the job's own image, and only `tools: all` (its own grant) keeps it
whole. `policy check` says so on the decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import runner_cli

pytestmark = pytest.mark.docker

POLICY = """\
version: 1
images: [base]
tools: [sh]
uses: ["docker://debian:bookworm-slim"]
limits: {timeout-minutes: 5, memory: 256m, cpus: 1, pids: 64}
rules:
  - name: whole-image
    match: {path: .missions/m.yml, job: whole}
    allow: {tools-all: true}
"""
STEP = """\
    steps:
      - id: s
        uses: docker://debian:bookworm-slim
        with: {args: "sh -c 'ls / >/dev/null 2>&1; echo ls=$? >> $RUNNER_OUTPUT'"}
    outputs: {ls: "${{ steps.s.outputs.ls }}"}
"""


def test_a_docker_step_holds_only_the_jobs_tools_unless_tools_all(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / "policies" / "default.yml").write_text(POLICY)
    mission = "name: m\non: [push]\njobs:\n"
    mission += "  cut:\n    tools: [sh]\n" + STEP + "  whole:\n    tools: all\n" + STEP
    (repo / ".missions" / "m.yml").write_text(mission)
    state = tmp_path / "state"
    done = runner_cli(repo, state, "run", "--json", ".missions/m.yml")
    assert done.returncode == 0, done.stderr
    jobs = json.loads(done.stdout)["jobs"]
    assert jobs["cut"]["outputs"] == {"ls": "127"}  # `ls` is not one of the job's tools
    assert jobs["whole"]["outputs"] == {"ls": "0"}
    check = runner_cli(repo, state, "policy", "check", "--json")
    assert check.returncode == 0, check.stderr
    uses = [d for d in json.loads(check.stdout) if d["capability"] == "uses"]
    assert {d["job"] for d in uses} == {"cut", "whole"}
    for decision in uses:
        assert "it runs with only the job's `tools:`" in decision["reason"]
