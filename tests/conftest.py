"""Shared fixtures. Each test runs with its own state dir and home; the real `.runner/`
and the real home directory are never written by a test."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from runner.app import App
from runner.cli import cli
from runner.engine.docker.dialect import PODMAN_HOST
from runner.error_handler import Exit, handle_errors
from runner.errors import RunnerError
from runner.output import Output

if TYPE_CHECKING:
    from runner.engine.backend import Backend
    from runner.engine.docker.backend import DockerBackend

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "podman: needs Podman's Docker API (scripts/ensure-podman.sh; tests/podman)"
    )


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("RUNNER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RUNNER_SIGNING_KEY", raising=False)
    monkeypatch.setenv("CI", "true")


@pytest.fixture(scope="session", autouse=True)
def _no_snapshot_outlives_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A run keeps its repository snapshot volume as a cache for the next run
    (`runner.run.snapshot`); the snapshots of this session's state dirs go at its end.
    Through the docker CLI (and podman's, when installed), when there is one: the pure
    tests run without an engine."""
    yield
    base = str(tmp_path_factory.getbasetemp().resolve())
    label = "runner.snapshot-of"
    for engine in ("docker", "podman"):  # Podman's store is its own (tests/podman)
        if engine == "podman" and shutil.which("podman") is None:
            continue
        try:
            names = subprocess.run(
                [engine, "volume", "ls", "-q", "--filter", f"label={label}"],
                capture_output=True, text=True, check=True, timeout=60,
            ).stdout.split()  # fmt: skip
            for name in names:
                owner = subprocess.run(
                    [engine, "volume", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', name],
                    capture_output=True, text=True, check=False, timeout=60,
                ).stdout.strip()  # fmt: skip
                if owner.startswith(base + os.sep):
                    subprocess.run(
                        [engine, "volume", "rm", "-f", name], capture_output=True, check=False
                    )
        except (OSError, subprocess.SubprocessError):
            pass  # no engine: no snapshot was made


@pytest.fixture
def docker_client() -> Iterator[object]:
    """A client of the real engine. No engine is a failure, never a skip: CI has one."""
    import docker

    client = docker.from_env()
    client.ping()
    yield client
    client.close()


RUNNER = [sys.executable, "-m", "runner"]


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def invoke(state: Path, *args: str) -> CliResult:
    """`runner --state-dir STATE ARGS...` in-process, as `runner.cli.main` runs it: errors
    become one message and an exit code through the one error handler; no colour."""
    out, err = io.StringIO(), io.StringIO()
    app = App(state_dir=state, out=Output(stdout=out, stderr=err, color="never"))
    try:
        with handle_errors(app.out, debug=False, state_dir=lambda: app.state_dir):
            result = cli.main(
                ["--state-dir", str(state), *args],
                obj=app,
                standalone_mode=False,
                prog_name="runner",
            )
            code = result if isinstance(result, int) else 0
    except Exit as exc:
        code = exc.code
    return CliResult(code, out.getvalue(), err.getvalue())


def runner_cli(
    repo: Path, state: Path, *args: str, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """`runner ARGS...` as a user runs it: a process in `repo`, its state in `state`, in
    CI mode (plain output), with `env` added to the environment."""
    return subprocess.run(
        [*RUNNER, *args],
        cwd=repo,
        env={**os.environ, "RUNNER_STATE_DIR": str(state), "CI": "true", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def podman_host() -> str:
    """`DOCKER_HOST` for Podman's Docker API. Podman not installed: the tests that need it
    are skipped, saying so (scripts/ensure-podman.sh installs it); installed but not answering: a
    failure, never a skip."""
    import docker

    if shutil.which("podman") is None:
        pytest.skip(
            "Podman is not installed (install it and start its API with scripts/ensure-podman.sh)"
        )
    try:
        client = docker.DockerClient(base_url=PODMAN_HOST, version="1.41", timeout=30)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any way of not answering
        pytest.fail(f"Podman is installed but its API does not answer at {PODMAN_HOST} ({exc}): "
                    "start it with scripts/ensure-podman.sh")  # fmt: skip
    return PODMAN_HOST


@pytest.fixture(autouse=True)
def _through_podman(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test marked `podman` (tests/podman) talks to Podman's Docker API: `DOCKER_HOST`
    points at its socket for the test and the runner processes it starts, so `connect()`
    (the `backend` fixture), `invoke` and `runner_cli` all go to Podman."""
    if request.node.get_closest_marker("podman") is not None:
        monkeypatch.setenv("DOCKER_HOST", request.getfixturevalue("podman_host"))


@pytest.fixture
def podman(podman_host: str) -> Iterator[object]:
    """The Docker SDK's low-level client on Podman's socket."""
    import docker

    client = docker.APIClient(base_url=podman_host, version="1.41", timeout=120)
    yield client
    client.close()


@pytest.fixture
def backend() -> Iterator[DockerBackend]:
    """runner's Docker backend on the real engine (imported here: the pure unit tests also
    run inside the project's own python container, which has no Docker SDK)."""
    from runner.engine.docker.backend import connect

    engine = connect()
    yield engine
    engine.close()


@pytest.fixture
def run_id(backend: DockerBackend) -> Iterator[str]:
    """A fresh run id; whatever a test left labelled with it is removed afterwards."""
    from runner.engine.backend import LABEL_RUN

    rid = "t" + uuid.uuid4().hex[:12]
    yield rid
    containers, volumes = backend.list_labelled(f"{LABEL_RUN}={rid}")
    for cid in containers:
        backend.remove(cid)
    for name in volumes:
        backend.remove_volume(name)


def run_container(backend: Backend, cid: str, timeout_s: float = 60) -> tuple[int | None, str]:
    """Start the created container `cid` (attached first, so nothing it prints is missed)
    and wait for it: (its exit code, or None when `timeout_s` passed and it was killed;
    everything it printed on stdout and stderr)."""
    output = backend.attach_output(cid)
    read: list[bytes] = []
    failed: list[RunnerError] = []

    def drain() -> None:
        try:
            read.extend(output)
        except RunnerError as exc:  # OutputIncomplete: the test sees it, not a cut output
            failed.append(exc)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()  # read as it comes, as runner does: an engine may not hold it for later
    backend.start(cid)
    code = backend.wait(cid, timeout_s)
    if code is None:
        backend.kill(cid)
    reader.join(timeout=30)
    if failed:
        raise failed[0]
    assert not reader.is_alive(), "the container's output did not end within 30 s"
    return code, b"".join(read).decode()


def facts(output: str) -> dict[str, str]:
    """The `@name=value` facts a probe step printed, one per line on stdout, each value
    with its runs of whitespace made one space. A fact counts only at the start of its
    line: stdout and stderr reach runner merged by whole lines (`runner.engine.lines`), so
    a stderr fragment glued before a fact (`sh: @sock=1`, as before that merge) fails the
    probe test that reads it."""
    found = re.findall(r"^@(\w+)=(.*)$", output, re.M)
    return {name: " ".join(value.split()) for name, value in found}


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    """Run the test with the working directory in a fresh repository folder."""
    repo = tmp_path / "repo"
    repo.mkdir()
    old = Path.cwd()
    os.chdir(repo)
    try:
        yield repo
    finally:
        os.chdir(old)
