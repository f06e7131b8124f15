"""The workspace copy, artifact path safety, and artifacts out of / into real containers."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import run_container

from runner.engine.backend import LABEL_RUN, ContainerSpec
from runner.engine.docker.backend import DockerBackend, connect
from runner.errors import InvalidInput
from runner.run.workspace import (
    IO_DIR,
    ArtifactMissing,
    RepoSnapshot,
    UnsafeArchive,
    Workspace,
    repo_files,
    rewrite_archive,
    safe_members,
)

BUSYBOX = "runner-base/busybox:latest"
MiB = 1024 * 1024


def make_tar(*adders: Callable[[tarfile.TarFile], None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for add in adders:
            add(tar)
    return buffer.getvalue()


def file(name: str, data: bytes = b"x", mode: int = 0o644) -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))

    return add


def entry(name: str, kind: bytes, link: str = "") -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        tar.addfile(info)

    return add


def members_of(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [m.name for m in safe_members(tar)]


@pytest.mark.parametrize(
    ("adders", "message"),
    [
        ([file("../evil")], "climbs out"),
        ([file("a/../../evil")], "climbs out"),
        ([file("/etc/evil")], "absolute path"),
        ([entry("link", tarfile.SYMTYPE, "/etc/passwd")], "link to the absolute path"),
        ([entry("d/link", tarfile.SYMTYPE, "../../x")], "pointing outside"),
        ([entry("d", tarfile.SYMTYPE, "."), file("d/x")], "written through the link"),
        ([entry("hard", tarfile.LNKTYPE, "/etc/shadow")], "hard link"),
        ([entry("hard", tarfile.LNKTYPE, "not-there")], "not in the archive"),
        ([entry("dev", tarfile.CHRTYPE)], "device"),
        ([entry("blk", tarfile.BLKTYPE)], "device"),
        ([entry("fifo", tarfile.FIFOTYPE)], "FIFO"),
    ],
)
def test_unsafe_members_are_rejected(
    adders: list[Callable[[tarfile.TarFile], None]], message: str
) -> None:
    with pytest.raises(UnsafeArchive, match=message):
        members_of(make_tar(*adders))


def test_safe_members_pass() -> None:
    data = make_tar(
        entry("dist", tarfile.DIRTYPE),
        file("dist/app.bin"),
        entry("dist/latest", tarfile.SYMTYPE, "app.bin"),
        entry("dist/copy", tarfile.LNKTYPE, "dist/app.bin"),
    )
    assert members_of(data) == ["dist", "dist/app.bin", "dist/latest", "dist/copy"]


def test_rewrite_places_under_a_prefix_owned_by_the_user_without_setuid() -> None:
    data = make_tar(file("app.bin", b"abc", mode=0o4755))
    rewritten = rewrite_archive(data, "build/out", 1234)
    with tarfile.open(fileobj=io.BytesIO(rewritten)) as tar:
        found = {m.name: m for m in tar}
    assert list(found) == ["build", "build/out", "build/out/app.bin"]
    assert {(m.uid, m.gid) for m in found.values()} == {(1234, 1234)}
    assert found["build/out/app.bin"].mode == 0o755
    with pytest.raises(UnsafeArchive):
        rewrite_archive(make_tar(file("../x")), ".", 1234)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print(1)\n")
    (root / "build").mkdir()
    (root / "build" / "junk.o").write_text("junk")
    (root / ".gitignore").write_text("build/\n")
    (root / ".runner" / "keys").mkdir(parents=True)
    (root / ".runner" / "keys" / "signing.pem").write_text("secret")
    (root / "untracked.txt").write_text("new\n")
    return root


def test_copy_honours_gitignore_and_leaves_out_state_and_git(repo: Path) -> None:
    git(repo, "init", "-q")
    git(repo, "add", "src/main.py", ".gitignore")
    assert (repo / ".git").is_dir()
    assert repo_files(repo) == [".gitignore", "src/main.py", "untracked.txt"]


def test_copy_without_git_takes_every_file_but_state(repo: Path) -> None:
    (repo / "srclink").symlink_to("src")
    assert repo_files(repo) == [
        ".gitignore", "build/junk.o", "src/main.py", "srclink", "untracked.txt",
    ]  # fmt: skip
    (repo / "srclink").unlink()
    assert repo_files(repo, exclude=["build"]) == [".gitignore", "src/main.py", "untracked.txt"]


def test_snapshot_is_owned_by_the_step_user(repo: Path) -> None:
    (repo / "src" / "run.sh").write_text("#!/bin/sh\n")
    (repo / "src" / "run.sh").chmod(0o6755)
    (repo / "link").symlink_to("src/main.py")
    snapshot = RepoSnapshot(repo, uid=4321)
    with snapshot.open() as handle, tarfile.open(fileobj=handle) as tar:
        found = {m.name: m for m in tar}
    snapshot.close()
    assert set(found) == {
        ".gitignore", "build", "build/junk.o", "src", "src/main.py", "src/run.sh", "untracked.txt",
        "link", ".runner", ".runner/io",
    }  # fmt: skip
    assert {(m.uid, m.gid) for m in found.values()} == {(4321, 4321)}
    assert found["src/run.sh"].mode == 0o755
    assert found["link"].issym() and found["link"].linkname == "src/main.py"
    assert snapshot.files == 6


def test_artifact_paths_must_stay_inside(tmp_path: Path) -> None:
    space = Workspace(object(), "r", "j", tmp_path, exec_allowed=False)  # type: ignore[arg-type]
    for bad in ("../x", "/etc/passwd", "", "a/../../x"):
        with pytest.raises(InvalidInput, match="not a relative path inside the workspace"):
            space.collect("cid", bad)


@pytest.fixture(params=["in-place", "through-the-engine"])
def backend(request: pytest.FixtureRequest) -> Iterator[DockerBackend]:
    """Both ways a volume is seeded and read: in place (a local engine) and through a
    never-started helper container and the archive API (a remote one)."""
    engine = connect()
    engine._local = request.param == "in-place"
    yield engine
    engine.close()


def run_step(backend: DockerBackend, run_id: str, space: Workspace, script: str) -> tuple[str, str]:
    cid = backend.create(
        ContainerSpec(
            image=BUSYBOX,
            command=["sh", "-c", script],
            env={},
            labels={LABEL_RUN: run_id},
            memory_bytes=64 * MiB,
            cpus=1,
            pids=32,
            workspace_volume=space.volume,
        )
    )
    code, output = run_container(backend, cid, 30)
    assert code == 0
    return cid, output


@pytest.mark.docker
def test_artifacts_out_and_into_the_next_job(
    backend: DockerBackend, run_id: str, repo: Path, tmp_path: Path
) -> None:
    git(repo, "init", "-q")
    producer = Workspace(backend, run_id, "build", repo, exec_allowed=False)
    producer.prepare()
    cid, listing = run_step(
        backend,
        run_id,
        producer,
        "find . | sort; test -d " + IO_DIR + " && echo io-ok; mkdir -p out/sub;"
        " echo report > out/sub/report.txt; ln -s /etc/passwd out/evil; ln -s ../.. out/up;"
        " echo k=v > .runner/io/0-1.output",
    )
    direct = backend.read_files(producer.volume, ".runner/io", ["0-1.output"], 100)
    assert direct == ({"0-1.output": b"k=v\n"} if backend._local else None)
    assert listing.split() == [
        ".", "./.gitignore", "./.runner", "./.runner/io", "./src", "./src/main.py",
        "./untracked.txt", "io-ok",
    ]  # fmt: skip
    data, digest, size = producer.collect(cid, "out/sub/report.txt")
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        assert member is not None and member.name == "report.txt"
        handle = tar.extractfile(member)
        assert handle is not None and handle.read() == b"report\n"
    stored = tmp_path / "report.tar"
    stored.write_bytes(data)
    with pytest.raises(UnsafeArchive, match="link to the absolute path"):
        producer.collect(cid, "out")
    with pytest.raises(UnsafeArchive, match="pointing outside"):
        producer.collect(cid, "out/up")
    with pytest.raises(ArtifactMissing, match="was not produced"):
        producer.collect(cid, "out/none.txt")
    backend.remove(cid)
    producer.close()

    consumer = Workspace(backend, run_id, "publish", repo, exec_allowed=False)
    consumer.prepare([("out/sub/report.txt", stored)])
    cid, output = run_step(
        backend,
        run_id,
        consumer,
        "cat out/sub/report.txt; echo more >> out/sub/report.txt && echo w-ok",
    )
    assert output.split() == ["report", "w-ok"]
    backend.remove(cid)
    consumer.close()
    assert backend.list_labelled(f"{LABEL_RUN}={run_id}") == ({}, {})


def test_a_large_snapshot_stays_on_disk_and_readers_are_independent(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("runner.run.workspace.SPOOL_BYTES", 10)
    snapshot = RepoSnapshot(repo)
    assert snapshot.data is None
    with snapshot.open() as first, snapshot.open() as second:
        head = first.read(512)
        assert second.read()[:512] == head and len(head) == 512
    snapshot.close()
    with pytest.raises(AssertionError, match="after close"):
        snapshot.open()
