"""A step's output is complete, or runner says it is not: runner-init's trailer in real
containers (the reader's side without an engine: test_trailer.py).

runner-init ends stdout and stderr with a per-container trailer once nothing else can
write to them, and exits only when runner has acked it, so the engine cannot close the
attach before the last bytes arrive (Podman 4.3 did). These tests run again on Podman
(tests/podman/test_podman_output.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import RUNNER, run_container, runner_cli

from runner.engine.backend import (
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_STATE,
    ContainerSpec,
    OutputIncomplete,
)
from runner.engine.docker import sdk
from runner.engine.docker.backend import DockerBackend
from runner.engine.stepinit import contract
from runner.errors import RunnerError

pytestmark = pytest.mark.docker
MiB = 1024 * 1024
BUSYBOX = "runner-base/busybox:latest"


def spec(run_id: str, script: str, **changes: Any) -> ContainerSpec:
    fields: dict[str, Any] = {
        "image": BUSYBOX,
        "command": ["sh", "-c", script],
        "env": {},
        "labels": {LABEL_RUN: run_id},
        "memory_bytes": 64 * MiB,
        "cpus": 1.0,
        "pids": 32,
        "deadline_s": 60,
    }
    fields.update(changes)
    return ContainerSpec(**fields)


def read_all(
    backend: DockerBackend, cid: str, timeout_s: float = 60
) -> tuple[int | None, bytes, RunnerError | None]:
    """Run `cid` as a step runs: (its exit code, all it printed, the reader's error)."""
    output = backend.attach_output(cid)
    got: list[bytes] = []
    error: list[RunnerError] = []

    def read() -> None:
        try:
            got.extend(output)
        except RunnerError as exc:
            error.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    backend.start(cid)
    code = backend.wait(cid, timeout_s)
    reader.join(timeout=30)
    assert not reader.is_alive()
    return code, b"".join(got), error[0] if error else None


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("printf 'no newline at the end'", b"no newline at the end"),
        ("true", b""),
        ("printf 'a\\0b\\0\\0runner-init-end:'", b"a\0b\0\0runner-init-end:"),
        ("exec >&- 2>&-; sleep 0.2", b""),  # the step closed its own streams
    ],
    ids=["no-newline", "nothing", "nul-and-trailer-like", "closed-streams"],
)
def test_a_steps_output_comes_out_exact_and_complete(
    backend: DockerBackend, run_id: str, script: str, expected: bytes
) -> None:
    cid = backend.create(spec(run_id, script))
    try:
        code, output, error = read_all(backend, cid)
    finally:
        backend.remove(cid)
    assert (code, output, error) == (0, expected, None)


def test_ten_megabytes_come_out_exact(backend: DockerBackend, run_id: str) -> None:
    line = b"a line of a step that prints a lot, then exits at once\n"
    script = f"yes '{line.decode().strip()}' | head -c {10 * MiB}; printf end >&2"
    cid = backend.create(spec(run_id, script))
    try:
        code, output, error = read_all(backend, cid)
    finally:
        backend.remove(cid)
    assert code == 0 and error is None
    expected = (line * (10 * MiB // len(line) + 1))[: 10 * MiB]
    assert len(output) == 10 * MiB + 3
    assert output.replace(b"end", b"", 1) == expected  # stderr's "end" anywhere in it


def test_a_background_process_holding_stdout_neither_hangs_nor_cuts_the_output(
    backend: DockerBackend, run_id: str
) -> None:
    started = time.monotonic()
    script = "(sleep 300; echo too late) & (while :; do sleep 0.01; done) & echo step done"
    cid = backend.create(spec(run_id, script))
    try:
        code, output, error = read_all(backend, cid)
    finally:
        backend.remove(cid)
    assert (code, output, error) == (0, b"step done\n", None)
    assert time.monotonic() - started < contract.ACK_WAIT_S  # no wait for the ack's bound


def test_the_step_never_sees_the_nonce(backend: DockerBackend, run_id: str) -> None:
    """Not in its environment, not in runner-init's memory (non-dumpable: /proc/1/mem and
    /proc/1/environ belong to root), not on an inherited descriptor."""
    script = "env; ls /proc/self/fd; cat /proc/1/maps >/dev/null 2>&1; echo maps=$?"
    cid = backend.create(spec(run_id, script, env={"MINE": "1"}))
    try:
        code, output, error = read_all(backend, cid)
    finally:
        backend.remove(cid)
    assert code == 0 and error is None
    text = output.decode()
    assert "MINE=1\n" in text and contract.TRAILER_ENTRY not in text
    fds = sorted(int(line) for line in text.splitlines() if line.isdigit())
    assert fds == [0, 1, 2, 3]  # 3: ls's own directory; runner-init's stdin is not inherited
    assert "maps=1" in text


def test_runner_init_waits_for_the_ack_and_not_beyond_its_bound(
    backend: DockerBackend, run_id: str
) -> None:
    """Read without acking: the container stays alive after both trailers (so the engine
    has time to deliver them), then exits with the step's status at the bound."""
    nonce = contract.new_nonce()
    cid = backend.create(spec(run_id, "echo out; echo err >&2; exit 3"))
    backend._env[cid] = contract.encode_env({}, nonce=nonce)  # a nonce this test knows
    try:
        frames, stdin = sdk.attach(backend.api, cid, stdin=True, aligned=False)
        assert stdin is not None
        backend.api.start(cid)
        started = time.monotonic()
        stdin.send(backend._env.pop(cid), then_ack=False)
        mark = contract.trailer_of(nonce)
        got = b""
        for chunk in frames:
            got += chunk
            if got.count(mark) == 2:
                break
        assert backend.api.inspect_container(cid)["State"]["Running"] is True
        code = backend.wait(cid, 30)
        waited = time.monotonic() - started
        got += b"".join(frames)  # the attach ends with the container
        assert got.count(mark) == 2 and got.endswith(mark)
        assert sorted(got.replace(mark, b"").split()) == [b"err", b"out"]
        assert code == 3
        assert contract.ACK_WAIT_S - 0.5 <= waited <= contract.ACK_WAIT_S + 5, waited
    finally:
        backend.remove(cid)


def test_an_acked_step_exits_at_once_and_so_does_one_nobody_reads(
    backend: DockerBackend, run_id: str
) -> None:
    for attached in (True, False):
        cid = backend.create(spec(run_id, "echo quick"))
        try:
            started = time.monotonic()
            if attached:
                code, output, error = read_all(backend, cid)
                assert (output, error) == (b"quick\n", None)
            else:
                backend.start(cid)
                code = backend.wait(cid, 30)
            assert code == 0
            assert time.monotonic() - started < contract.ACK_WAIT_S - 1, attached
        finally:
            backend.remove(cid)


def test_output_cut_by_a_container_stopped_outside_runner_is_reported(
    backend: DockerBackend, run_id: str
) -> None:
    """The engine's view of a lost end: the stream stops without runner-init's trailer."""
    cid = backend.create(spec(run_id, "echo before; sleep 300"))
    try:
        output = backend.attach_output(cid)
        backend.start(cid)
        chunks = iter(output)
        assert next(chunks) == b"before\n"
        backend.api.kill(cid)  # not `backend.kill`: runner did not stop it
        with pytest.raises(OutputIncomplete, match=r"stdout and stderr ended without runner-init"):
            list(chunks)
    finally:
        backend.remove(cid)


def test_a_step_runner_kills_needs_no_trailer(backend: DockerBackend, run_id: str) -> None:
    """A timeout or a cancel: runner kills the container, so no end is awaited or missed."""
    cid = backend.create(spec(run_id, "echo started; sleep 300"))
    try:
        code, output = run_container(backend, cid, timeout_s=1)
    finally:
        backend.remove(cid)
    assert (code, output) == (None, "started\n")


def test_the_steps_deadline_still_holds_and_ends_the_output(
    backend: DockerBackend, run_id: str
) -> None:
    started = time.monotonic()
    cid = backend.create(spec(run_id, "echo begun; sleep 300 & sleep 300", deadline_s=2))
    try:
        code, output, error = read_all(backend, cid)
    finally:
        backend.remove(cid)
    assert code == contract.DEADLINE and error is None
    assert output.startswith(b"begun\nrunner-init: the step's deadline (2 s) passed")
    assert time.monotonic() - started < 2 + 5


POLICY = """\
version: 1
images: [base]
tools: [sh, sleep]
limits: {timeout-minutes: 5, memory: 128m, cpus: 1, pids: 32}
"""
MISSION = """\
name: cut
on: [push]
jobs:
  cut:
    tools: [sh, sleep]
    steps:
      - name: prints then waits
        run: echo before; sleep 300
"""


def test_a_run_whose_step_output_was_cut_fails_and_records_why(
    backend: DockerBackend, tmp_path: Path
) -> None:
    """Never a silent success: the step fails, saying the engine lost its output's end,
    in the event log, the ledger and the run's result, and the ledger still verifies."""
    repo, state = tmp_path / "repo", tmp_path / "state"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / "policies" / "default.yml").write_text(POLICY)
    (repo / ".missions" / "m.yml").write_text(MISSION)
    env = {**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true"}
    with subprocess.Popen(  # its pipes closed at the end, whatever the test did
        [*RUNNER, "run", "--json", ".missions/m.yml"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as runner:
        try:
            labels = [f"{LABEL_STATE}={state.resolve()}", f"{LABEL_ROLE}=step"]
            deadline = time.monotonic() + 180
            while not (steps := backend.api.containers(filters={"label": labels})):
                assert time.monotonic() < deadline and runner.poll() is None, "the step never ran"
                time.sleep(0.1)
            time.sleep(1)  # "before" printed
            backend.api.kill(steps[0]["Id"])  # from outside runner, as an engine losing the end
            out, err = runner.communicate(timeout=120)
        finally:
            if runner.poll() is None:
                runner.kill()
    assert runner.returncode == 1, err
    result = json.loads(out)
    step = result["jobs"]["cut"]["steps"][0]
    assert step["status"] == "failure"
    assert re.match(
        r"the output of container \w{12} is incomplete: its stdout and stderr", step["reason"]
    )
    events = [
        json.loads(line)
        for line in (state / "runs" / result["run_id"] / "events.jsonl").read_text().splitlines()
    ]
    (finished,) = [e for e in events if e.get("kind") == "step.finished"]
    assert finished["reason"] == step["reason"] and finished["exit_code"] == 137
    assert [e["line"] for e in events if e.get("kind") == "output"] == ["before"]
    shown = runner_cli(repo, state, "audit", "show", "--run", result["run_id"], "--json")
    (entry,) = [e for e in json.loads(shown.stdout) if e["type"] == "step.finished"]
    assert entry["reason"] == step["reason"] and entry["status"] == "failure"
    verified = runner_cli(repo, state, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
