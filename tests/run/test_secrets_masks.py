"""Masks stay in the job that registered them, and `$RUNNER_ENV` refuses hooks, in real
containers: two jobs running at once, one masking words every record holds."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import runner_cli

pytestmark = pytest.mark.docker

POLICY = """\
version: 1
images: [base]
tools: [sh, sleep]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
"""

MISSION = """\
name: masks
on: [manual]
jobs:
  masker:
    tools: [sh, sleep]
    steps:
      - run: |
          echo "::add-mask::status"
          echo "::add-mask::success"
          echo "::add-mask::a"
          echo "masker: status success a-line"
          sleep 2
          echo "masker: still status success"
  other:
    tools: [sh, sleep]
    steps:
      - run: |
          sleep 1
          echo "other: status success a-line"
          sleep 2
          echo "other: still status success"
  hooks:
    tools: [sh]
    steps:
      - run: echo "LD_AUDIT=/workspace/audit.so" >> "$RUNNER_ENV"
      - if: always()
        run: echo "LD_AUDIT is ${LD_AUDIT:-unset}"
"""


def test_a_mask_stays_in_its_job_and_never_touches_names_statuses_or_keys(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / "policies" / "default.yml").write_text(POLICY)
    (repo / ".missions" / "m.yml").write_text(textwrap.dedent(MISSION))
    state = tmp_path / "state"
    done = runner_cli(repo, state, "run", "--json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert {key: job["status"] for key, job in result["jobs"].items()} == {
        "masker": "success",
        "other": "success",
        "hooks": "failure",
    }
    run_dir = state / "runs" / result["run_id"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["result"] == "failure" and record["jobs"]["masker"]["status"] == "success"
    assert not [key for key in keys(record) if "***" in key]  # no key was touched
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    lines = {(e["job"], e["line"]) for e in events if e["kind"] == "output"}
    assert ("masker", "masker: *** *** a-line") in lines
    assert ("masker", "masker: still *** ***") in lines
    assert ("other", "other: status success a-line") in lines  # ran at the same time
    assert ("other", "other: still status success") in lines
    assert ("hooks", "LD_AUDIT is unset") in lines
    finished = [e for e in events if e["kind"] == "job.finished"]
    assert {e["job"]: e["status"] for e in finished}["masker"] == "success"
    warnings = [e["message"] for e in events if e["kind"] == "annotation"]
    assert warnings == [
        "::add-mask:: refused a value shorter than 4 characters (it would mask every "
        "occurrence of it): not masked"
    ]
    hooks = result["jobs"]["hooks"]["steps"][0]["reason"]
    assert hooks == (
        "$RUNNER_ENV: line 1: a step may not set LD_AUDIT (the dynamic loader reads it: it "
        "would load code into every program of later steps); it was not set"
    )
    runs = runner_cli(repo, state, "runs")
    assert runs.returncode == 0 and "***" not in runs.stdout
    listed = json.loads(runner_cli(repo, state, "runs", "--json").stdout)
    assert [run["result"] for run in listed if run["run_id"] == result["run_id"]] == ["failure"]


def keys(document: Any) -> Iterator[str]:
    if isinstance(document, dict):
        for key, value in document.items():
            yield key
            yield from keys(value)
    elif isinstance(document, list):
        for item in document:
            yield from keys(item)
