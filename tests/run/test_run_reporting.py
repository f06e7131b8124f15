"""What a real run leaves behind: no secret anywhere, a followable log, selections, JUnit."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import textwrap
import time
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import RUNNER, runner_cli

pytestmark = pytest.mark.docker

SECRET = 'tok-Zq!x/9+=&"\\ä-7f3a91c2'
MASKED = "hunter2-added-by-a-step"
POLICY = """\
version: 1
images: [base]
tools: [sh, sleep]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
rules:
  - name: leak-may-read-the-token
    match: {path: .missions/m.yml, mission: secrets, job: leak}
    allow: {secrets: [API_TOKEN]}
"""


def make_repo(root: Path, mission: str) -> Path:
    (root / ".missions").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / ".missions" / "m.yml").write_text(textwrap.dedent(mission))
    (root / "policies" / "default.yml").write_text(POLICY)
    return root


def env_for(state: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true", **extra}


def forms(value: str) -> list[str]:
    raw = value.encode()
    return [
        value,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    ]


def test_no_secret_reaches_any_byte_the_runner_wrote(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: secrets
        on: [push]
        jobs:
          leak:
            permissions: {secrets: [API_TOKEN]}
            env: {TOKEN: "${{ secrets.API_TOKEN }}"}
            tools: [sh, sleep]
            steps:
              - id: s
                run: |
                  echo "plain: $TOKEN"
                  head=${TOKEN%????????}; printf 'split: %s' "$head"; sleep 0.5
                  printf '%s\\n' "${TOKEN#"$head"}"
                  echo "::add-mask::hunter2-added-by-a-step"
                  echo "masked later: hunter2-added-by-a-step"
                  echo "::error::failed while holding $TOKEN"
                  echo "word=$TOKEN" >> "$RUNNER_OUTPUT"
                  exit 4
            outputs: {word: "${{ steps.s.outputs.word }}"}
        """,
    )
    state = tmp_path / "state"
    junit = tmp_path / "report.xml"
    done = runner_cli(
        repo,
        state,
        "run",
        "--secret",
        "API_TOKEN=MY_TOKEN_VAR",
        "--junit",
        str(junit),
        MY_TOKEN_VAR=SECRET,
    )
    assert done.returncode == 1, done.stderr
    events = next((state / "runs").glob("*/events.jsonl")).read_text()
    assert "plain: ***" in events and "masked later: ***" in events
    written = [done.stdout, done.stderr, junit.read_text()]
    written += [p.read_bytes().decode("utf-8", "replace") for p in state.rglob("*") if p.is_file()]
    assert len(written) > 8
    for text in written:
        for form in [*forms(SECRET), MASKED]:
            assert form not in text


def test_logs_follow_a_live_run_to_its_end(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: ticks
        on: [push]
        jobs:
          tick:
            tools: [sh, sleep]
            steps:
              - run: for i in 1 2 3; do echo "tick $i"; sleep 1; done
        """,
    )
    state = tmp_path / "state"
    run = subprocess.Popen(
        [*RUNNER, "run"], cwd=repo, env=env_for(state), stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not list((state / "runs").glob("*/events.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.1)
    run_id = next((state / "runs").glob("*/events.jsonl")).parent.name
    follow = runner_cli(repo, state, "logs", run_id, "--follow", timeout=120)
    run.communicate(timeout=60)
    assert run.returncode == 0
    assert follow.returncode == 0, follow.stderr
    ticks = [line[-6:] for line in follow.stdout.splitlines() if line.endswith(("1", "2", "3"))]
    assert ticks == ["tick 1", "tick 2", "tick 3"], follow.stdout


def test_job_selection_inputs_and_junit(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: pick
        on: [push]
        inputs:
          who: {type: string, default: nobody}
        jobs:
          a: {steps: [{run: echo a}]}
          b:
            needs: [a]
            steps: [{run: 'echo "hello ${{ inputs.who }}"'}, {run: exit 2}]
          c: {steps: [{run: echo c}]}
        """,
    )
    state = tmp_path / "state"
    junit = tmp_path / "junit.xml"
    done = runner_cli(
        repo, state, "run", "--json", "--job", "b", "--input", "who=alice", "--junit", str(junit)
    )
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert sorted(result["jobs"]) == ["a", "b"]
    events = (state / "runs" / result["run_id"] / "events.jsonl").read_text()
    assert "hello alice" in events
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert sorted(s.get("name") for s in suites) == ["a", "b"]
    failed = next(s for s in suites if s.get("name") == "b")
    assert failed.get("failures") == "1"
    bad = runner_cli(repo, state, "run", "--input", "nope=1")
    assert bad.returncode == 2 and "unknown input(s) nope" in bad.stderr
