"""`runner run` end to end, in real containers on the real engine.

The runs share one state directory (module scope) so that toolset images are built once;
each run has its own run id and its own repository folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RUNNER, runner_cli

pytestmark = pytest.mark.docker

POLICY = """\
version: 1
images: [base]
tools: [sh, cat, sleep]
limits: {timeout-minutes: 10, memory: 256m, cpus: 1, pids: 64}
"""


@pytest.fixture(scope="module")
def shared_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


def make_repo(root: Path, mission: str, *, policy: str = POLICY) -> Path:
    (root / ".missions").mkdir(parents=True)
    (root / "policies").mkdir()
    (root / ".missions" / "m.yml").write_text(textwrap.dedent(mission))
    (root / "policies" / "default.yml").write_text(policy)
    (root / "data.txt").write_text("from the repository\n")
    return root


def run(repo: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return runner_cli(repo, state, "run", "--json", *args)


def result_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in done.stderr, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def labelled(label: str) -> tuple[list[str], list[str]]:
    containers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return containers, volumes


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        # SPEC 7: a first run publishes its new public key in policies/keys/ on purpose.
        if ".runner" in path.parts or (root / "policies" / "keys") in (path, path.parent):
            continue
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_outputs_env_matrix_and_needs(tmp_path: Path, shared_state: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: flow
        on: [push]
        jobs:
          a:
            tools: [sh, cat]
            steps:
              - id: make
                run: |
                  echo "word=hello" >> "$RUNNER_OUTPUT"
                  echo "FROM_A=set-by-env-file" >> "$RUNNER_ENV"
                  cat data.txt > copy.txt
              - run: test "$FROM_A" = set-by-env-file && cat copy.txt
            outputs:
              word: ${{ steps.make.outputs.word }}
          b:
            needs: [a]
            env: {GOT: "${{ needs.a.outputs.word }}"}
            steps:
              - run: test "$GOT" = hello
          m:
            strategy:
              matrix: {shard: [1, 2], include: [{shard: 3, slow: true}]}
            steps:
              - id: s
                run: echo "seen=${{ matrix.shard }}-${{ matrix.slow }}" >> "$RUNNER_OUTPUT"
            outputs:
              seen: ${{ steps.s.outputs.seen }}
        """,
    )
    before = tree_digest(repo)
    done = run(repo, shared_state)
    result = result_of(done)
    assert done.returncode == 0, done.stderr
    jobs = result["jobs"]
    assert jobs["a"]["outputs"] == {"word": "hello"}
    assert jobs["b"]["status"] == "success"
    assert sorted(jobs) == ["a", "b", "m (1)", "m (2)", "m (3, true)"]
    assert jobs["m (3, true)"]["outputs"] == {"seen": "3-true"}
    assert jobs["m (1)"]["outputs"] == {"seen": "1-"}
    assert tree_digest(repo) == before, "the host repository was written"
    assert not (repo / "copy.txt").exists()
    run_dir = shared_state / "runs" / result["run_id"]
    lines = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert any(e.get("line") == "from the repository" for e in lines)
    assert labelled(f"runner.run-id={result['run_id']}") == ([], [])


def test_independent_jobs_run_in_parallel(tmp_path: Path, shared_state: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: par
        on: [push]
        jobs:
          one: {steps: [{run: sleep 3}], tools: [sh, sleep]}
          two: {steps: [{run: sleep 3}], tools: [sh, sleep]}
          three: {steps: [{run: sleep 3}], tools: [sh, sleep]}
        """,
    )
    done = run(repo, shared_state, "--max-parallel", "3")
    assert done.returncode == 0, done.stderr
    run_dir = shared_state / "runs" / result_of(done)["run_id"]
    kinds = [json.loads(x)["kind"] for x in (run_dir / "events.jsonl").read_text().splitlines()]
    steps = [k for k in kinds if k in ("step.started", "step.finished")]
    # Each step sleeps 3 s: all three starting before any finishes is overlap, however
    # busy the machine (a wall-clock bound is not: a loaded CI host is slow to start them).
    assert steps[:3] == ["step.started"] * 3, "a job started only after another finished"


def test_failure_skips_dependents_but_always_runs(tmp_path: Path, shared_state: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: fails
        on: [push]
        jobs:
          a:
            steps:
              - run: exit 3
              - run: echo never
          b: {needs: [a], steps: [{run: echo b}]}
          c: {needs: [b], steps: [{run: echo c}]}
          cleanup: {needs: [a], if: "${{ always() }}", steps: [{run: echo cleanup}]}
          report: {needs: [a], if: "failure()", steps: [{run: echo report}]}
          soft: {continue-on-error: true, steps: [{run: exit 1}]}
        """,
    )
    done = run(repo, shared_state)
    assert done.returncode == 1
    jobs = result_of(done)["jobs"]
    assert (jobs["a"]["status"], jobs["a"]["steps"][0]["reason"]) == ("failure", "exit code 3")
    assert jobs["a"]["steps"][1]["status"] == "skipped"
    assert jobs["b"] == {**jobs["b"], "status": "skipped", "reason": "dependency a did not succeed"}
    assert jobs["c"]["status"] == "skipped"
    assert jobs["cleanup"]["status"] == "success"
    assert jobs["report"]["status"] == "success"
    assert jobs["soft"]["status"] == "failure" and jobs["soft"]["continue_on_error"] is True


def test_timeout_kills_promptly_and_retry_recovers_a_flaky_step(
    tmp_path: Path, shared_state: Path
) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: timing
        on: [push]
        jobs:
          slow:
            tools: [sh, sleep]
            steps:
              - run: sleep 120
                timeout-minutes: 0.05
          flaky:
            tools: [sh, cat]
            steps:
              - run: |
                  n=$(cat count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > count
                  echo "attempt $n"; [ "$n" -ge 3 ]
                retry: {max-attempts: 3, backoff: fixed, delay: 100ms}
        """,
    )
    started = time.monotonic()
    done = run(repo, shared_state)
    elapsed = time.monotonic() - started
    jobs = result_of(done)["jobs"]
    assert done.returncode == 1
    assert (jobs["slow"]["status"], jobs["slow"]["steps"][0]["reason"]) == ("failure", "timeout")
    assert elapsed < 30, f"a 3 s timeout took {elapsed:.0f} s to end the run"
    flaky = jobs["flaky"]["steps"][0]
    assert (flaky["status"], flaky["attempts"]) == ("success", 3)


def test_policy_denial_exits_3_before_any_container(tmp_path: Path, shared_state: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: denied
        on: [push]
        jobs:
          net:
            permissions: {network: egress}
            steps: [{run: echo hi}]
        """,
    )
    done = runner_cli(repo, shared_state, "run")
    assert done.returncode == 3, done.stderr
    assert "network" in done.stderr and "Traceback" not in done.stderr
    ledger = (shared_state / "ledger" / "entries.jsonl").read_text().splitlines()
    assert any('"policy.decision"' in line and '"allowed":false' in line for line in ledger)
    last = json.loads(ledger[-1])
    assert (last["type"], last["result"]) == ("run.finished", "denied")
    assert labelled(f"runner.state-dir={shared_state.resolve()}") == ([], [])


@pytest.fixture
def sleeping_repo(tmp_path: Path) -> Iterator[Path]:
    yield make_repo(
        tmp_path / "repo",
        """\
        name: sleeper
        on: [push]
        jobs:
          long:
            tools: [sh, sleep]
            steps: [{run: sleep 60}]
        """,
    )


def _start(repo: Path, state: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true"}
    return subprocess.Popen(
        [*RUNNER, "run"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_container(state: Path, deadline_s: float = 120) -> str:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        running = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=runner.state-dir={state.resolve()}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if running:
            return running[0]
        time.sleep(0.2)
    raise AssertionError("no step container started")


def test_sigint_mid_step_exits_130_and_leaves_nothing(sleeping_repo: Path, tmp_path: Path) -> None:
    state = tmp_path / "state-int"
    proc = _start(sleeping_repo, state)
    _wait_for_container(state)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 10
    assert "Traceback" not in err
    assert labelled(f"runner.state-dir={state.resolve()}") == ([], [])
    run_json = next((state / "runs").glob("*/run.json"))
    assert json.loads(run_json.read_text())["result"] == "cancelled"


def test_kill_9_then_gc_leaves_nothing(sleeping_repo: Path, tmp_path: Path) -> None:
    state = tmp_path / "state-kill"
    proc = _start(sleeping_repo, state)
    _wait_for_container(state)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert labelled(f"runner.state-dir={state.resolve()}")[0], "the crash left nothing to collect"
    gc = runner_cli(sleeping_repo, state, "gc")
    assert gc.returncode == 0, gc.stderr
    assert labelled(f"runner.state-dir={state.resolve()}") == ([], [])


def test_no_engine_is_exit_4_after_validation_and_policy(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        """\
        name: m
        on: [push]
        jobs:
          j: {steps: [{run: echo hi}]}
        """,
    )
    done = runner_cli(
        repo, tmp_path / "state", "run", DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock"
    )
    assert done.returncode == 4, done.stderr
    assert "no Docker engine answers" in done.stderr and "scripts/ensure-docker.sh" in done.stderr
    assert "Traceback" not in done.stderr
