"""The next step's container, prepared while a step runs (runner.run.step), on the real
engine: it is booted ahead (the engine started it; runner-init waits for the step's
environment), yet a step that is skipped, cancelled, or whose spec changed never runs in
it, and nothing of it is left behind: not after the job, not after Ctrl-C, and not after
a killed runner (its runner-init exits at once, its stdin closed with runner's connection).
What the engine did is read from its own event stream (`docker events`), by label.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import RUNNER, runner_cli

from runner.engine.stepinit import contract

pytestmark = pytest.mark.docker

POLICY = """\
version: 1
images: [base]
tools: [sh, sleep, cat]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
"""


@pytest.fixture(scope="module")
def shared_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


def make_repo(root: Path, steps: str) -> Path:
    (root / ".missions").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / "policies" / "default.yml").write_text(POLICY)
    mission = "name: m\non: [push]\njobs:\n  j:\n    tools: [sh, sleep, cat]\n    steps:\n"
    (root / ".missions" / "m.yml").write_text(mission + textwrap.indent(steps, " " * 6))
    return root


def labelled(label: str) -> tuple[list[str], list[str]]:
    def ids(*command: str) -> list[str]:
        found = subprocess.run(
            [*command, "--filter", f"label={label}"], capture_output=True, text=True, check=True
        )
        return found.stdout.split()

    return ids("docker", "ps", "-aq"), ids("docker", "volume", "ls", "-q")


def step_containers(label: str, since: datetime, event: str) -> list[str]:
    """The step containers carrying `label` for which the engine reported `event`
    (create, start, die, destroy) since `since`, in order."""
    window = ["--since", since.isoformat(), "--until", _now().isoformat()]
    filters = ["type=container", f"event={event}", f"label={label}", "label=runner.role=step"]
    found = subprocess.run(
        ["docker", "events", *window, *(f"--filter={f}" for f in filters), "--format", "{{.ID}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return found.stdout.split()


def _now() -> datetime:
    return datetime.now(UTC)


def run(repo: Path, state: Path) -> tuple[dict[str, Any], datetime]:
    since = _now()
    done = runner_cli(repo, state, "run", "--json")
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout), since


def output_of(state: Path, result: dict[str, Any]) -> list[str]:
    events = state / "runs" / result["run_id"] / "events.jsonl"
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    return [event["line"] for event in lines if event["kind"] == "output"]


def test_a_skipped_next_step_never_runs_in_its_booted_container_and_leaves_nothing(
    tmp_path: Path, shared_state: Path
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        - run: sleep 2; exit 3
        - run: echo SECOND-RAN > second.txt; echo SECOND-RAN
        - {run: echo ALWAYS-RAN, if: always()}
        """,
    )
    result, since = run(repo, shared_state)
    steps = result["jobs"]["j"]["steps"]
    assert [s["status"] for s in steps] == ["failure", "skipped", "success"]
    label = f"runner.run-id={result['run_id']}"
    # steps 2 and 3's containers were created and booted while step 1 slept; step 2's
    # was never used, step 3 ran in its own
    created = step_containers(label, since, "create")
    assert len(created) == 3
    assert sorted(step_containers(label, since, "start")) == sorted(created)
    assert "SECOND-RAN" not in output_of(shared_state, result)
    assert "ALWAYS-RAN" in output_of(shared_state, result)
    assert labelled(label) == ([], [])


def test_a_prepared_container_is_used_only_for_the_spec_it_was_made_for(tmp_path: Path) -> None:
    """Step 2's container, prepared before step 1 set LATE through $RUNNER_ENV, is not
    the one step 2 needs: it gets a new one (and sees LATE); step 3 runs in a container
    prepared again once LATE was known. The ledger of the run verifies."""
    repo = make_repo(
        tmp_path / "repo",
        """\
        - run: sleep 1; echo LATE=set >> "$RUNNER_ENV"
        - run: echo "late=$LATE"
        - run: echo "third, late=$LATE"
        """,
    )
    state = tmp_path / "state"  # its own: the run publishes its key for `audit verify`
    result, since = run(repo, state)
    assert [s["status"] for s in result["jobs"]["j"]["steps"]] == ["success"] * 3
    assert output_of(state, result) == ["late=set", "third, late=set"]
    label = f"runner.run-id={result['run_id']}"
    created = step_containers(label, since, "create")
    # 1; 2 and 3 prepared while 1 ran (without LATE: not used); 2 anew; 3 prepared again
    # while 2 ran, and used
    assert len(created) == 5
    assert sorted(step_containers(label, since, "start")) == sorted(created)
    assert labelled(label) == ([], [])
    verified = runner_cli(repo, state, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _start(repo: Path, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*RUNNER, "run"],
        cwd=repo,
        env={**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _running_steps(label: str) -> list[str]:
    found = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label={label}", "--filter", "label=runner.role=step"],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.split()


def _wait_for_prepared(label: str, runner: subprocess.Popen[str]) -> None:
    """Until step 1 runs and step 2's container is booted beside it."""
    end = time.monotonic() + 120
    while len(_running_steps(label)) < 2:
        assert time.monotonic() < end and runner.poll() is None, "step 2 was never prepared"
        time.sleep(0.1)


SLEEPER = """\
- run: sleep 60
- run: echo SECOND-RAN
"""


def test_ctrl_c_while_the_next_step_is_prepared_leaves_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", SLEEPER)
    state = tmp_path / "state"
    label = f"runner.state-dir={state.resolve()}"
    runner = _start(repo, state)
    try:
        _wait_for_prepared(label, runner)
        runner.send_signal(signal.SIGINT)
        _, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 130, err
    assert "Traceback" not in err
    events = next((state / "runs").glob("*/events.jsonl")).read_text().splitlines()
    assert not [
        e
        for e in map(json.loads, events)
        if e["kind"] in ("output", "step.started") and e["step"] == 1
    ]
    assert labelled(label) == ([], [])


def test_a_killed_runners_prepared_container_exits_at_once_its_step_never_run(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", SLEEPER)
    state = tmp_path / "state"
    label = f"runner.state-dir={state.resolve()}"
    runner = _start(repo, state)
    try:
        _wait_for_prepared(label, runner)
        runner.send_signal(signal.SIGKILL)
        runner.communicate(timeout=60)
        end = time.monotonic() + 20
        while len(_running_steps(label)) > 1:  # step 1's dies at its own deadline
            assert time.monotonic() < end, "the prepared container outlived runner"
            time.sleep(0.2)
        prepared = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={label}", "--filter", "status=exited"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert len(prepared) == 1
        inspected = json.loads(
            subprocess.run(
                ["docker", "inspect", prepared[0]], capture_output=True, text=True, check=True
            ).stdout
        )[0]
        assert inspected["Config"]["Cmd"][-1] == "echo SECOND-RAN"
        # runner-init's stdin closed with runner's connection: no environment, no step
        assert inspected["State"]["ExitCode"] == contract.SETUP_FAILED
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        swept = runner_cli(repo, state, "gc")
    assert swept.returncode == 0, swept.stderr
    assert labelled(label) == ([], [])
