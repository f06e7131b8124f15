"""SPEC 6 on Podman, read from inside steps: the isolation tests of tests/engine run again
here, then what Podman adds on its own (its /run and /var/tmp, a workspace bind that
would lose `noexec`) refused before the step can run anything, every time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from engine.test_isolation import (  # the same tests, run here against Podman
    test_a_step_runs_hardened,
    test_a_uid_from_the_policy_owns_workspace_and_tmp,
    test_exec_on_the_workspace_when_granted,
    test_limits_stop_a_fork_bomb_and_a_memory_hog,
    test_workspace_noexec_holds_against_the_loader_and_memfd,
)
from engine.test_mount_check import (  # one hardened busybox step, run and removed
    run,
    spec,
    test_every_writable_executable_mount_is_named_with_its_escaped_path,
)

from runner.engine.backend import LABEL_RUN
from runner.engine.docker import hardening
from runner.engine.docker.backend import DockerBackend
from runner.engine.stepinit import contract

pytestmark = [pytest.mark.docker, pytest.mark.podman]
__all__ = [  # collected here too, with DOCKER_HOST on Podman's socket
    "test_a_step_runs_hardened",
    "test_a_uid_from_the_policy_owns_workspace_and_tmp",
    "test_every_writable_executable_mount_is_named_with_its_escaped_path",
    "test_exec_on_the_workspace_when_granted",
    "test_limits_stop_a_fork_bomb_and_a_memory_hog",
    "test_workspace_noexec_holds_against_the_loader_and_memfd",
]
RUNS = 100
AT_ONCE = 8  # the engine's own pace (ENGINE_CONCURRENCY): a run of parallel jobs
ATTACK = ["sh", "-c", "cp /bin/busybox . && ./busybox echo the-binary-ran"]
REFUSAL = "runner-init: refused: /workspace (overlay) is writable by uid 65534 and not noexec\n"


def mounts_of(output: str) -> dict[str, tuple[set[str], str]]:
    """/proc/self/mountinfo as printed by a step: mount point -> (options, fstype)."""
    found = {}
    for line in output.splitlines():
        fields = line.split(" ")
        if len(fields) > 9 and "-" in fields:
            dash = fields.index("-")
            found[fields[4]] = (set(fields[5].split(",")), fields[dash + 1])
    return found


def test_podmans_own_tmpfs_mounts_reach_no_step_writable_or_executable(
    backend: DockerBackend, run_id: str
) -> None:
    """Podman mounts writable, executable tmpfs on /run and /var/tmp of every read-only
    container; a step gets them empty, read-only and noexec instead (so runner-init, which
    would refuse them, lets it run)."""
    volume = f"runner-{run_id}-ws"
    backend.create_volume(volume, {LABEL_RUN: run_id}, exec_allowed=False)
    script = "cat /proc/self/mountinfo; touch /run/x /var/tmp/x 2>/dev/null; echo @touch=$?"
    code, output = run(backend, spec(run_id, ["sh", "-c", script], workspace_volume=volume))
    assert code == 0, output
    mounts = mounts_of(output)
    for point in ("/run", "/var/tmp"):
        options, fstype = mounts[point]
        assert fstype == "tmpfs" and {"ro", "noexec", "nosuid", "nodev"} <= options
    options, fstype = mounts["/workspace"]
    assert fstype == "overlay" and {"rw", "noexec", "nosuid", "nodev"} <= options
    assert {"rw", "noexec"} <= mounts["/tmp"][0]
    assert "@touch=1" in output


def test_a_binary_copied_into_the_workspace_is_refused_every_time(
    backend: DockerBackend, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-step job that copies a binary into its workspace and runs it (which got
    through in 4 of 12 runs on Podman before): 100 runs as runner configures the step,
    each stopped by the workspace's `noexec`; then 100 runs on a Podman that dropped
    `noexec` again (as it drops the volume's own), each refused by runner-init before the
    step can run anything, however fast the step would exit. Concurrently, as the steps of
    a run's parallel jobs are."""
    volume = f"runner-{run_id}-ws"
    backend.create_volume(volume, {LABEL_RUN: run_id}, exec_allowed=False)
    attack = spec(run_id, ATTACK, workspace_volume=volume)

    def hundred_runs() -> list[tuple[int | None, str]]:
        with ThreadPoolExecutor(AT_ONCE) as pool:
            return list(pool.map(lambda _: run(backend, attack), range(RUNS)))

    assert hundred_runs() == [(126, "sh: ./busybox: Permission denied\n")] * RUNS

    def dropping_noexec(*volume: Any) -> str:
        return bind(*volume).replace(",noexec", "")

    bind = hardening._bind
    monkeypatch.setattr(hardening, "_bind", dropping_noexec)
    assert hundred_runs() == [(contract.REFUSED, REFUSAL)] * RUNS
