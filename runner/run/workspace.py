"""The per-job workspace: a volume holding a copy of the repository (SPEC 6).

The copy is taken from the working tree: the files git would track (tracked and untracked,
minus what .gitignore excludes) when the repository is a git work tree, every file
otherwise; never `.runner/` (state, keys) nor `.git/` (history, and credentials that CI
checkouts persist in `.git/config`). Every file is owned by the step user, so steps can
write. Artifacts leave a stopped step container as a tar that must pass `safe_members`,
and enter the next one rewritten from its safe members only.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

from runner.engine.backend import LABEL_JOB, LABEL_RUN, NOBODY, WORKSPACE_PATH, Backend, NotFound
from runner.errors import InvalidInput, RunnerError

ALWAYS_EXCLUDED = (".runner", ".git")
WORKSPACE_DIR = WORKSPACE_PATH
IO_DIR = f"{WORKSPACE_DIR}/.runner/io"  # the steps' $RUNNER_OUTPUT / $RUNNER_ENV files
SPOOL_BYTES = 8 * 1024 * 1024


class UnsafeArchive(RunnerError):
    """An artifact tar that would write outside its place, or create a device or link out."""

    exit_code = 1


def safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member of `tar`, or UnsafeArchive naming the first that is not safe to extract:
    absolute or `..` paths, links pointing outside the archive's root or through a link,
    devices, FIFOs and anything but regular files, directories and symlinks."""
    members: list[tarfile.TarInfo] = []
    links: set[str] = set()
    seen: set[str] = set()
    for member in tar:
        name = member.name
        where = f"artifact member {name!r}"
        if name.startswith("/") or posixpath.isabs(name):
            raise UnsafeArchive(f"{where} has an absolute path")
        clean = posixpath.normpath(name)
        if clean == ".." or clean.startswith("../") or ".." in name.split("/"):
            raise UnsafeArchive(f"{where} climbs out of its directory with '..'")
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise UnsafeArchive(f"{where} is a device, FIFO or other special file")
        parts = clean.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in links:
                raise UnsafeArchive(
                    f"{where} is written through the link {'/'.join(parts[:depth])!r}"
                )
        if member.issym():
            target = member.linkname
            if target.startswith("/"):
                raise UnsafeArchive(f"{where} is a link to the absolute path {target!r}")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(clean), target))
            if resolved == ".." or resolved.startswith("../"):
                raise UnsafeArchive(f"{where} is a link pointing outside: {target!r}")
            links.add(clean)
        if member.islnk():
            target = posixpath.normpath(member.linkname)
            if target.startswith("/") or target == ".." or target.startswith("../"):
                raise UnsafeArchive(f"{where} is a hard link to {member.linkname!r}")
            if target not in seen:
                raise UnsafeArchive(f"{where} is a hard link to a file not in the archive")
        seen.add(clean)
        members.append(member)
    return members


def check_relative(path: str, what: str) -> str:
    """A workspace-relative path without `..`; InvalidInput otherwise."""
    clean = posixpath.normpath(path.strip())
    if not path.strip() or clean.startswith("/") or clean == ".." or clean.startswith("../"):
        raise InvalidInput(
            f"{what} {path!r} is not a relative path inside the workspace",
            hint="use a path relative to the repository root, without '..'",
        )
    return clean


def _git_files(repo: Path) -> list[str] | None:
    """Tracked + untracked-not-ignored files, or None when `repo` is not a git work tree."""
    if shutil.which("git") is None or not (repo / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=repo,
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return sorted({p for p in done.stdout.decode("utf-8", "surrogateescape").split("\0") if p})


def _all_files(repo: Path, excluded: Sequence[str]) -> list[str]:
    found: list[str] = []
    for top, dirs, files in os.walk(repo):
        rel_top = os.path.relpath(top, repo)
        dirs[:] = sorted(
            d for d in dirs if posixpath.normpath(posixpath.join(rel_top, d)) not in excluded
        )
        links = [d for d in dirs if os.path.islink(os.path.join(top, d))]  # not descended
        for name in [*files, *links]:
            found.append(posixpath.normpath(posixpath.join(rel_top, name)))
    return sorted(found)


def repo_files(repo: Path, *, exclude: Sequence[str] = ()) -> list[str]:
    """The repository-relative paths a workspace copy holds."""
    excluded = tuple(ALWAYS_EXCLUDED) + tuple(posixpath.normpath(e) for e in exclude)
    files = _git_files(repo)
    if files is None:
        files = _all_files(repo, excluded)
    return [f for f in files if not any(f == e or f.startswith(e + "/") for e in excluded)]


def _owned(info: tarfile.TarInfo, uid: int) -> tarfile.TarInfo:
    info.uid = info.gid = uid
    info.uname = info.gname = ""
    info.mode &= 0o777  # never setuid/setgid/sticky in a workspace
    return info


def write_repo_tar(repo: Path, out: IO[bytes], *, uid: int, exclude: Sequence[str] = ()) -> int:
    """Write the workspace copy of `repo` as a tar to `out`, with the empty `IO_DIR`;
    returns the number of files."""
    count = 0
    dirs_done: set[str] = set()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in _parents(posixpath.relpath(IO_DIR, WORKSPACE_DIR)):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(_owned(_dir_mode(info), uid))
        for rel in repo_files(repo, exclude=exclude):
            path = repo / rel
            try:
                st = path.lstat()
            except FileNotFoundError:  # listed by git but deleted in the work tree
                continue
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue
            parent = posixpath.dirname(rel)
            missing: list[str] = []
            while parent and parent not in dirs_done:
                missing.append(parent)
                parent = posixpath.dirname(parent)
            for directory in reversed(missing):
                info = tar.gettarinfo(str(repo / directory), arcname=directory)
                tar.addfile(_owned(info, uid))
                dirs_done.add(directory)
            info = _owned(tar.gettarinfo(str(path), arcname=rel), uid)
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
            count += 1
    return count


class RepoSnapshot:
    """The repository as a tar, built once and shared by the jobs of a run (thread-safe:
    every reader has its own file or buffer). Small snapshots stay in memory."""

    def __init__(self, repo: Path, *, uid: int = NOBODY, exclude: Sequence[str] = ()) -> None:
        self.repo = repo
        self.uid = uid
        handle, name = tempfile.mkstemp(prefix="runner-repo-", suffix=".tar")
        self._path: Path | None = Path(name)
        with os.fdopen(handle, "w+b") as out:
            self.files = write_repo_tar(repo, out, uid=uid, exclude=exclude)
            self.size = out.tell()
            out.seek(0)
            self.data: bytes | None = out.read() if self.size <= SPOOL_BYTES else None
        if self.data is not None:
            self.close()

    def open(self) -> IO[bytes]:
        """A new reader of the tar."""
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self._path is not None, "snapshot used after close()"
        return self._path.open("rb")

    def close(self) -> None:
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None


def volume_name(run_id: str, job_key: str) -> str:
    digest = hashlib.sha256(job_key.encode()).hexdigest()[:12]
    return f"runner-{run_id}-{digest}"


class ArtifactMissing(RunnerError):
    """A produced artifact that is not in the workspace, or not of its declared type."""

    exit_code = 1


class Workspace:
    """A per-job volume holding a copy of the repository, mounted at /workspace in steps.

    Its files are not executable unless the policy grants `exec`. `IO_DIR` (under the
    workspace's `.runner/`, which a copy never holds) takes the steps' output/env files."""

    def __init__(
        self,
        backend: Backend,
        run_id: str,
        job_key: str,
        repo: Path,
        *,
        exec_allowed: bool,
        uid: int = NOBODY,
        labels: Mapping[str, str] | None = None,
        snapshot: RepoSnapshot | None = None,
    ) -> None:
        self.backend = backend
        self.repo = repo
        self.exec_allowed = exec_allowed
        self.uid = uid
        self.labels = dict(labels or {LABEL_RUN: run_id, LABEL_JOB: job_key})
        self.volume = volume_name(run_id, job_key)
        self._snapshot = snapshot
        self._created = False

    def prepare(self, consumed: Sequence[tuple[str, Path]] = ()) -> None:
        """Create the volume: the repository copy, `IO_DIR`, then each consumed artifact
        (its produced path, its stored tar) placed at the same path it was produced at."""
        seeds: list[bytes | IO[bytes]] = []
        for path, stored in consumed:
            parent = posixpath.dirname(check_relative(path, "artifact path")) or "."
            seeds.append(rewrite_archive(stored.read_bytes(), parent, self.uid))
        own = self._snapshot is None
        snapshot = self._snapshot or RepoSnapshot(self.repo, uid=self.uid)
        if snapshot.uid != self.uid:
            raise ValueError(f"snapshot owned by uid {snapshot.uid}, workspace by {self.uid}")
        try:
            with snapshot.open() as repo_tar:
                self._created = True
                self.backend.create_volume(
                    self.volume,
                    self.labels,
                    exec_allowed=self.exec_allowed,
                    owner=self.uid,
                    seeds=[repo_tar, *seeds],
                )
        finally:
            if own:
                snapshot.close()

    def collect(self, cid: str, artifact_path: str) -> tuple[bytes, str, int]:
        """The tar of `artifact_path` (workspace-relative) copied out of the stopped step
        container `cid`, checked by `safe_members`: (tar bytes, its sha256 hex, its size).
        ArtifactMissing when the path does not exist, UnsafeArchive when it is unsafe."""
        rel = check_relative(artifact_path, "artifact path")
        try:
            data = b"".join(self.backend.get_archive(cid, posixpath.join(WORKSPACE_DIR, rel)))
        except NotFound as exc:
            raise ArtifactMissing(
                f"artifact path {artifact_path!r} was not produced in the workspace"
            ) from exc
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
                safe_members(tar)
        except tarfile.TarError as exc:
            raise UnsafeArchive(f"artifact {artifact_path!r} is not a readable tar: {exc}") from exc
        return data, hashlib.sha256(data).hexdigest(), len(data)

    def close(self) -> None:
        """Remove the volume (its containers must be gone)."""
        if self._created:
            self.backend.remove_volume(self.volume)
            self._created = False


def rewrite_archive(data: bytes, prefix: str, uid: int) -> bytes:
    """The safe members of the tar `data` under `prefix`, owned by `uid`, no setuid bits."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = safe_members(tar)
        rewritten = io.BytesIO()
        with tarfile.open(fileobj=rewritten, mode="w", format=tarfile.PAX_FORMAT) as out:
            for directory in _parents(prefix):
                info = tarfile.TarInfo(directory)
                info.type = tarfile.DIRTYPE
                out.addfile(_owned(_dir_mode(info), uid))
            for member in members:
                extracted = tar.extractfile(member) if member.isfile() else None
                member.name = posixpath.normpath(posixpath.join(prefix, member.name))
                if member.islnk():
                    member.linkname = posixpath.normpath(posixpath.join(prefix, member.linkname))
                out.addfile(_owned(member, uid), extracted)
    return rewritten.getvalue()


def _dir_mode(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode = 0o755
    return info


def _parents(prefix: str) -> Iterable[str]:
    if prefix in ("", "."):
        return []
    parts = prefix.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
