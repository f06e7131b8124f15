"""Orphans die with the runner: after `kill -9` of a runner mid-step, its step container
stops by itself at the job's timeout plus runner-init's grace, without `runner gc` (which
then only removes what is left)."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import RUNNER, runner_cli

from runner.run.step import INIT_GRACE_S

pytestmark = pytest.mark.docker
TIMEOUT_S = 6  # timeout-minutes: 0.1


def containers(label: str, *, running: bool) -> list[str]:
    found = subprocess.run(
        ["docker", "ps", "-q", *([] if running else ["-a"]), "--filter", label],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.split()


def ran_for(container: str) -> float:
    """Seconds from the container's start to its end, as the engine recorded them: the
    test may see it running late on a busy machine, the engine's clock does not."""
    found = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.StartedAt}} {{.State.FinishedAt}}", container],
        capture_output=True,
        text=True,
        check=True,
    )
    start, end = (
        datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00") for stamp in found.stdout.split()
    )
    return (end - start).total_seconds()


def test_a_killed_runners_step_dies_at_its_timeout_plus_grace(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / "policies" / "default.yml").write_text(
        "version: 1\nimages: [base]\ntools: [sh, sleep]\n"
        "limits: {timeout-minutes: 5, memory: 128m, cpus: 1, pids: 32}\n"
    )
    (repo / ".missions" / "m.yml").write_text(
        textwrap.dedent(
            """\
            name: m
            on: [push]
            jobs:
              j:
                tools: [sh, sleep]
                timeout-minutes: 0.1
                steps: [{run: "sleep 300 & sleep 300"}]
            """
        )
    )
    state = tmp_path / "state"
    env = {**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true"}
    runner = subprocess.Popen(
        [*RUNNER, "run", ".missions/m.yml"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    label = f"label=runner.state-dir={state.resolve()}"
    try:
        deadline = time.monotonic() + 120
        while not containers(label, running=True):
            assert time.monotonic() < deadline and runner.poll() is None, "the step never ran"
            time.sleep(0.1)
        started = time.monotonic()
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
        limit = started + TIMEOUT_S + INIT_GRACE_S + 10
        while containers(label, running=True):
            assert time.monotonic() < limit, "the killed runner's step is still running"
            time.sleep(0.5)
        stopped = containers(label, running=False)
        assert len(stopped) == 1  # stopped, left for gc
        assert ran_for(stopped[0]) > TIMEOUT_S  # it ran until its deadline, not less
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        swept = runner_cli(repo, state, "gc")
    assert swept.returncode == 0, swept.stderr
    assert "removed 1 container(s) and 2 volume(s)" in swept.stdout
    assert containers(label, running=False) == []
