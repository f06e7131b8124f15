"""DockerBackend against the real engine, and its translation of engine errors."""

from __future__ import annotations

import inspect
import io
import random
import socket
import tarfile
import threading
import time

import docker
import docker.errors
import pytest
import requests
from conftest import run_container

from runner.engine.backend import LABEL_RUN, ContainerSpec, ImageConfig, NotFound
from runner.engine.docker import sdk
from runner.engine.docker.backend import (
    DATA_SUFFIX,
    ENGINE_CONCURRENCY,
    DockerBackend,
    connect,
    create_arguments,
)
from runner.engine.docker.errors import docker_errors
from runner.engine.docker.hardening import container_config
from runner.errors import EngineUnavailable, InvalidInput, RunnerError

BUSYBOX = "runner-base/busybox:latest"
MiB = 1024 * 1024


def test_no_engine_is_exit_4_with_how_to_start_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(EngineUnavailable) as caught:
        connect()
    assert caught.value.exit_code == 4
    assert caught.value.message == (
        "no Docker engine answers: its socket /nonexistent/docker.sock does not exist"
    )
    assert "scripts/ensure-docker.sh" in str(caught.value)


def test_docker_errors_translates_where_it_happens() -> None:
    response = requests.Response()
    response.status_code = 500
    refused = "doing x: the Docker engine refused: boom"
    with pytest.raises(RunnerError, match=refused) as caught, docker_errors("doing x"):
        raise docker.errors.APIError("500", response=response, explanation="boom")
    assert type(caught.value) is RunnerError
    with pytest.raises(EngineUnavailable), docker_errors("doing y"):
        raise requests.exceptions.ConnectionError("refused")


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


def tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.docker
def test_a_step_streams_both_outputs_and_returns_its_code(
    backend: DockerBackend, run_id: str
) -> None:
    cid = backend.create(spec(run_id, ["sh", "-c", "echo out; echo err >&2; exit 3"]))
    code, output = run_container(backend, cid, 30)
    assert code == 3
    assert sorted(output.split()) == ["err", "out"]
    backend.remove(cid)
    assert backend.list_labelled(f"{LABEL_RUN}={run_id}") == ({}, {})


@pytest.mark.docker
def test_timeout_returns_none_and_kill_remove_leave_nothing(
    backend: DockerBackend, run_id: str
) -> None:
    cid = backend.create(spec(run_id, ["sleep", "60"]))
    backend.start(cid)
    started = time.monotonic()
    assert backend.wait(cid, 0.5) is None
    assert time.monotonic() - started < 5
    backend.kill(cid)
    assert backend.wait(cid, 10) == 137
    backend.kill(cid)  # not running any more: not an error
    containers, _ = backend.list_labelled(f"{LABEL_RUN}={run_id}")
    assert list(containers) == [cid]
    assert containers[cid][LABEL_RUN] == run_id
    backend.remove(cid)
    backend.remove(cid)  # gone: not an error
    assert backend.list_labelled(f"{LABEL_RUN}={run_id}") == ({}, {})


@pytest.mark.docker
def test_archives_in_and_out_of_a_created_container(backend: DockerBackend, run_id: str) -> None:
    backend.create_volume("runner-" + run_id, {LABEL_RUN: run_id}, exec_allowed=False)
    cid = backend.create(spec(run_id, ["true"], workspace_volume="runner-" + run_id))
    backend.put_archive(cid, "/workspace", tar_of({"in.txt": b"payload"}))
    with tarfile.open(
        fileobj=io.BytesIO(b"".join(backend.get_archive(cid, "/workspace/in.txt")))
    ) as tar:
        member = tar.next()
        assert member is not None and member.name == "in.txt"
        handle = tar.extractfile(member)
        assert handle is not None and handle.read() == b"payload"
    with pytest.raises(NotFound, match="/workspace/missing does not exist"):
        b"".join(backend.get_archive(cid, "/workspace/missing"))


@pytest.mark.docker
def test_workspace_volumes_are_overlays_noexec_unless_granted(
    backend: DockerBackend, run_id: str
) -> None:
    labels = {LABEL_RUN: run_id}
    backend.create_volume(f"runner-{run_id}-a", labels, exec_allowed=False, owner=4321)
    backend.create_volume(f"runner-{run_id}-b", labels, exec_allowed=True)
    client = docker.from_env()
    try:
        options_a = client.api.inspect_volume(f"runner-{run_id}-a")["Options"]
        options_b = client.api.inspect_volume(f"runner-{run_id}-b")["Options"]
    finally:
        client.close()
    assert options_a["type"] == "overlay"
    assert options_a["o"].startswith("noexec,nosuid,nodev,")
    assert options_b["o"].startswith("nosuid,nodev,")
    _, volumes = backend.list_labelled(f"{LABEL_RUN}={run_id}")
    a, b = f"runner-{run_id}-a", f"runner-{run_id}-b"
    assert sorted(volumes) == [a, a + DATA_SUFFIX, b, b + DATA_SUFFIX]
    assert list(volumes)[:2] == [a, b] or list(volumes)[:2] == [b, a]  # overlays first
    backend.remove_volume(f"runner-{run_id}-a")
    backend.remove_volume(f"runner-{run_id}-a")  # missing: not an error
    _, volumes = backend.list_labelled(f"{LABEL_RUN}={run_id}")
    assert sorted(volumes) == [f"runner-{run_id}-b", f"runner-{run_id}-b{DATA_SUFFIX}"]


@pytest.mark.docker
def test_images_digest_and_missing_image(backend: DockerBackend, run_id: str) -> None:
    client = docker.from_env()
    try:
        expected = client.api.inspect_image(BUSYBOX)["Id"]
    finally:
        client.close()
    info = backend.inspect_image(BUSYBOX)
    assert info is not None and info.id == expected
    assert backend.inspect_image("runner-test/absent:nope") is None
    with pytest.raises(InvalidInput, match="image not found") as caught:
        backend.create(spec(run_id, ["true"], image="runner-test/absent:nope"))
    assert "runner images build" in str(caught.value)


@pytest.mark.docker
def test_attaching_before_start_misses_nothing_of_a_step_that_exits_at_once(
    backend: DockerBackend, run_id: str
) -> None:
    """`logs --follow` right after start can close before a fast step's last lines are
    written; attaching first, as `docker run` does, cannot."""
    for n in range(8):
        cid = backend.create(spec(run_id, ["sh", "-c", f"echo out-{n}; echo err-{n} >&2"]))
        output = backend.attach_output(cid)
        backend.start(cid)
        lines = b"".join(output).decode().split()
        assert sorted(lines) == [f"err-{n}", f"out-{n}"]
        backend.remove(cid)


@pytest.mark.docker
def test_engine_heavy_calls_are_admitted_a_few_at_a_time(
    backend: DockerBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 jobs may run at once; only ENGINE_CONCURRENCY of them start containers at once."""
    in_flight, peak, guard = 0, 0, threading.Lock()

    def slow_start(cid: str) -> None:
        nonlocal in_flight, peak
        with guard:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.02)
        with guard:
            in_flight -= 1

    monkeypatch.setattr(backend.api, "start", slow_start)
    threads = [threading.Thread(target=backend.start, args=(str(i),)) for i in range(48)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == ENGINE_CONCURRENCY


def test_the_private_sdk_api_that_attaching_uses_is_still_there() -> None:
    """`sdk.attach` is the SDK's own `attach` body: a release that renames or reshapes
    these members must fail here, not in a run."""
    for name in sdk.PRIVATE:
        assert callable(getattr(docker.APIClient, name, None)), name
    parameters = list(inspect.signature(docker.APIClient._get_raw_response_socket).parameters)
    assert parameters == ["self", "response"]
    parameters = list(inspect.signature(docker.APIClient._read_from_socket).parameters)
    assert parameters[:4] == ["self", "response", "stream", "tty"]
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")  # no I/O
    assert api._url("/containers/{0}/attach", "abc").endswith("/v1.41/containers/abc/attach")


def _frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def test_attach_payloads_come_whole_and_in_order_however_the_frames_are_cut() -> None:
    """Frames of both streams, empty and larger than a read, written in random pieces:
    the payloads come out in order, headers taken out, nothing lost or added."""
    rng = random.Random(15)
    payloads = [
        rng.randbytes(rng.choice([0, 1, 7, 60, 4096, sdk.READ_BYTES + 5])) for _ in range(80)
    ]
    wire = b"".join(_frame(1 + i % 2, data) for i, data in enumerate(payloads))
    ours, theirs = socket.socketpair()

    def writer() -> None:
        pos = 0
        while pos < len(wire):
            step = rng.randint(1, 20_000)
            theirs.sendall(wire[pos : pos + step])
            pos += step
        theirs.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        got = list(sdk.payloads(ours, aligned=False))  # the frames as they came
    finally:
        thread.join()
        ours.close()
    assert b"".join(got) == b"".join(payloads)
    assert all(got)  # no empty chunk: a chunk is output


def test_attach_payloads_of_one_read_are_one_chunk() -> None:
    """Small writes (a line each) are read as blocks, not one chunk a frame."""
    lines = [f"line {i}\n".encode() for i in range(1000)]
    ours, theirs = socket.socketpair()
    theirs.sendall(b"".join(_frame(1, line) for line in lines))
    theirs.close()
    try:
        got = list(sdk.payloads(ours))
    finally:
        ours.close()
    assert b"".join(got) == b"".join(lines)
    assert len(got) < 10


def test_create_arguments_split_the_hardened_config_without_dropping_a_key() -> None:
    """The public low-level API in place of the SDK's private `_create_container_args`:
    every hardening option must reach the engine, in the container or its host config."""
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")  # no I/O
    config = container_config(spec("r1", ["true"], workspace_volume="ws", network=None))
    arguments = create_arguments(api, config)
    host = arguments.pop("host_config")
    kept = ["image", "command", "entrypoint", "environment", "working_dir", "labels", "user"]
    assert arguments == {key: config[key] for key in [*kept, "stdin_open", "tty"]}
    assert arguments["environment"] == {}  # sent to runner-init on stdin, never stored
    assert arguments["entrypoint"][0] == "/.runner-init/runner-init"
    assert (host["ReadonlyRootfs"], host["CapDrop"]) == (True, ["ALL"])
    assert host.get("Privileged", False) is False
    assert host["SecurityOpt"] == config["security_opt"]
    assert (host["NetworkMode"], host["IpcMode"], host["Init"]) == ("none", "none", False)
    assert (host["PidsLimit"], host["Memory"], host["MemorySwap"]) == (32, 64 * MiB, 64 * MiB)
    assert host["NanoCpus"] == 1_000_000_000
    assert host["Tmpfs"] == config["tmpfs"]
    assert host["Ulimits"] == [{"Name": "core", "Soft": 0, "Hard": 0}]
    assert host["LogConfig"] == {"Type": "none", "Config": {}}
    assert [m["Target"] for m in host["Mounts"]] == ["/.runner-init", "/workspace"]
    assert host["Mounts"][0]["ReadOnly"] is True
    with pytest.raises(TypeError):  # a key of neither kind fails loudly
        create_arguments(api, {**config, "no_such_option": True})


@pytest.mark.docker
def test_image_import_export_tag_and_remove(backend: DockerBackend, run_id: str) -> None:
    tag = f"runner-test/imported:{run_id}"
    rootfs = tar_of({"etc/hello": b"hi\n", "bin/tool": b"#!/bin/sh\n"})
    config = ImageConfig(
        user="65534",
        env={"PATH": "/bin", "ODD": 'a $HOME "b"'},
        workdir="/work",
        labels={"runner.test": run_id, "with space": "x y"},
    )
    backend.import_image(io.BytesIO(rootfs), tag, config)
    try:
        info = backend.inspect_image(tag)
        assert info is not None and info.id.startswith("sha256:")
        assert info.labels == {"runner.test": run_id, "with space": "x y"}
        attrs = backend.api.inspect_image(tag)["Config"]
        assert (attrs["User"], attrs["WorkingDir"]) == ("65534", "/work")
        assert attrs["Env"] == ["PATH=/bin", 'ODD=a $HOME "b"']
        out = io.BytesIO()
        backend.export_filesystem(tag, out)
        with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
            names = set(tar.getnames())
            handle = tar.extractfile("etc/hello")
            assert handle is not None and handle.read() == b"hi\n"
        assert {"etc/hello", "bin/tool"} <= names
        assert backend.api.containers(all=True, filters={"ancestor": tag}) == []  # no helper left
        backend.tag_image(tag, tag + "-again")
        again = backend.inspect_image(tag + "-again")
        assert again is not None and again.id == info.id
        backend.remove_image(tag + "-again")
        assert backend.inspect_image(tag + "-again") is None
        assert backend.inspect_image(tag) is not None  # only that tag went
        backend.remove_image(tag + "-again")  # missing: not an error
    finally:
        backend.remove_image(tag)
    assert backend.inspect_image(tag) is None


@pytest.mark.docker
def test_pulling_what_no_registry_has_is_not_found(backend: DockerBackend) -> None:
    with pytest.raises(NotFound, match=r"pulling runner-test\.invalid/nothing:1 failed: "):
        backend.pull_image("runner-test.invalid/nothing:1")
