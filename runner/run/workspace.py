"""The per-job workspace: a copy-on-write view of the run's repository snapshot (SPEC 6).

The snapshot (`runner.run.snapshot`) is the working tree as git sees it (tracked and
untracked, minus what .gitignore excludes; every file otherwise): `repo_files` lists it,
never `.runner/` (state, keys) nor `.git/` (history, and credentials that CI checkouts
persist in `.git/config`). The engine holds it once in a volume of its own, and each job's
workspace (`Workspace`) is an overlay whose lower layer is that volume and whose writes go
to the job's own layer, within the job's quota: a job's workspace costs the same whatever
the repository's size, and a step cannot write the snapshot. Every file is owned by the
step user, so steps can write (their writes copy the file up into the job's layer).

Artifacts leave a stopped step container as a tar that must pass `safe_members` (and stay
within the policy's bounds, `runner.run.artifacts`), and enter the next job's workspace
rewritten from their safe members only (`rewrite_archive`: names under the artifact's
path, owned by the step user, no setuid bits, no extended headers), through the engine
(`Backend.put_workspace`): runner never extracts anything on the host.
"""

from __future__ import annotations

import hashlib
import posixpath
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from runner.engine.backend import LABEL_JOB, LABEL_RUN, NOBODY, WORKSPACE_PATH, Backend, NotFound
from runner.errors import InvalidInput, RunnerError
from runner.repo_files import walk
from runner.run import tarstream

ALWAYS_EXCLUDED = (".runner", ".git")
WORKSPACE_DIR = WORKSPACE_PATH
IO_DIR = f"{WORKSPACE_DIR}/.runner/io"  # the steps' $RUNNER_OUTPUT / $RUNNER_ENV files


class UnsafeArchive(RunnerError):
    """An artifact tar that would write outside its place, or create a device or link out."""

    exit_code = 1


class ArtifactTooLarge(RunnerError):
    """An artifact over one of the policy's bounds (bytes, files, path depth)."""

    exit_code = 1


def binary_size(size: int) -> str:
    """`size` bytes as people read a limit: "2 GiB", "512 MiB", "1.5 KiB", "12 bytes"."""
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.4g} {unit}"
    return f"{size} bytes"


def safe_members(
    tar: tarfile.TarFile, *, max_files: int | None = None, max_depth: int | None = None
) -> list[tarfile.TarInfo]:
    """Every member of `tar`, or UnsafeArchive naming the first that is not safe to extract:
    absolute or `..` paths, links pointing outside the archive's root or through a link,
    devices, FIFOs and anything but regular files, directories and symlinks; or
    ArtifactTooLarge at the member past `max_files`, or deeper than `max_depth` path
    components (read no further: memory stays bounded by `max_files`)."""
    members: list[tarfile.TarInfo] = []
    links: set[str] = set()
    seen: set[str] = set()
    for member in tar:
        name = member.name
        where = f"artifact member {name!r}"
        if max_files is not None and len(members) >= max_files:
            raise ArtifactTooLarge(f"it holds more than {max_files} files and directories")
        if max_depth is not None and len(posixpath.normpath(name).split("/")) > max_depth:
            raise ArtifactTooLarge(f"{where} is deeper than {max_depth} directories")
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
    """Every file and link of a repository git does not know, walked without recursion or
    following a link (`runner.repo_files.walk`: a deep or huge tree is a clear error)."""
    skip = frozenset(excluded)
    return sorted(
        entry.rel for entry in walk(repo, "", prune=skip.__contains__) if entry.kind != "dir"
    )


def repo_files(repo: Path, *, exclude: Sequence[str] = ()) -> list[str]:
    """The repository-relative paths a workspace copy holds."""
    excluded = tuple(ALWAYS_EXCLUDED) + tuple(posixpath.normpath(e) for e in exclude)
    files = _git_files(repo)
    if files is None:
        files = _all_files(repo, excluded)
    return [f for f in files if not any(f == e or f.startswith(e + "/") for e in excluded)]


def volume_name(run_id: str, job_key: str) -> str:
    digest = hashlib.sha256(job_key.encode()).hexdigest()[:12]
    return f"runner-{run_id}-{digest}"


class ArtifactMissing(RunnerError):
    """A produced artifact that is not in the workspace, or not of its declared type."""

    exit_code = 1


class Workspace:
    """A job's volume, mounted at /workspace in its steps: a copy-on-write view of the
    snapshot volume `lower` (see the module docstring), of at most `quota_bytes` of writes.

    Its files are not executable unless the policy grants `exec`. `IO_DIR` (under the
    workspace's `.runner/`, which the repository's copy never holds) takes the steps'
    output/env files."""

    def __init__(
        self,
        backend: Backend,
        run_id: str,
        job_key: str,
        *,
        lower: str | None,
        exec_allowed: bool,
        uid: int = NOBODY,
        labels: Mapping[str, str] | None = None,
        quota_bytes: int | None = None,
    ) -> None:
        self.backend = backend
        self.job_key = job_key
        self.lower = lower
        self.exec_allowed = exec_allowed
        self.uid = uid
        self.quota_bytes = quota_bytes
        self.labels = dict(labels or {LABEL_RUN: run_id, LABEL_JOB: job_key})
        self.volume = volume_name(run_id, job_key)
        self._created = False

    def prepare(self, consumed: Sequence[tuple[str, Path]] = ()) -> None:
        """Create the volume, then place each consumed artifact (its produced path, its
        stored tar) at the same path it was produced at, through the engine."""
        places = [
            (posixpath.dirname(check_relative(path, "artifact path")) or ".", stored)
            for path, stored in consumed
        ]
        self._created = True
        self.backend.create_volume(
            self.volume,
            self.labels,
            exec_allowed=self.exec_allowed,
            owner=self.uid,
            lower=self.lower,
            quota_bytes=self.quota_bytes,
        )
        for parent, stored in places:
            with stored.open("rb") as source:
                tar = rewrite_archive(source, parent, self.uid)
                self.backend.put_workspace(self.volume, ".", tar, self.labels)

    def archive(self, cid: str, artifact_path: str) -> Iterator[bytes]:
        """The tar of `artifact_path` (workspace-relative) of the stopped step container
        `cid`, in chunks as the engine sends them; ArtifactMissing when it does not exist."""
        rel = check_relative(artifact_path, "artifact path")
        try:
            yield from self.backend.get_archive(cid, posixpath.join(WORKSPACE_DIR, rel))
        except NotFound as exc:
            raise ArtifactMissing(
                f"artifact path {artifact_path!r} was not produced in the workspace"
            ) from exc

    def quota_hit(self) -> str | None:
        """What to say when the job's writes reached its quota, else None."""
        if self.quota_bytes is None or not self.backend.workspace_full(self.volume):
            return None
        return (
            f"job {self.job_key} wrote more than its {binary_size(self.quota_bytes)} workspace "
            "quota (limits.workspace-size in the policy)"
        )

    def close(self) -> None:
        """Remove the volume (its containers must be gone)."""
        if self._created:
            self.backend.remove_volume(self.volume)
            self._created = False


def _placed(info: tarfile.TarInfo, name: str, uid: int) -> tarfile.TarInfo:
    """A fresh member `name` of `info`'s type, size, mode (no setuid bits) and link, owned
    by `uid`: nothing else of the original header (no extended attributes) is kept."""
    out = tarfile.TarInfo(name)
    out.type, out.size, out.mtime = info.type, info.size if info.isfile() else 0, info.mtime
    out.mode = info.mode & 0o777
    out.uid = out.gid = uid
    return out


def rewrite_archive(
    source: IO[bytes], prefix: str, uid: int, *, contents: bool = False
) -> Iterator[bytes]:
    """The safe members of the tar `source` under `prefix`, owned by `uid`, no setuid
    bits, as a stream of chunks; with `contents`, the tar of one directory (the engine's
    tar of a path) places what that directory holds, not the directory. The members are
    checked before this returns (UnsafeArchive); `source` must stay open while the stream
    is read."""
    tar = tarfile.open(fileobj=source, mode="r:")  # noqa: SIM115 - the stream closes it
    try:
        members = safe_members(tar)
    except BaseException:
        tar.close()
        raise
    top = posixpath.normpath(members[0].name) if contents and members else ""
    if top and not (members[0].isdir() and "/" not in top):
        top = ""  # not one directory's tar: placed as it is
    try:
        for member in members if top else ():
            _inside(member, top)
    except BaseException:
        tar.close()
        raise
    return _rewritten(tar, members, prefix, uid, top)


def _inside(member: tarfile.TarInfo, top: str) -> None:
    """UnsafeArchive unless `member`, and what it links to, is within the directory `top`
    (which its contents are placed without: a link out of it would point past them)."""
    clean = posixpath.normpath(member.name)
    targets = [clean]
    if member.issym():
        targets.append(
            posixpath.normpath(posixpath.join(posixpath.dirname(clean), member.linkname))
        )
    elif member.islnk():
        targets.append(posixpath.normpath(member.linkname))
    for target in targets:
        if target != top and not target.startswith(top + "/"):
            raise UnsafeArchive(
                f"artifact member {member.name!r} is or points outside its directory {top!r}"
            )


def _within(name: str, top: str) -> str:
    """`name` relative to the directory `top` ("" for `top` itself); `name` when no `top`."""
    return posixpath.relpath(posixpath.normpath(name), top) if top else name


def _rewritten(
    tar: tarfile.TarFile,
    members: Iterable[tarfile.TarInfo],
    prefix: str,
    uid: int,
    top: str = "",
) -> Iterator[bytes]:
    with tar:
        for directory in _parents(prefix):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, uid, uid
            yield tarstream.header(info)
        for member in members:
            name = _within(member.name, top)
            if name == ".":
                continue  # the directory itself: `prefix` stands for it
            info = _placed(member, posixpath.normpath(posixpath.join(prefix, name)), uid)
            if member.issym():
                info.linkname = member.linkname
            elif member.islnk():
                linked = _within(member.linkname, top)
                info.linkname = posixpath.normpath(posixpath.join(prefix, linked))
            yield tarstream.header(info)
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                yield from tarstream.content(handle, member.size, f"artifact member {member.name}")
        yield tarstream.END


def _parents(prefix: str) -> Iterable[str]:
    if prefix in ("", "."):
        return []
    parts = prefix.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
