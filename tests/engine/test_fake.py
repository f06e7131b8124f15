"""The in-memory engine keeps the `Backend` contract the scheduler tests rely on, and the
engine-neutral modules (images) work on it without Docker."""

from __future__ import annotations

import inspect
import io
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.engine import images
from runner.engine.backend import (
    LABEL_RUN,
    Backend,
    BuildSpec,
    ContainerSpec,
    EgressUnavailable,
    ImageBuildFailed,
    ImageConfig,
    ImageInfo,
    NotFound,
)
from runner.engine.fake import KILLED, Exit, FakeBackend, FakeClock, Hang
from runner.engine.stepinit import contract
from runner.errors import InvalidInput, PolicyDenied, RunnerError

MiB = 1024 * 1024


def spec(**changes: object) -> ContainerSpec:
    fields: dict[str, object] = {
        "image": "img",
        "command": ["sh", "-c", "x"],
        "env": {},
        "labels": {LABEL_RUN: "r1"},
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


def protocol_methods() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(Backend).items()
        if callable(member) and not name.startswith("_")
    }


def test_the_fake_has_every_backend_method_with_its_signature() -> None:
    """Drift between the protocol and the fake fails here (mypy checks DockerBackend
    where the composition root hands it over as a `Backend`)."""
    expected = protocol_methods()
    assert "build_image" in expected and "stream_logs" not in expected
    for name, signature in expected.items():
        assert inspect.signature(getattr(FakeBackend, name)) == signature, name


def test_a_hang_lets_the_clock_run_until_it_is_killed() -> None:
    backend = FakeBackend(lambda s: Hang([b"a\n", b"b\n"]))
    backend.add_image("img")
    cid = backend.create(spec())
    output = backend.attach_output(cid)
    backend.start(cid)
    before = backend.clock.monotonic()
    assert backend.wait(cid, 30) is None
    assert backend.clock.monotonic() - before == 30  # no real time was spent on it
    backend.kill(cid)
    assert backend.wait(cid, 30) == KILLED
    assert b"".join(output) == b"a\nb\n"  # the stream ends when the container does
    backend.kill(cid)  # not running: not an error
    backend.remove(cid)
    backend.remove(cid)  # gone: not an error
    assert backend.containers == {} and backend.created[0].removed


def test_mount_problems_are_refused_as_runner_init_does_before_the_script_runs() -> None:
    ran: list[ContainerSpec] = []
    backend = FakeBackend(lambda s: ran.append(s) or Exit(0))  # type: ignore[func-returns-value]
    backend.add_image("img")
    backend.mount_problems = ["/w (overlay) is writable by uid 65534 and not noexec"]
    cid = backend.create(spec())
    output = backend.attach_output(cid)
    backend.start(cid)
    assert backend.wait(cid, None) == contract.REFUSED
    line = b"".join(output)
    assert line == b"runner-init: refused: /w (overlay) is writable by uid 65534 and not noexec\n"
    assert contract.refusal(contract.REFUSED, line) == (
        "refused: /w (overlay) is writable by uid 65534 and not noexec"
    )
    assert ran == []


def test_networks_are_labelled_and_fail_closed_when_the_host_cannot_be_kept_out() -> None:
    backend = FakeBackend()
    backend.create_network("n1", {"runner.run-id": "r1"}, host_reachable=False)
    assert backend.list_networks("runner.run-id=r1") == {"n1": {"runner.run-id": "r1"}}
    backend.egress_unavailable = "no iptables"
    with pytest.raises(EgressUnavailable, match="no iptables"):
        backend.create_network("n2", {}, host_reachable=False)
    backend.create_network("n3", {}, host_reachable=True)  # accepted by the policy
    backend.remove_network("n1")
    backend.remove_network("n1")  # missing: not an error
    assert sorted(backend.networks) == ["n3"]


def test_an_exit_takes_its_seconds_of_clock_time_and_a_shorter_wait_times_out() -> None:
    clock = FakeClock()
    backend = FakeBackend(lambda s: Exit(3, b"done\n", seconds=10), clock=clock)
    backend.add_image("img")
    cid = backend.create(spec())
    backend.start(cid)
    assert backend.wait(cid, 4) is None
    assert backend.wait(cid, None) == 3
    assert clock.monotonic() == 1010.0
    with pytest.raises(RunnerError, match="started twice"):
        backend.start(cid)


def test_waiting_on_the_clock_records_the_delay_and_ends_early_when_set() -> None:
    clock = FakeClock(start=0)
    stop = threading.Event()
    assert clock.wait(stop, 2.5) is False and clock.monotonic() == 2.5
    stop.set()
    assert clock.wait(stop, 100) is True and clock.monotonic() == 2.5
    assert clock.waits == [2.5, 100]


def test_what_an_engine_refuses_the_fake_refuses_too() -> None:
    backend = FakeBackend()
    with pytest.raises(InvalidInput, match="image not found"):
        backend.create(spec())
    backend.add_image("img")
    with pytest.raises(PolicyDenied, match="root"):
        backend.create(spec(user=0))
    with pytest.raises(NotFound):
        backend.create(spec(workspace_volume="nope"))
    backend.create_volume("ws", {LABEL_RUN: "r1"}, exec_allowed=False)
    cid = backend.create(spec(workspace_volume="ws"))
    with pytest.raises(RunnerError, match="in use"):
        backend.remove_volume("ws")
    with pytest.raises(RunnerError, match="never started"):
        backend.wait(cid, 1)
    assert backend.list_labelled(f"{LABEL_RUN}=r1") == (
        {cid: {LABEL_RUN: "r1"}},
        {"ws": {LABEL_RUN: "r1"}},
    )
    assert backend.list_labelled(f"{LABEL_RUN}=other") == ({}, {})
    backend.remove(cid)
    backend.remove_volume("ws")
    assert backend.list_labelled(LABEL_RUN) == ({}, {})


def test_workspace_files_go_in_and_out_as_an_engine_archives_them() -> None:
    backend = FakeBackend(lambda s: Exit(writes={"/workspace/out/b.txt": b"bee"}))
    backend.add_image("img")
    backend.create_snapshot("snap", {}, lambda prefix: [tar_of({"a/x.txt": b"x"})], {})
    backend.create_volume("ws", {}, exec_allowed=False, lower="snap")
    cid = backend.create(spec(workspace_volume="ws"))
    backend.put_archive(cid, "/workspace/a", tar_of({"y.txt": b"y"}))
    backend.start(cid)
    assert backend.wait(cid, None) == 0
    with tarfile.open(fileobj=io.BytesIO(b"".join(backend.get_archive(cid, "/workspace/a")))) as t:
        assert sorted(t.getnames()) == ["a", "a/x.txt", "a/y.txt"]
    with tarfile.open(
        fileobj=io.BytesIO(b"".join(backend.get_archive(cid, "/workspace/out/b.txt")))
    ) as t:
        (member,) = t.getmembers()
        handle = t.extractfile(member)
        assert member.name == "b.txt" and handle is not None and handle.read() == b"bee"
    with pytest.raises(NotFound):
        b"".join(backend.get_archive(cid, "/workspace/missing"))
    assert backend.read_files("ws", "out", ["b.txt", "none"], 100) == {"b.txt": b"bee"}
    with pytest.raises(InvalidInput, match="larger than 2 bytes"):
        backend.read_files("ws", "out", ["b.txt"], 2)


def test_images_import_export_tag_and_remove() -> None:
    backend = FakeBackend()
    rootfs = tar_of({"bin/tool": b"#!"})
    config = ImageConfig(user="65534", env={"PATH": "/bin"}, labels={"k": "v"})
    backend.import_image(io.BytesIO(rootfs), "tools:1", config)
    info = backend.inspect_image("tools:1")
    assert info is not None and info.labels == {"k": "v"}
    assert backend.inspect_image(info.id) == info
    out = io.BytesIO()
    backend.export_filesystem("tools:1", out)
    assert out.getvalue() == rootfs
    backend.tag_image("tools:1", "tools:latest")
    backend.remove_image("tools:1")
    assert backend.inspect_image("tools:1") is None
    assert backend.inspect_image("tools:latest") == info
    backend.remove_image(info.id)  # by id: every tag goes
    assert backend.inspect_image("tools:latest") is None
    backend.remove_image("tools:latest")  # missing: not an error


def test_resolve_container_builds_once_by_content_then_uses_references(tmp_path: Path) -> None:
    backend = FakeBackend()
    (tmp_path / "containers" / "py").mkdir(parents=True)
    (tmp_path / "containers" / "py" / "Dockerfile").write_text("FROM scratch\n")
    builds = images.Builds(images.BuildRules())
    tag = images.resolve_container("py", tmp_path, backend=backend, builds=builds)
    assert tag == images.image_tag("py", tmp_path)
    assert images.resolve_container("py", tmp_path, backend=backend, builds=builds) == tag
    # built once, from runner's own copy of containers/py (never the repository's directory)
    specs = [args[0] for args in backend.called("build_image")]
    assert [(s.tag, s.labels) for s in specs if isinstance(s, BuildSpec)] == [
        (tag, {images.LABEL_IMAGE: "py"})
    ]
    assert len(specs) == 1
    assert specs[0].context.parent != tmp_path / "containers" / "py"
    assert not specs[0].context.exists()  # a tar runner made, removed after the build
    assert backend.images[tag].rootfs == b"FROM scratch\n"
    backend.pullable["ghcr.io/x/y:1"] = b""
    assert (
        images.resolve_container("ghcr.io/x/y:1", tmp_path, backend=backend, builds=builds)
        == "ghcr.io/x/y:1"
    )
    assert backend.called("pull_image") == [("ghcr.io/x/y:1",)]
    with pytest.raises(InvalidInput, match="not in containers/ and not a local image, and"):
        images.resolve_container("ghcr.io/x/absent:1", tmp_path, backend=backend, builds=builds)
    with pytest.raises(InvalidInput, match="'nope:1' is not present in the engine"):
        images.present(backend, "nope:1")


def test_a_failed_build_names_the_dockerfile_and_shows_the_tail(tmp_path: Path) -> None:
    class Failing(FakeBackend):
        def build_image(
            self,
            spec: BuildSpec,
            cancel: threading.Event,
            on_step: Callable[[str], None] | None = None,
        ) -> ImageInfo:
            log = [f"step {n}" for n in range(20)]
            raise ImageBuildFailed("The command '/bin/sh -c false' returned 1", log)

    (tmp_path / "containers" / "bad").mkdir(parents=True)
    (tmp_path / "containers" / "bad" / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(images.BuildFailed) as caught:
        images.build(Failing(), "bad", tmp_path, images.Builds(images.BuildRules()))
    text = caught.value.message
    assert text.startswith(
        "containers/bad/Dockerfile: build failed: The command '/bin/sh -c false' returned 1"
    )
    assert text.endswith("\n    ".join(f"step {n}" for n in range(5, 20)))
    assert "step 4\n" not in text
