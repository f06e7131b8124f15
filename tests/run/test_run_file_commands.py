"""GitHub's `$GITHUB_STEP_SUMMARY` and `$GITHUB_PATH` in real containers
(runner.run.step, runner.run.job): a summary kept with the run, redacted by its job,
shown after the run and by `runner logs`, bounded; PATH directories for the job's later
steps only, and nothing but absolute directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import runner_cli

pytestmark = pytest.mark.docker

POLICY = """\
version: 1
images: [base]
tools: [sh, head, tr]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
"""

MISSION = """\
name: files
on: [push]
jobs:
  summary:
    tools: [sh, head, tr]
    steps:
      - name: mask
        run: echo "::add-mask::hunter2-masked"
      - name: report
        run: |
          echo "## Tests" >> "$GITHUB_STEP_SUMMARY"
          echo "- 3 passed, token hunter2-masked" >> "$RUNNER_STEP_SUMMARY"
          printf 'bell\\033]0;title\\007 end\\n' >> "$GITHUB_STEP_SUMMARY"
      - name: too big
        run: head -c 1100000 /dev/zero | tr '\\0' x > "$GITHUB_STEP_SUMMARY"
  path:
    tools: [sh]
    steps:
      - run: |
          echo /opt/first >> "$GITHUB_PATH"
          echo "" >> "$GITHUB_PATH"
          echo /opt/tools/../second >> "$GITHUB_PATH"
      - run: echo "PATH=$PATH"
      - run: echo /opt/third >> "$RUNNER_PATH"
      - run: echo "PATH=$PATH"
  other:
    needs: [path]
    tools: [sh]
    steps:
      - run: echo "PATH=$PATH"
"""

STANDARD = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _events(state: Path, run_id: str) -> list[dict[str, Any]]:
    lines = (state / "runs" / run_id / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_step_summary_is_kept_redacted_shown_and_bounded_and_path_reaches_later_steps(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / ".missions" / "m.yml").write_text(MISSION)
    (repo / "policies" / "default.yml").write_text(POLICY)
    state = tmp_path / "state"
    done = runner_cli(repo, state, "run")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    # shown after the run, under the step it came from, masked, its escapes removed
    shown = done.stdout[done.stdout.index("summary of summary") :].splitlines()
    assert shown[:4] == [
        "summary of summary \u203a report:",
        "  │ ## Tests",
        "  │ - 3 passed, token ***",
        "  │ bell end",
    ]
    run_id = done.stdout.split("run ")[1].split(":")[0]
    events = _events(state, run_id)
    (kept,) = [e for e in events if e["kind"] == "step.summary"]
    assert (kept["job"], kept["step"]) == ("summary", 1)
    assert kept["markdown"] == ("## Tests\n- 3 passed, token ***\nbell\x1b]0;title\x07 end\n")
    warnings = [e["message"] for e in events if e["kind"] == "annotation"]
    assert warnings == [
        "$GITHUB_STEP_SUMMARY not kept: it holds 1100000 bytes, more than the 1024 KiB a "
        "step may write (GitHub's limit too)"
    ]
    logs = runner_cli(repo, state, "logs", run_id)
    assert logs.returncode == 0, logs.stderr
    assert "[summary/report] summary:\n  │ ## Tests\n  │ - 3 passed, token ***\n" in logs.stdout
    assert "hunter2-masked" not in logs.stdout + done.stdout
    # $GITHUB_PATH: the newest first, before the image's PATH, for this job's later steps
    printed = [e["line"] for e in events if e["kind"] == "output" and e["job"] != "summary"]
    assert printed == [
        f"PATH=/opt/second:/opt/first:{STANDARD}",
        f"PATH=/opt/third:/opt/second:/opt/first:{STANDARD}",
        f"PATH={STANDARD}",
    ]


@pytest.mark.parametrize(
    "line",
    [
        "/opt/bin:.",  # a second, relative entry: the working directory
        "/opt/bin:",  # an empty entry is the working directory too
        "bin",  # relative
        "LD_PRELOAD=/tmp/hook.so",  # a variable in disguise
        "/opt/bin\\033[2J",  # a control character
    ],
)
def test_a_path_line_that_is_not_one_absolute_directory_fails_the_step(
    tmp_path: Path, line: str
) -> None:
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / "policies" / "default.yml").write_text(POLICY)
    (repo / ".missions" / "m.yml").write_text(
        "name: p\non: [push]\njobs:\n  j:\n    tools: [sh]\n    steps:\n"
        f"      - run: printf '{line}\\n' >> \"$GITHUB_PATH\"\n"
        '      - run: echo "PATH=$PATH"\n'
    )
    state = tmp_path / "state"
    done = runner_cli(repo, state, "run", "--json")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1
    job = json.loads(done.stdout)["jobs"]["j"]
    assert "$RUNNER_PATH: line 1: " in job["reason"]
    assert "is not one absolute directory" in job["reason"]
    assert [step["status"] for step in job["steps"]] == ["failure", "skipped"]
