"""No secret on the host's disk: a run that uses a secret leaves no trace of it in the
engine's data directory (`docker info` DataRoot), neither while its step runs nor after.

Before runner-init, Docker wrote the step's environment into the container's
`config.v2.json` and every output line into `<id>-json.log`, both under DataRoot.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from conftest import RUNNER

pytestmark = pytest.mark.docker


def a_secret() -> str:
    """71 characters: a quote, a backslash, %, &, +, a space, non-ASCII, and a random core
    that any encoding keeps as it is (JSON escapes the quote, the backslash, & and é)."""
    core = secrets.token_hex(16)
    value = f"q'uo\\te 100%&a+b=é-{core}-"
    value += "x" * (71 - len(value))
    assert len(value) == 71
    return value


def data_root() -> Path:
    done = subprocess.run(
        ["docker", "info", "--format", "{{.DockerRootDir}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip())


def traces(secret: str) -> list[str]:
    """Files under the engine's data directory holding the secret in any form."""
    core = secret.split("-")[-2]
    forms = {
        secret,
        core,
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(core.encode()).decode()[:-4],
    }
    patterns = "\n".join(sorted(forms)).encode()
    done = subprocess.run(
        ["grep", "-r", "-l", "-a", "-F", "-f", "/dev/stdin", str(data_root())],
        input=patterns,
        capture_output=True,
        check=False,
    )
    # 1: nothing found; 2: some file could not be read, which may only be one that
    # vanished while grep walked (other containers come and go on a shared engine)
    problems = [
        line
        for line in done.stderr.decode().splitlines()
        if "No such file or directory" not in line
    ]
    assert done.returncode in (0, 1, 2) and not problems, done.stderr
    return done.stdout.decode().split("\n")[:-1]


def test_a_secret_never_reaches_the_engines_data_directory(tmp_path: Path) -> None:
    secret = a_secret()
    repo = tmp_path / "repo"
    (repo / ".missions").mkdir(parents=True)
    (repo / "policies").mkdir()
    (repo / "policies" / "default.yml").write_text(
        textwrap.dedent(
            """\
            version: 1
            images: [base]
            tools: [sh, sleep]
            limits: {timeout-minutes: 5, memory: 128m, cpus: 1, pids: 32}
            rules:
              - name: j-reads-token
                match: {path: .missions/m.yml, job: j}
                allow: {secrets: [TOKEN]}
            """
        )
    )
    (repo / ".missions" / "m.yml").write_text(
        textwrap.dedent(
            """\
            name: m
            on: [push]
            jobs:
              j:
                tools: [sh, sleep]
                permissions: {secrets: [TOKEN]}
                env: {TOKEN: "${{ secrets.TOKEN }}"}
                steps:
                  - run: printf '%s\\n' "$TOKEN"; echo started; sleep 4
            """
        )
    )
    state = tmp_path / "state"
    env = {**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true", "TOKEN": secret}
    with subprocess.Popen(
        [*RUNNER, "run", "--secret", "TOKEN", ".missions/m.yml"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as runner:
        out, err = watch(runner, state, secret)
    assert runner.returncode == 0, err
    assert "started" in out and secret not in out and "***" in out  # it did print it
    assert traces(secret) == [], "the secret is on disk after the run"


def watch(runner: subprocess.Popen[str], state: Path, secret: str) -> tuple[str, str]:
    """Grep while the step sleeps, then wait for the run: (its stdout, its stderr)."""
    try:
        label = f"label=runner.state-dir={state.resolve()}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and runner.poll() is None:
            running = subprocess.run(
                ["docker", "ps", "-q", "--filter", label, "--filter", "label=runner.role=step"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            if running:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the step never ran")
        time.sleep(1)  # the step has printed the secret and sleeps
        assert traces(secret) == [], "the secret is on disk while the step runs"
        return runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
