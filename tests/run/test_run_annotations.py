"""`::error file=,line=,col=` from a step in a real container keeps its location into the
plain output, the JSON result, `runner logs --json` and the JUnit report."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import runner_cli

pytestmark = pytest.mark.docker

POLICY = """\
version: 1
images: [base]
tools: [sh]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
"""

MISSION = """\
name: notes
on: [push]
jobs:
  lint:
    tools: [sh]
    steps:
      - name: check
        run: |
          echo "::add-mask::hunter2-title"
          echo "::error file=src/a.py,line=3,col=5::bad"
          echo "::warning file=/workspace/lib/b.py,line=9,title=Leak hunter2-title::w"
          echo "::error file=../../etc/hosts,line=x::outside"
          exit 1
"""


def test_a_steps_error_location_reaches_the_plain_output_the_json_and_junit(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / ".missions" / "m.yml").write_text(MISSION)
    (repo / "policies" / "default.yml").write_text(POLICY)
    state = tmp_path / "state"
    junit = tmp_path / "junit.xml"

    plain = runner_cli(repo, state, "run", "--junit", str(junit))
    assert "Traceback" not in plain.stderr, plain.stderr
    assert plain.returncode == 1, plain.stdout + plain.stderr
    lines = plain.stdout.splitlines()
    assert "src/a.py:3:5: error: bad [lint \u203a check]" in lines
    assert "lib/b.py:9: warning: Leak ***: w [lint \u203a check]" in lines
    assert "../../etc/hosts: error: outside [lint \u203a check]" in lines
    assert "hunter2-title" not in plain.stdout.replace("::add-mask::", "")

    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case is not None and (case.get("file"), case.get("line")) == ("src/a.py", "3")
    failure = case.find("failure")
    assert failure is not None and "src/a.py:3:5: error: bad" in (failure.get("message") or "")
    assert "src/a.py:3:5: error: bad" in (failure.text or "")

    done = runner_cli(repo, state, "run", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)
    notes = {(n["file"], n.get("line"), n.get("col")) for n in result["annotations"]}
    assert ("src/a.py", 3, 5) in notes
    assert ("lib/b.py", 9, None) in notes
    located = [n for n in result["annotations"] if n["file"] == "src/a.py"]
    assert f"{located[0]['file']}:{located[0]['line']}:{located[0]['col']}" == "src/a.py:3:5"
    assert "hunter2-title" not in done.stdout

    logs = runner_cli(repo, state, "logs", result["run_id"], "--json")
    stored = [json.loads(line) for line in logs.stdout.splitlines()]
    errors = [e for e in stored if e["kind"] == "annotation" and e.get("file") == "src/a.py"]
    assert [(e["line"], e["col"], e["message"]) for e in errors] == [(3, 5, "bad")]
    replay = runner_cli(repo, state, "logs", result["run_id"])
    assert "[lint/check] src/a.py:3:5: error: bad" in replay.stdout.splitlines()
