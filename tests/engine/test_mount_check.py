"""No mount both writable and executable: the check reads the kernel's mount table."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke

from runner.engine.backend import LABEL_RUN, ContainerSpec
from runner.engine.docker.backend import DockerBackend
from runner.engine.docker.mount_check import check_container, parse_mountinfo, violations
from runner.errors import MissionFailed

SAMPLE = (
    "600 500 0:50 / / ro,relatime master:1 - overlay overlay rw,lowerdir=/x\n"
    "601 600 0:52 / /tmp rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=65536k\n"
    "602 600 0:53 / /dev rw,nosuid - tmpfs tmpfs rw,mode=755\n"
    "603 600 0:54 / /work\\040space rw,relatime - overlay overlay rw\n"
)


def _stat(uid: int, mode: int) -> os.stat_result:
    return os.stat_result((stat.S_IFDIR | mode, 0, 0, 1, uid, uid, 0, 0, 0, 0))


def test_parse_keeps_per_mount_options_and_unescapes() -> None:
    mounts = parse_mountinfo(SAMPLE)
    assert [m.point for m in mounts] == ["/", "/tmp", "/dev", "/work space"]
    assert "noexec" in mounts[1].options and "ro" in mounts[0].options


def test_only_mounts_the_user_can_write_and_exec_are_violations() -> None:
    owners = {"/dev": _stat(0, 0o755), "/work space": _stat(65534, 0o755)}
    found = violations(parse_mountinfo(SAMPLE), owners.__getitem__, 65534, frozenset())
    assert found == ["/work space (overlay) is writable by uid 65534 and not noexec"]
    granted = violations(
        parse_mountinfo(SAMPLE), owners.__getitem__, 65534, frozenset({"/work space"})
    )
    assert granted == []
    world = {"/dev": _stat(0, 0o1777), "/work space": _stat(0, 0o755)}
    null = os.stat_result((stat.S_IFCHR | 0o666, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    masked = {"/dev": null, "/work space": _stat(0, 0o755)}
    assert violations(parse_mountinfo(SAMPLE), masked.__getitem__, 65534, frozenset()) == []
    assert violations(parse_mountinfo(SAMPLE), world.__getitem__, 65534, frozenset()) == [
        "/dev (tmpfs) is writable by uid 65534 and not noexec"
    ]


@pytest.mark.docker
@pytest.mark.parametrize("exec_volume", [False, True])
def test_a_real_container_is_checked_by_its_kernel_mounts(
    backend: DockerBackend, run_id: str, exec_volume: bool
) -> None:
    volume = f"runner-{run_id}-ws"
    backend.create_volume(volume, {LABEL_RUN: run_id}, exec_allowed=exec_volume)
    cid = backend.create(
        ContainerSpec(
            image="runner-base/busybox:latest",
            command=["sleep", "30"],
            env={},
            labels={LABEL_RUN: run_id},
            memory_bytes=64 * 1024 * 1024,
            cpus=1,
            pids=16,
            workspace_volume=volume,
            workspace_exec=exec_volume,
        )
    )
    backend.start(cid)
    pid = backend.host_pid(cid)
    assert pid is not None
    found = check_container(pid, 65534, frozenset())
    expected = ["/workspace (overlay) is writable by uid 65534 and not noexec"]
    assert found == (expected if exec_volume else [])
    assert check_container(pid, 65534, frozenset({"/workspace"})) == []
    assert backend.check_mounts(cid, 65534, []) == found  # the Backend operation
    assert backend.check_mounts(cid, 65534, ["/workspace"]) == []
    backend.kill(cid)
    assert backend.wait(cid, 10) is not None
    assert backend.check_mounts(cid, 65534, []) is None  # exited: nothing to look at


@pytest.mark.docker
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
        "name: m\non: [manual]\njobs:\n  j:\n    tools: [sh, sleep]\n    steps: [{run: sleep 20}]\n"
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
