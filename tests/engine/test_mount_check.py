"""No mount both writable and executable (SPEC 6), checked by runner-init inside each step
container before the step can execute anything: never raced by a step that exits at once,
and on every engine, since it is the container's own entrypoint that looks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke, run_container

from runner.engine.backend import LABEL_RUN, ContainerSpec
from runner.engine.docker import backend as docker_backend
from runner.engine.docker.backend import DockerBackend
from runner.engine.stepinit import contract
from runner.errors import MissionFailed

pytestmark = pytest.mark.docker
BUSYBOX = "runner-base/busybox:latest"
REFUSAL = "/workspace (overlay) is writable by uid 65534 and not noexec"


def spec(run_id: str, command: list[str], **changes: Any) -> ContainerSpec:
    fields: dict[str, Any] = {
        "image": BUSYBOX,
        "command": command,
        "env": {},
        "labels": {LABEL_RUN: run_id},
        "memory_bytes": 64 * 1024 * 1024,
        "cpus": 1,
        "pids": 16,
    }
    fields.update(changes)
    return ContainerSpec(**fields)


def run(backend: DockerBackend, step: ContainerSpec) -> tuple[int | None, str]:
    cid = backend.create(step)
    try:
        return run_container(backend, cid, 30)
    finally:
        backend.remove(cid)


@pytest.mark.parametrize(("exec_volume", "granted"), [(False, False), (True, False), (True, True)])
def test_a_writable_executable_workspace_is_refused_unless_granted(
    backend: DockerBackend, run_id: str, exec_volume: bool, granted: bool
) -> None:
    volume = f"runner-{run_id}-ws"
    backend.create_volume(volume, {LABEL_RUN: run_id}, exec_allowed=exec_volume)
    step = spec(
        run_id,
        ["sh", "-c", "echo the step ran"],
        workspace_volume=volume,
        workspace_exec=granted,
    )
    code, output = run(backend, step)
    if exec_volume and not granted:
        assert code == contract.REFUSED
        assert output == f"runner-init: refused: {REFUSAL}\n"  # the step never ran
        assert contract.refusal(code, output.encode()) == f"refused: {REFUSAL}"
    else:
        assert (code, output) == (0, "the step ran\n")


def test_a_step_that_exits_at_once_is_refused_every_time(
    backend: DockerBackend, run_id: str
) -> None:
    """The host-side check this replaces looked once the step had started, and missed a
    step that was already gone (4 of 12 runs on Podman)."""
    volume = f"runner-{run_id}-ws"
    backend.create_volume(volume, {LABEL_RUN: run_id}, exec_allowed=True)
    codes = [run(backend, spec(run_id, ["true"], workspace_volume=volume))[0] for _ in range(12)]
    assert codes == [contract.REFUSED] * 12


def test_every_writable_executable_mount_is_named_with_its_escaped_path(
    backend: DockerBackend, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a runtime that adds mounts of its own would (Podman adds /run and /var/tmp):
    a space in a mount point (escaped as \\040 by the kernel), owners and modes as the
    kernel decides them, `ro` and `noexec` respected, /dev/null masks ignored."""
    config_of = docker_backend.container_config

    def with_mounts(step: ContainerSpec, *dialect: Any, **options: Any) -> dict[str, Any]:
        config = config_of(step, *dialect, **options)
        config["tmpfs"] = {
            **config["tmpfs"],
            "/work space": "rw,exec,mode=1777",  # refused
            "/var/tmp": "rw,exec,mode=0755",  # root's: the step cannot write it
            "/run": "rw,noexec,mode=1777",  # noexec
            "/opt": "ro,exec,mode=1777",  # read-only
        }
        return config

    monkeypatch.setattr(docker_backend, "container_config", with_mounts)
    code, output = run(backend, spec(run_id, ["sh", "-c", "echo the step ran"]))
    assert code == contract.REFUSED
    assert output == (
        "runner-init: refused: /work space (tmpfs) is writable by uid 65534 and not noexec\n"
    )


def test_a_run_refuses_a_job_whose_workspace_turned_out_executable(
    in_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime that drops `noexec` (runc#1247 did, for some mounts) must not go unseen."""
    (in_tmp / "policies").mkdir()
    (in_tmp / "policies" / "default.yml").write_text(
        "version: 1\nimages: [base]\ntools: [sh, sleep]\n"
        "limits: {timeout-minutes: 5, memory: 128m, cpus: 1, pids: 32}\n"
    )
    (in_tmp / "m.yml").write_text(
        "name: m\non: [push]\njobs:\n  j:\n    tools: [sh, sleep]\n    steps: [{run: sleep 20}]\n"
    )
    create_volume = DockerBackend.create_volume

    def dropping_noexec(self: DockerBackend, *args: Any, **kwargs: Any) -> None:
        kwargs["exec_allowed"] = True
        create_volume(self, *args, **kwargs)

    monkeypatch.setattr(DockerBackend, "create_volume", dropping_noexec)
    started = time.monotonic()
    result = invoke(tmp_path / "state", "run", "--json", "m.yml")
    assert result.code == MissionFailed.exit_code, result.err
    assert time.monotonic() - started < 15, "the refused step was left running"
    job = result.json()["jobs"]["j"]
    assert job["steps"][0]["reason"] == (
        "refused: /workspace (overlay) is writable by uid 65534 and not noexec"
    )
