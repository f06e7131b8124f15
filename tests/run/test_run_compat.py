"""A GitHub workflow in real containers on the real engine: the artifact actions runner
builds in (runner.run.builtin_actions; the fast semantics are
tests/run/test_builtin_actions.py), a matrix over runner labels, whose Windows and
macOS entries are skipped with the reason (runner.mission.plan), a custom shell string
(runner.mission.shells), and a committed script run directly (126, with the help) and
through its interpreter."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import runner_cli

from runner.audit.ledger import ENTRIES

pytestmark = pytest.mark.docker

POLICY = """\
version: 1
images: [base]
tools: [sh, bash, cat, mkdir, ls, find, sort]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
"""

WORKFLOW = """\
name: ci
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    tools: [sh, mkdir]  # runner's one addition: what the job's containers hold
    steps:
      - uses: actions/checkout@v4
      - run: |
          mkdir -p reports/deep
          echo "3 passed, 1 failed" > reports/summary.txt
          echo "trace of the failure" > reports/deep/trace.log
      - run: exit 3
      - name: Upload test logs on failure
        if: failure()
        uses: actions/upload-artifact@v4
        with:
          name: test-logs
          path: reports/
          retention-days: 5
  report:
    needs: [test]
    if: always()
    runs-on: ubuntu-latest
    tools: [sh, find, sort, cat]
    steps:
      - uses: actions/download-artifact@v4
        with: {name: test-logs, path: logs}
      - run: find logs | sort && cat logs/summary.txt logs/deep/trace.log
  cross:
    strategy: {matrix: {os: [ubuntu-latest, windows-latest, macos-latest]}}
    runs-on: ${{ matrix.os }}
    steps:
      - run: echo "ran on ${{ matrix.os }}"
  committed:
    steps:
      - run: ./build.sh
  committed-by-interpreter:
    steps:
      - run: sh ./build.sh
  shells:
    tools: [bash]
    steps:
      - shell: bash -eo pipefail {0}
        run: '[[ -o pipefail && $- == *e* ]] && echo "pipefail and errexit on"'
"""


def test_upload_on_failure_download_a_windows_matrix_entry_and_a_custom_shell(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / ".missions" / "ci.yml").write_text(WORKFLOW)
    (repo / "policies" / "default.yml").write_text(POLICY)
    (repo / "build.sh").write_text("#!/bin/sh\necho built\n")
    (repo / "build.sh").chmod(0o755)
    state = tmp_path / "state"
    done = runner_cli(repo, state, "run", "--json")
    assert "Traceback" not in done.stderr, done.stderr
    result = json.loads(done.stdout)
    assert done.returncode == 1  # the test job failed, as it meant to
    assert result["jobs"]["test"]["status"] == "failure"
    assert result["jobs"]["report"]["status"] == "success", done.stderr
    skipped = "runner runs jobs in Linux containers only, so this job is skipped"
    assert {key: (job["status"], job["reason"]) for key, job in result["jobs"].items()} == {
        "test": ("failure", "step 'exit 3' failed: exit code 3"),
        "report": ("success", ""),
        "cross (ubuntu-latest)": ("success", ""),
        "cross (windows-latest)": ("skipped", f"runs-on windows-latest: {skipped}"),
        "cross (macos-latest)": ("skipped", f"runs-on macos-latest: {skipped}"),
        "shells": ("success", ""),
        "committed": (
            "failure",
            "step './build.sh' failed: exit code 126; the workspace is mounted noexec, so a "
            "file checked out or built in it cannot be executed: run a script through its "
            "interpreter (`sh ./scripts/build.sh`), or grant the job `permissions: {exec: "
            "true}` (which the policy must allow: `allow: {exec: true}`)",
        ),
        "committed-by-interpreter": ("success", ""),
    }
    run_dir = state / "runs" / result["run_id"]
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [
        e["line"] for e in events if e["kind"] == "output" and e["job"].startswith("cross")
    ] == ["ran on ubuntu-latest"]
    assert [e["line"] for e in events if e["kind"] == "output" and e["job"] == "shells"] == [
        "pipefail and errexit on"
    ]
    printed = [e["line"] for e in events if e["kind"] == "output" and e["job"] == "report"]
    assert printed == [
        "logs",
        "logs/deep",
        "logs/deep/trace.log",
        "logs/summary.txt",
        "3 passed, 1 failed",
        "trace of the failure",
    ]
    (stored,) = [e for e in events if e["kind"] == "artifact.stored"]
    assert (stored["job"], stored["name"], stored["path"]) == ("test", "test-logs", "reports")
    ledger = [json.loads(x) for x in (state / "ledger" / ENTRIES).read_text().splitlines()]
    sealed = [e for e in ledger if e.get("type") == "artifact.stored"]
    assert [(e["name"], e["sha256"]) for e in sealed] == [("test-logs", stored["sha256"])]


REPO = Path(__file__).resolve().parents[2]


def test_setup_python_runs_in_the_image_the_policy_maps_its_version_to(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "containers", repo / "containers")
    (repo / ".missions").mkdir()
    (repo / "policies").mkdir()
    (repo / "policies" / "default.yml").write_text(
        "version: 1\nimages: [python]\ntools: [sh, python3]\n"
        "limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}\n"
        "build: {from: [debian:bookworm-slim], network: [python]}\n"
        'toolchains: {python: {"3.11": python}}\n'
    )
    (repo / ".missions" / "ci.yml").write_text(
        textwrap.dedent(
            """\
            name: ci
            on: [push]
            jobs:
              test:
                runs-on: ubuntu-latest
                tools: [sh, python3]
                steps:
                  - uses: actions/checkout@v4
                  - id: py
                    uses: actions/setup-python@v5
                    with: {python-version: "3.11"}
                  - run: |
                      echo "asked ${{ steps.py.outputs.python-version }}"
                      python3 -c 'import sys; print("got %d.%d" % sys.version_info[:2])'
            """
        )
    )
    state = tmp_path / "state"
    done = runner_cli(repo, state, "run", "--json", timeout=900)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    run_dir = state / "runs" / result["run_id"]
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["line"] for e in events if e["kind"] == "output"] == ["asked 3.11", "got 3.11"]
