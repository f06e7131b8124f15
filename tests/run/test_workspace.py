"""The workspace copy, artifact path safety, and artifacts out of / into real containers
(through the engine only: snapshots and artifacts are never extracted on the host)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import run_container
from fake_run import run_mission, scripted

from runner.engine.backend import LABEL_RUN, ContainerSpec
from runner.engine.docker.backend import DockerBackend, connect
from runner.engine.fake import FakeBackend
from runner.errors import InvalidInput
from runner.mission.model import Artifact
from runner.policy.model import Limits
from runner.run import tarstream
from runner.run.artifacts import store
from runner.run.snapshot import RepoSnapshot, SnapshotCache
from runner.run.workspace import (
    IO_DIR,
    ArtifactMissing,
    ArtifactTooLarge,
    UnsafeArchive,
    Workspace,
    binary_size,
    repo_files,
    rewrite_archive,
    safe_members,
    volume_name,
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
    rewritten = b"".join(rewrite_archive(io.BytesIO(data), "build/out", 1234))
    with tarfile.open(fileobj=io.BytesIO(rewritten)) as tar:
        found = {m.name: m for m in tar}
        handle = tar.extractfile("build/out/app.bin")
        assert handle is not None and handle.read() == b"abc"
    assert list(found) == ["build", "build/out", "build/out/app.bin"]
    assert {(m.uid, m.gid) for m in found.values()} == {(1234, 1234)}
    assert found["build/out/app.bin"].mode == 0o755
    with pytest.raises(UnsafeArchive):
        rewrite_archive(io.BytesIO(make_tar(file("../x"))), ".", 1234)


def test_rewrite_keeps_no_extended_header_of_the_producer() -> None:
    """An xattr (a file capability, say) in the producer's tar never reaches a consumer."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("tool")
        info.size, info.pax_headers = 1, {"SCHILY.xattr.security.capability": "x"}
        tar.addfile(info, io.BytesIO(b"x"))
    rewritten = b"".join(rewrite_archive(io.BytesIO(buffer.getvalue()), ".", 1234))
    with tarfile.open(fileobj=io.BytesIO(rewritten)) as tar:
        (member,) = tar.getmembers()
    assert member.name == "tool" and member.pax_headers == {}


def test_members_past_the_count_or_depth_bound_are_refused_without_reading_on() -> None:
    many = make_tar(*(file(f"f{n}") for n in range(8)))
    with tarfile.open(fileobj=io.BytesIO(many)) as tar:
        with pytest.raises(ArtifactTooLarge, match="more than 4 files"):
            safe_members(tar, max_files=4)
        assert len(tar.members) == 5  # stopped at the fifth, no further
    deep = make_tar(file("a/b/c/d.txt"))
    with (
        tarfile.open(fileobj=io.BytesIO(deep)) as tar,
        pytest.raises(ArtifactTooLarge, match="deeper than 3 directories"),
    ):
        safe_members(tar, max_depth=3)


def test_sizes_read_as_limits_are_written() -> None:
    assert [binary_size(n) for n in (2 * 1024**3, 1536, 64 * 1024**2, 12)] == [
        "2 GiB", "1.5 KiB", "64 MiB", "12 bytes",
    ]  # fmt: skip


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
    with tarfile.open(fileobj=io.BytesIO(b"".join(snapshot.chunks()))) as tar:
        found = {m.name: m for m in tar}
    assert set(found) == {
        ".gitignore", "build", "build/junk.o", "src", "src/main.py", "src/run.sh", "untracked.txt",
        "link", ".runner", ".runner/io",
    }  # fmt: skip
    assert {(m.uid, m.gid) for m in found.values()} == {(4321, 4321)}
    assert found["src/run.sh"].mode == 0o755
    assert found["link"].issym() and found["link"].linkname == "src/main.py"
    assert snapshot.files == 6


def test_artifact_paths_must_stay_inside(tmp_path: Path) -> None:
    space = Workspace(object(), "r", "j", lower=None, exec_allowed=False)  # type: ignore[arg-type]
    for bad in ("../x", "/etc/passwd", "", "a/../../x"):
        with pytest.raises(InvalidInput, match="not a relative path inside the workspace"):
            list(space.archive("cid", bad))


def test_the_digest_is_of_content_owner_and_modes_however_git_sees_the_files(
    repo: Path,
) -> None:
    git(repo, "init", "-q")
    git(repo, "add", "src/main.py", ".gitignore")
    git(repo, "-c", "user.email=r@x", "-c", "user.name=r", "commit", "-qm", "one")
    clean = RepoSnapshot(repo)
    assert not any(e.hashed for e in clean.scan.entries if e.path == "src/main.py")
    (repo / "src" / "main.py").touch()  # stat-dirty, same content: the same blob id
    assert RepoSnapshot(repo).digest == clean.digest
    assert RepoSnapshot(repo, uid=1000).digest != clean.digest
    (repo / "src" / "main.py").write_text("print(2)\n")
    modified = RepoSnapshot(repo)
    assert [e.hashed for e in modified.scan.entries if e.path == "src/main.py"] == [True]
    assert modified.digest != clean.digest
    (repo / "src" / "main.py").write_text("print(1)\n")
    assert RepoSnapshot(repo).digest == clean.digest
    (repo / "src" / "main.py").chmod(0o755)
    assert RepoSnapshot(repo).digest != clean.digest
    (repo / "src" / "main.py").chmod(0o644)
    (repo / "untracked.txt").write_text("other\n")
    assert RepoSnapshot(repo).digest != clean.digest


def test_an_index_git_does_not_check_is_not_trusted(repo: Path) -> None:
    """assume-unchanged (or skip-worktree) hides a change from `git diff-files`: such a
    file is hashed, so a snapshot never holds other content than its digest says."""
    git(repo, "init", "-q")
    git(repo, "add", "src/main.py")
    before = RepoSnapshot(repo).digest
    git(repo, "update-index", "--assume-unchanged", "src/main.py")
    (repo / "src" / "main.py").write_text("print('changed')\n")
    assert RepoSnapshot(repo).digest != before


def test_a_file_changed_during_the_copy_fails_it(repo: Path) -> None:
    snapshot = RepoSnapshot(repo)
    (repo / "untracked.txt").write_text("not what was digested\n")
    with pytest.raises(InvalidInput, match=r"untracked\.txt changed while runner copied it"):
        b"".join(snapshot.chunks())


def test_a_snapshot_streams_in_bounded_chunks_and_readers_are_independent(repo: Path) -> None:
    (repo / "big.bin").write_bytes(b"z" * (5 * MiB + 3))
    snapshot = RepoSnapshot(repo)
    first, second = snapshot.chunks(), snapshot.chunks()
    sizes = []
    for chunk in first:
        sizes.append(len(chunk))
    assert max(sizes) <= tarstream.CHUNK
    assert b"".join(snapshot.chunks()) == b"".join(second)


def test_a_job_at_its_quota_says_so_and_is_not_retried(tmp_path: Path) -> None:
    engine = FakeBackend(scripted)
    engine.full_volumes.add(volume_name("r1", "fill"))
    done = run_mission(
        tmp_path,
        """\
        name: m
        on: [manual]
        jobs:
          fill:
            steps: [{run: exit 1, retry: {max-attempts: 3, on: [failure]}}]
          other:
            steps: [{run: exit 1}]
        """,
        backend=engine,
        limits=Limits(workspace_bytes=64 * MiB),
    )
    assert done.status() == {
        "fill": (
            "failure",
            "step 'exit 1' failed: job fill wrote more than its 64 MiB workspace quota "
            "(limits.workspace-size in the policy) (exit code 1)",
        ),
        "other": ("failure", "step 'exit 1' failed: exit code 1"),
    }
    assert len(done.specs["fill"]) == 1  # a full workspace stays full: no retry
    (snapshot,) = done.snapshots()
    assert {call[0]: call[3:] for call in engine.called("create_volume")} == {
        volume_name("r1", "fill"): (65534, snapshot, 64 * MiB),
        volume_name("r1", "other"): (65534, snapshot, 64 * MiB),
    }


@pytest.fixture(params=["in-place", "through-the-engine"])
def backend(request: pytest.FixtureRequest) -> Iterator[DockerBackend]:
    """Both ways a volume is laid out and read: in place (a local engine) and through a
    never-started helper container and the archive API (a remote one)."""
    engine = connect()
    engine._local = request.param == "in-place"
    yield engine
    engine.close()


@pytest.fixture
def snapshot_of(
    backend: DockerBackend, run_id: str, tmp_path: Path
) -> Iterator[Callable[[Path], str]]:
    """The snapshot volume of a repository, made as a run makes it; removed afterwards."""
    cache = SnapshotCache(backend, tmp_path / "state")
    made: list[str] = []

    def make(repo: Path) -> str:
        made.append(cache.ensure(RepoSnapshot(repo), {LABEL_RUN: run_id}))
        return made[-1]

    yield make
    for name in made:
        backend.remove_volume(name)


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
    assert code == 0, output
    return cid, output


@pytest.mark.docker
def test_artifacts_out_and_into_the_next_job(
    backend: DockerBackend,
    run_id: str,
    repo: Path,
    tmp_path: Path,
    snapshot_of: Callable[[Path], str],
) -> None:
    git(repo, "init", "-q")
    lower = snapshot_of(repo)
    producer = Workspace(backend, run_id, "build", lower=lower, exec_allowed=False)
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
    stored = tmp_path / "report.tar"
    digest, size = store(
        producer, cid, Artifact("report", "out/sub/report.txt", "dir"), stored, Limits()
    )
    data = stored.read_bytes()
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        assert member is not None and member.name == "report.txt"
        handle = tar.extractfile(member)
        assert handle is not None and handle.read() == b"report\n"
    refused = {
        "out": (UnsafeArchive, "link to the absolute path"),
        "out/up": (UnsafeArchive, "pointing outside"),
        "out/none.txt": (ArtifactMissing, "was not produced"),
    }
    for n, (path, (error, message)) in enumerate(refused.items()):
        target = tmp_path / f"refused-{n}.tar"
        with pytest.raises(error, match=message):
            store(producer, cid, Artifact(f"a{n}", path, "dir"), target, Limits())
        assert not target.exists() and not list(tmp_path.glob("*.partial"))
    backend.remove(cid)
    producer.close()

    consumer = Workspace(backend, run_id, "publish", lower=lower, exec_allowed=False)
    consumer.prepare([("out/sub/report.txt", stored)])
    cid, output = run_step(
        backend,
        run_id,
        consumer,
        "cat out/sub/report.txt; echo more >> out/sub/report.txt && echo w-ok;"
        " echo changed > src/main.py",
    )
    assert output.split() == ["report", "w-ok"]
    backend.remove(cid)
    consumer.close()
    assert backend.list_labelled(f"{LABEL_RUN}={run_id}") == ({}, {})
    again = Workspace(backend, run_id, "again", lower=lower, exec_allowed=False)
    again.prepare()
    cid, output = run_step(backend, run_id, again, "cat src/main.py; test -e out || echo no-out")
    assert output.split() == ["print(1)", "no-out"]  # no job writes the snapshot
    backend.remove(cid)
    again.close()


# -- what a snapshot refuses to copy -----------------------------------------------------


def test_a_snapshot_refuses_a_hard_link_to_a_file_outside_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    outside = tmp_path / "host-secret"
    outside.write_text("not the repository's\n")
    (repo / "ok.txt").write_text("fine\n")
    (repo / "linked.txt").hardlink_to(outside)
    with pytest.raises(InvalidInput, match=r"^linked\.txt: has 2 hard links"):
        RepoSnapshot(repo)


def test_a_snapshot_refuses_a_huge_sparse_file_without_reading_it(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    with (repo / "huge.bin").open("wb") as handle:
        handle.truncate(10 * 1024**3)
    with pytest.raises(InvalidInput, match=r"^huge\.bin: is 10737418240 bytes"):
        RepoSnapshot(repo)


def test_a_tree_deeper_than_a_walk_goes_is_a_clear_error(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    deep = repo.joinpath(*["d"] * 100)  # deeper than a walk goes (64 levels)
    deep.mkdir(parents=True)
    (deep / "f").write_text("x")
    with pytest.raises(InvalidInput, match="is nested deeper than 64 levels"):
        RepoSnapshot(repo)
