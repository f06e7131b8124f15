"""`runner run` end to end on Podman, as a user points runner at it (`DOCKER_HOST` at
Podman's socket): the demo mission and its ledger, Ctrl-C, and a crashed runner whose step
dies at its deadline and whose leftovers `runner gc` removes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, RUNNER, runner_cli

from runner.engine.backend import LABEL_ROLE, LABEL_STATE
from runner.run.step import INIT_GRACE_S

pytestmark = [pytest.mark.docker, pytest.mark.podman]
POLICY = """\
version: 1
images: [base]
tools: [sh, sleep]
limits: {timeout-minutes: 5, memory: 128m, cpus: 1, pids: 32}
"""
TIMEOUT_S = 6  # timeout-minutes: 0.1


def labelled(podman: Any, state: Path) -> list[str]:
    """Containers, volumes and networks on Podman that belong to runs of `state`."""
    label = {"label": f"{LABEL_STATE}={state.resolve()}"}
    found = [c["Id"] for c in podman.containers(all=True, filters=label)]
    found += [v["Name"] for v in podman.volumes(filters=label).get("Volumes") or []]
    found += [n["Name"] for n in podman.networks(filters=label)]
    return found


def running_steps(podman: Any, state: Path) -> list[str]:
    """Step containers of runs of `state` that are running (Podman's helpers run too)."""
    labels = [f"{LABEL_STATE}={state.resolve()}", f"{LABEL_ROLE}=step"]
    return [c["Id"] for c in podman.containers(filters={"label": labels})]


def sleeper(root: Path, timeout_minutes: float = 5) -> Path:
    (root / ".missions").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "default.yml").write_text(POLICY)
    (root / ".missions" / "m.yml").write_text(
        textwrap.dedent(
            f"""\
            name: sleeper
            on: [push]
            jobs:
              long:
                tools: [sh, sleep]
                timeout-minutes: {timeout_minutes}
                steps: [{{run: "sleep 300 & sleep 300"}}]
            """
        )
    )
    return root


@contextlib.contextmanager
def started(repo: Path, state: Path) -> Iterator[subprocess.Popen[str]]:
    """`runner run` of the repository's mission, killed if still running at the end and
    its pipes closed whatever the test did (a failed test leaves no open file behind)."""
    env = {**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true"}
    with subprocess.Popen(
        [*RUNNER, "run", ".missions/m.yml"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as runner:
        try:
            yield runner
        finally:
            if runner.poll() is None:
                runner.kill()


def wait_for_a_step(podman: Any, state: Path, runner: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not running_steps(podman, state):
        assert time.monotonic() < deadline and runner.poll() is None, "the step never ran"
        time.sleep(0.1)


def test_the_demo_runs_on_podman_and_its_ledger_verifies(tmp_path: Path, podman: Any) -> None:
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    shutil.copy(REPO / ".missions" / "demo.yml", repo / ".missions" / "demo.yml")
    shutil.copytree(REPO / "containers", repo / "containers")
    (repo / "policies").mkdir()
    shutil.copy(REPO / "policies" / "default.yml", repo / "policies" / "default.yml")
    state = tmp_path / "state"
    done = runner_cli(repo, state, "run", "--json", ".missions/demo.yml", timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {name: job["status"] for name, job in result["jobs"].items()} == {
        "hello (hello)": "success",
        "hello (bonjour)": "success",
        "report": "success",
        "publish": "success",
    }
    logs = runner_cli(repo, state, "logs", result["run_id"])
    assert "hello from demo" in logs.stdout and "bonjour from demo" in logs.stdout
    verified = runner_cli(repo, state, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout
    assert labelled(podman, state) == []


def test_ctrl_c_mid_step_exits_130_and_leaves_nothing(tmp_path: Path, podman: Any) -> None:
    repo = sleeper(tmp_path / "repo")
    state = tmp_path / "state"
    with started(repo, state) as runner:
        wait_for_a_step(podman, state, runner)
        sent = time.monotonic()
        runner.send_signal(signal.SIGINT)
        _, err = runner.communicate(timeout=60)
    assert runner.returncode == 130, err
    assert time.monotonic() - sent < 15 and "Traceback" not in err
    assert labelled(podman, state) == []
    run_json = next((state / "runs").glob("*/run.json"))
    assert json.loads(run_json.read_text())["result"] == "cancelled"


def test_a_crashed_runners_step_dies_at_its_deadline_and_gc_removes_the_rest(
    tmp_path: Path, podman: Any
) -> None:
    repo = sleeper(tmp_path / "repo", timeout_minutes=0.1)
    state = tmp_path / "state"
    try:
        with started(repo, state) as runner:
            wait_for_a_step(podman, state, runner)
            began = time.monotonic()
            runner.send_signal(signal.SIGKILL)
            runner.communicate(timeout=30)
        limit = began + TIMEOUT_S + INIT_GRACE_S + 15
        while running_steps(podman, state):  # runner-init kills it, alone
            assert time.monotonic() < limit, "the crashed runner's step is still running"
            time.sleep(0.5)
        assert time.monotonic() - began > TIMEOUT_S - 1  # it ran until its deadline
        assert labelled(podman, state), "the crash left nothing for gc"
    finally:
        swept = runner_cli(repo, state, "gc")
    assert swept.returncode == 0, swept.stderr
    assert "removed 1 container(s) and 2 volume(s)" in swept.stdout
    assert labelled(podman, state) == []
