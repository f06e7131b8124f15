"""A workflow command on stdout holds while stderr is in the middle of a line, in a real
run: a stderr fragment written before `::add-mask::` no longer prefixes that line, so the
value is masked wherever the step prints it later, and `::error` keeps its annotation.
(Before, the merged line `sh: ::add-mask::VALUE` was no command: VALUE was in the event
log, twice.) The readers' side: tests/engine/test_lines.py, test_output_lines.py."""

from __future__ import annotations

import json
import textwrap
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

# the value is made in the step, so the mission's text (which a run records) never holds it
VALUE = "hunter2-42-value"
MISSION = """\
name: lines
on: [push]
jobs:
  mixed:
    tools: [sh, sleep]
    steps:
      - name: mask
        run: |
          VALUE="hunter2-$((6 * 7))-""value"
          printf 'sh: ' >&2
          sleep 0.3
          echo "::add-mask::$VALUE"
          echo "can't create /proc/sys/kernel/core_pattern" >&2
          echo "later: $VALUE"
      - name: error
        run: |
          printf 'warning from stderr: ' >&2
          sleep 0.3
          echo "::error file=src/a.py,line=3::broken here"
          echo "the rest of stderr's line" >&2
"""


def events_of(tmp_path: Path) -> tuple[str, list[dict[str, Any]]]:
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / "policies" / "default.yml").write_text(POLICY)
    (repo / ".missions" / "m.yml").write_text(textwrap.dedent(MISSION))
    state = tmp_path / "state"
    done = runner_cli(repo, state, "run", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    text = (state / "runs" / run_id / "events.jsonl").read_text()
    return text, [json.loads(line) for line in text.splitlines()]


def test_a_workflow_command_holds_while_stderr_is_mid_line(tmp_path: Path) -> None:
    text, events = events_of(tmp_path)
    assert VALUE not in text  # masked: the registering line and the later one alike
    lines = [(e["step"], e["line"]) for e in events if e["kind"] == "output"]
    assert (0, "::add-mask::***") in lines
    assert (0, "later: ***") in lines
    assert (0, "sh: can't create /proc/sys/kernel/core_pattern") in lines
    assert (1, "warning from stderr: the rest of stderr's line") in lines
    notes = [e for e in events if e["kind"] == "annotation"]
    assert [(n["level"], n["message"], n["file"], n["line"]) for n in notes] == [
        ("error", "broken here", "src/a.py", 3)
    ]
