"""The Docker backend on Podman's Docker API: the backend's own tests run again there
(imported from tests/engine), then what differs on Podman, each the way it broke."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import docker
import pytest
from conftest import run_container
from engine.test_docker_backend import (  # the same tests, run here against Podman
    test_archives_in_and_out_of_a_created_container,
    test_attaching_before_start_misses_nothing_of_a_step_that_exits_at_once,
    test_image_import_export_tag_and_remove,
    test_images_digest_and_missing_image,
    test_timeout_returns_none_and_kill_remove_leave_nothing,
    test_workspace_volumes_are_overlays_noexec_unless_granted,
)
from engine.test_init import (
    ODD,
    test_a_damaged_init_volume_is_found_and_refilled_from_the_image,
    test_exit_codes_are_the_steps_and_nothing_outlives_it,
    test_sigterm_reaches_the_step,
    test_the_deadline_kills_the_whole_container_without_runner,
    test_the_environment_is_sent_even_when_nobody_attached,
)

from runner.engine.backend import (
    LABEL_ROLE,
    LABEL_RUN,
    ContainerSpec,
    EgressUnavailable,
    ImageConfig,
    NotFound,
)
from runner.engine.docker.backend import DockerBackend
from runner.engine.docker.networks import bridge_name
from runner.run.snapshot import RepoSnapshot
from runner.run.workspace import Workspace

pytestmark = [pytest.mark.docker, pytest.mark.podman]
__all__ = [  # collected here too, with DOCKER_HOST on Podman's socket
    "test_a_damaged_init_volume_is_found_and_refilled_from_the_image",
    "test_archives_in_and_out_of_a_created_container",
    "test_attaching_before_start_misses_nothing_of_a_step_that_exits_at_once",
    "test_exit_codes_are_the_steps_and_nothing_outlives_it",
    "test_image_import_export_tag_and_remove",
    "test_images_digest_and_missing_image",
    "test_sigterm_reaches_the_step",
    "test_the_deadline_kills_the_whole_container_without_runner",
    "test_the_environment_is_sent_even_when_nobody_attached",
    "test_timeout_returns_none_and_kill_remove_leave_nothing",
    "test_workspace_volumes_are_overlays_noexec_unless_granted",
]
MiB = 1024 * 1024
BUSYBOX = "runner-base/busybox:latest"


def spec(run_id: str, command: list[str], **changes: object) -> ContainerSpec:
    fields: dict[str, object] = {
        "image": BUSYBOX,
        "command": command,
        "env": {},
        "labels": {LABEL_RUN: run_id},
        "memory_bytes": 64 * MiB,
        "cpus": 1.0,
        "pids": 32,
    }
    fields.update(changes)
    return ContainerSpec(**fields)  # type: ignore[arg-type]


def members(chunks: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(chunks)) as tar:
        return {member.name: member for member in tar.getmembers()}


def test_the_backend_knows_it_talks_to_podman(backend: DockerBackend) -> None:
    assert backend.dialect.podman
    assert backend.dialect.describe().startswith("Podman 4.")


def test_a_stopped_steps_workspace_is_read_through_a_running_helper(
    backend: DockerBackend, run_id: str, podman: docker.APIClient, tmp_path: Path
) -> None:
    """Podman's archive API reads a stopped container's root instead of its volume (a 404
    for what the step wrote), and writes a created one's root instead of its volume."""
    space = Workspace(backend, run_id, "job", lower=None, exec_allowed=False, uid=4321)
    space.prepare()
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "seed.txt").write_text("seeded\n")
    backend.put_workspace(space.volume, ".", RepoSnapshot(repo, uid=4321).chunks(), space.labels)
    script = (
        "cat seed.txt; mkdir -p out; echo made > out/made.txt; ln -s ../.. out/up;"
        " ln -s /etc/passwd out/evil; id -u; stat -c %u ."
    )
    cid = backend.create(
        spec(run_id, ["sh", "-c", script], workspace_volume=space.volume, user=4321)
    )
    try:
        code, output = run_container(backend, cid)
        assert (code, output.split()) == (0, ["seeded", "4321", "4321"])  # the owner's root
        got = members(b"".join(backend.get_archive(cid, "/workspace/out")))
        made = b"".join(backend.get_archive(cid, "/workspace/out/made.txt"))
        with tarfile.open(fileobj=io.BytesIO(made)) as tar:
            handle = tar.extractfile("made.txt")
            assert handle is not None and handle.read() == b"made\n"
        assert got["out/evil"].issym() and got["out/evil"].linkname == "/etc/passwd"
        # a path that is a link comes as the link, as on Docker (Podman would follow it)
        link = members(b"".join(backend.get_archive(cid, "/workspace/out/up")))
        assert list(link) == ["up"] and link["up"].issym()
        with pytest.raises(NotFound, match="/workspace/out/none does not exist"):
            b"".join(backend.get_archive(cid, "/workspace/out/none"))
        # into a stopped container's workspace, then read back by the next step
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("put.txt")
            info.size, info.uid = 4, 4321
            tar.addfile(info, io.BytesIO(b"put\n"))
        backend.put_archive(cid, "/workspace", buffer.getvalue())
    finally:
        backend.remove(cid)
    after = backend.create(spec(run_id, ["cat", "put.txt"], workspace_volume=space.volume))
    try:
        assert run_container(backend, after) == (0, "put\n")
    finally:
        backend.remove(after)
    helpers = podman.containers(all=True, filters={"label": f"{LABEL_ROLE}=helper"})
    assert [h for h in helpers if h["Labels"].get(LABEL_RUN) == run_id] == []
    space.close()


def test_the_environment_is_the_steps_own_and_never_podmans_config(
    backend: DockerBackend, run_id: str
) -> None:
    """Podman adds `container=podman` and `TERM=xterm` to every container: not to a step,
    unless its image sets the variable itself; no value runner sends is stored."""
    cid = backend.create(spec(run_id, ["env"], env={"ODD": ODD, "TOKEN": "s3cr3t"}))
    try:
        attrs = backend.api.inspect_container(cid)
        text = json.dumps(attrs, ensure_ascii=False)
        assert "naïve" not in text and "s3cr3t" not in text and "TOKEN" not in text
        assert attrs["HostConfig"]["LogConfig"]["Type"] == "none"
        code, output = run_container(backend, cid)
    finally:
        backend.remove(cid)
    names = {line.split("=", 1)[0] for line in output.splitlines() if "=" in line}
    assert code == 0 and names >= {"ODD", "TOKEN"}
    assert names - {"ODD", "TOKEN"} == {"HOME", "HOSTNAME", "PATH"}, output
    tag = f"runner-test/term:{run_id}"
    exported = io.BytesIO()
    backend.export_filesystem(BUSYBOX, exported)
    exported.seek(0)
    backend.import_image(exported, tag, ImageConfig(env={"TERM": "dumb", "PATH": "/bin"}))
    try:
        cid = backend.create(
            spec(run_id, ["sh", "-c", "echo $TERM; echo ${container-unset}"], image=tag)
        )
        try:
            assert run_container(backend, cid) == (0, "dumb\nunset\n")  # the image's TERM
        finally:
            backend.remove(cid)
    finally:
        backend.remove_image(tag)


def test_egress_fails_closed_unless_the_host_is_accepted(
    backend: DockerBackend, run_id: str, podman: docker.APIClient
) -> None:
    """netavark's FORWARD jump comes before DOCKER-USER: runner cannot keep a Podman
    network away from the host, so it does not pretend to."""
    name = f"runner-{run_id}-net"
    with pytest.raises(EgressUnavailable, match="on Podman runner cannot keep an egress"):
        backend.create_network(name, {LABEL_RUN: run_id}, host_reachable=False)
    assert backend.list_networks(f"{LABEL_RUN}={run_id}") == {}
    backend.create_network(name, {LABEL_RUN: run_id}, host_reachable=True)
    try:
        found = podman.inspect_network(name)
        assert found["Labels"][LABEL_RUN] == run_id
        assert list(backend.list_networks(f"{LABEL_RUN}={run_id}")) == [name]
        podman_view = json.loads(
            subprocess.run(
                ["podman", "network", "inspect", name], capture_output=True, text=True, check=True
            ).stdout
        )[0]
        assert podman_view["network_interface"] == bridge_name(name)
        assert podman_view["options"]["isolate"] == "true"  # from Podman's other networks
    finally:
        backend.remove_network(name)
    assert backend.list_networks(f"{LABEL_RUN}={run_id}") == {}
