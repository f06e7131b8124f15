"""`services:` end to end, in real containers on the real engine: a job's steps reach its
service by name; a service that never turns healthy fails the job before any step runs,
naming it; a service's secret reaches it and nothing else; and whatever way the job ends,
no container or network of the run is left (runner.run.services)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import RUNNER, runner_cli

from runner.audit.ledger import ENTRIES

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
POLICY = """\
version: 1
images: [python]
tools: [sh, python3]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
build: {from: [debian:bookworm-slim], network: [python]}
rules:
  - name: db
    match: {path: .missions/m.yml, job: "*"}
    allow: {secrets: [DB_PASSWORD], tools-all: true}  # a service runs its image whole
"""
SECRET = "pa\"ss'wo\\rd $(x) `y`"
GET = (
    "python3 -c 'import urllib.request, hashlib; "
    'body = urllib.request.urlopen("http://web:8080/password").read(); '
    'print("got", hashlib.sha256(body).hexdigest())\''
)
WEB = """\
web:
  image: python
  env: {PASSWORD: "${{ secrets.DB_PASSWORD }}"}
  command: [sh, -c, 'printf %s "$PASSWORD" > /tmp/password && cd /tmp && exec python3 -m http.server 8080']
  options: >-
    --health-cmd "python3 -c 'import urllib.request; urllib.request.urlopen(\\"http://localhost:8080/\\")'"
    --health-interval 500ms --health-retries 40
"""


def make_repo(root: Path, services: str, steps: str) -> Path:
    shutil.copytree(REPO / "containers", root / "containers")
    (root / ".missions").mkdir()
    (root / "policies").mkdir()
    (root / "policies" / "default.yml").write_text(POLICY)
    mission = (
        "name: m\non: [push]\njobs:\n  test:\n    container: python\n    tools: [sh, python3]\n"
        "    services:\n"
        + textwrap.indent(services, "      ")
        + "    steps:\n"
        + textwrap.indent(steps, "      ")
    )
    (root / ".missions" / "m.yml").write_text(mission)
    return root


def run(repo: Path, state: Path) -> subprocess.CompletedProcess[str]:
    return runner_cli(
        repo, state, "run", "--json", "--secret", "DB_PASSWORD", timeout=900, DB_PASSWORD=SECRET
    )


def events_of(state: Path, run_id: str) -> list[dict[str, Any]]:
    text = (state / "runs" / run_id / "events.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def ledger_of(state: Path, run_id: str) -> list[dict[str, Any]]:
    lines = (state / "ledger" / ENTRIES).read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("run_id") == run_id]


def left_behind(state: Path) -> tuple[list[str], list[str]]:
    """The containers and networks of runs of `state` that the engine still holds."""
    label = f"label=runner.state-dir={state.resolve()}"
    containers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True, check=True
    ).stdout.split()
    nets = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", label],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return containers, nets


def test_a_step_reaches_its_service_by_name_and_the_service_is_in_the_ledger(
    tmp_path: Path,
) -> None:
    steps = f"- run: {json.dumps(GET)}\n"
    repo = make_repo(tmp_path / "repo", WEB, steps)
    state = tmp_path / "state"
    done = run(repo, state)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    events = events_of(state, run_id)
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    assert [e["line"] for e in events if e["kind"] == "output"] == [f"got {digest}"]
    kinds = [e["kind"] for e in events if e["kind"].startswith(("service.", "step.started"))]
    assert kinds == ["service.started", "step.started", "service.stopped"]
    ledger = ledger_of(state, run_id)
    (started,) = [e for e in ledger if e["type"] == "service.started"]
    (stopped,) = [e for e in ledger if e["type"] == "service.stopped"]
    assert (started["job"], started["service"], started["health"]) == ("test", "web", "healthy")
    assert started["image"].startswith("runner/python:")
    assert started["image_digest"].startswith("sha256:")
    assert (stopped["service"], stopped["image_digest"]) == ("web", started["image_digest"])
    assert SECRET not in json.dumps(ledger) and SECRET not in json.dumps(events)
    assert left_behind(state) == ([], [])
    replay = runner_cli(repo, state, "logs", run_id).stdout.splitlines()
    assert [line for line in replay if "service web" in line] == [
        "[test] service web: healthy",
        "[test] service web: removed",
    ]


def test_a_service_that_exits_fails_the_job_with_its_exit_code_and_last_lines(
    tmp_path: Path,
) -> None:
    services = """\
db:
  image: python
  command: [sh, -c, 'echo "cannot start: no config"; exit 3']
  options: --health-cmd "true" --health-interval 1s --health-start-period 30s
"""
    repo = make_repo(tmp_path / "repo", services, "- run: echo the step ran\n")
    state = tmp_path / "state"
    done = run(repo, state)
    assert done.returncode == 1, done.stderr
    (job,) = json.loads(done.stdout)["jobs"].values()
    assert job["reason"] == (
        "service 'db' (python) exited with code 3; its last lines: cannot start: no config"
    )
    assert "the step ran" not in done.stdout + done.stderr
    assert left_behind(state) == ([], [])


def test_a_service_that_never_turns_healthy_fails_the_job_before_any_step(
    tmp_path: Path,
) -> None:
    services = """\
db:
  image: python
  env: {PASSWORD: "${{ secrets.DB_PASSWORD }}"}
  command: [sh, -c, 'echo "db starting on ${{ github.event_name }} with $PASSWORD"; exec sleep 600']
  options: --health-cmd "echo no database here; exit 1" --health-interval 300ms --health-retries 2
"""
    repo = make_repo(tmp_path / "repo", services, "- run: echo the step ran\n")
    state = tmp_path / "state"
    done = run(repo, state)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    (job,) = result["jobs"].values() if isinstance(result["jobs"], dict) else result["jobs"]
    assert job["status"] == "failure"
    assert job["reason"] == (
        "service 'db' (python) turned unhealthy; its last health check said: no database "
        "here; its last lines: db starting on push with ***"
    )
    events = events_of(state, result["run_id"])
    assert not [e for e in events if e["kind"] == "step.started"]
    assert [(e["service"], e["health"]) for e in events if e["kind"] == "service.started"] == [
        ("db", "unhealthy")
    ]
    assert SECRET not in done.stdout + done.stderr + json.dumps(events)
    assert left_behind(state) == ([], [])


WAITING = """\
db:
  image: python
  command: [sleep, "600"]
  options: --health-cmd "exit 1" --health-interval 60s --health-start-period 300s
"""


def start_waiting(repo: Path, state: Path) -> subprocess.Popen[str]:
    """`runner run` in the background, returned once its service runs (and is waited for)."""
    env = {**os.environ, "RUNNER_STATE_DIR": str(state), "DB_PASSWORD": SECRET}
    process = subprocess.Popen(
        [*RUNNER, "run"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    labels = ["--filter", f"label=runner.state-dir={state.resolve()}"]
    labels += ["--filter", "label=runner.role=service"]
    deadline = time.monotonic() + 600
    while not subprocess.run(
        ["docker", "ps", "-q", *labels], capture_output=True, text=True, check=True
    ).stdout.split():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no service started: {process.communicate()}")
        time.sleep(0.3)
    return process


def test_ctrl_c_while_a_service_starts_exits_130_and_leaves_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", WAITING, "- run: echo the step ran\n")
    state = tmp_path / "state"
    process = start_waiting(repo, state)
    try:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "the step ran" not in out
    assert left_behind(state) == ([], [])


def test_kill_9_while_a_service_runs_then_gc_leaves_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", WAITING, "- run: echo the step ran\n")
    state = tmp_path / "state"
    process = start_waiting(repo, state)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    containers, nets = left_behind(state)
    assert containers and nets, "the crash left nothing to collect"
    gc = runner_cli(repo, state, "gc")
    assert gc.returncode == 0, gc.stderr
    assert left_behind(state) == ([], [])
