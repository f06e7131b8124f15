"""The repository snapshot of a run: written once into the engine, shared read-only by
every job, cached across runs by content.

What it holds is the workspace copy (`runner.run.workspace.repo_files`: git's view of the
working tree, tracked and untracked-not-ignored, never `.git/` or `.runner/`; a file with
other hard links, a file over 1 GiB or a copy over 8 GiB is refused) plus the
empty `.runner/io/` the steps' file commands go to, every entry owned by the step user,
without setuid bits. The engine extracts it into a volume of its own
(`Backend.create_snapshot`); each job's workspace is a copy-on-write view of that volume
(`Backend.create_volume(lower=...)`), so a job's workspace costs the same whatever the
repository's size, and no step can write the snapshot.

Content addressing (`RepoSnapshot.digest`): sha256 over a format version, the owner, and
each entry's path, type, mode and git blob id. A file git reports unmodified (tagged `H`,
stage 0 in `git ls-files -s -v`, and not in `git diff-files`) takes its blob id from the
index: a clean checkout costs three `git` calls and an lstat per file, no read. Any other
file (modified, untracked, assume-unchanged or skip-worktree, or no git at all) is hashed
as git hashes a blob, so the same content has the same id whichever way it was found. A
second run of the same commit (or of any tree with the same content) finds the volume of
that digest and copies nothing; every job of a run uses the same volume (one per step
user). The copy (`chunks`) is streamed, never whole in memory, and checks what it reads
against the digest: a file runner hashed must hash the same, and git must report the same
modified files afterwards; otherwise the copy fails ("changed while runner copied it")
rather than cache other content under the digest.

The cache (`SnapshotCache`, one per state directory): volume `runner-snapshot-<24 hex>`
(of the digest and the state directory), labelled `runner.snapshot` (the digest) and
`runner.snapshot-of` (the state directory), and a record `<state>/snapshots/<volume>.json`
written once the copy is complete (a copy a crash cut short has none and is made again),
whose mtime is the snapshot's last use. A run holds `<state>/snapshots/lock` shared for
its whole duration; `runner gc` takes it exclusively, without waiting, to remove
snapshots, so no snapshot is removed under a live run (the kernel drops the lock of a
killed runner). Copies are serialised by `<state>/snapshots/copy.lock`. The rule of
`runner gc` (`collect`): a snapshot is removed when it was last used more than
`older_than_s` ago (default 7 days) or is not among the `keep` most recently used
(default 3).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from runner import repo_files
from runner.durable import flock as _flock
from runner.durable import write_atomic
from runner.engine.backend import (
    LABEL_SNAPSHOT,
    LABEL_SNAPSHOT_OF,
    NOBODY,
    Backend,
)
from runner.errors import InvalidInput
from runner.run import tarstream
from runner.run.workspace import IO_DIR, WORKSPACE_DIR
from runner.run.workspace import repo_files as workspace_files

FORMAT = "runner-snapshot/1"
MAX_FILE_BYTES = 1 << 30  # a workspace file (a 10 GiB sparse file is refused, not copied)
MAX_TOTAL_BYTES = 8 << 30  # the whole copy
VOLUME_PREFIX = "runner-snapshot-"
DEFAULT_KEEP = 3
DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0
GIT = ("git", "-c", "core.fsmonitor=false")  # never a hook of the repository's config
LINK = "120000"  # git's mode of a symbolic link


@dataclass(frozen=True)
class Entry:
    """One file of the snapshot: its git blob id, taken from the index or `hashed` here."""

    path: str
    link: bool
    mode: int
    blob: str
    hashed: bool


@dataclass(frozen=True)
class Scan:
    entries: tuple[Entry, ...]
    dirty: frozenset[str] | None  # what `git diff-files` reported; None: no git
    algorithm: str  # the repository's object format: sha1 or sha256


def _git(repo: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run([*GIT, *args], cwd=repo, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout


def _names(output: bytes) -> frozenset[str]:
    return frozenset(p for p in output.decode("utf-8", "surrogateescape").split("\0") if p)


def _index(repo: Path) -> dict[str, tuple[str, str]] | None:
    """path -> (mode, blob id) of the index entries git trusts its stat data for (tag H,
    stage 0); None when `repo` is not a git work tree."""
    if not (repo / ".git").exists():
        return None
    listed = _git(repo, "ls-files", "-s", "-v", "-z")
    if listed is None:
        return None
    found: dict[str, tuple[str, str]] = {}
    for record in listed.decode("utf-8", "surrogateescape").split("\0"):
        meta, _, path = record.partition("\t")
        parts = meta.split(" ")
        if len(parts) == 4 and parts[0] == "H" and parts[3] == "0":
            found[path] = (parts[1], parts[2])
    return found


def _dirty(repo: Path) -> frozenset[str]:
    output = _git(repo, "diff-files", "--name-only", "-z")
    if output is None:
        raise InvalidInput(f"{repo}: `git diff-files` failed; is the repository readable?")
    return _names(output)


def _hasher(algorithm: str, size: int) -> hashlib._Hash:
    digest = hashlib.new(algorithm)
    digest.update(b"blob %d\0" % size)
    return digest


def _open(path: Path) -> IO[bytes]:
    """A regular file of the repository, never through a symlink at its last component."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise InvalidInput(f"{path} changed while runner copied it; run again")
    return handle


def _file_blob(path: Path, algorithm: str) -> str:
    with _open(path) as handle:
        digest = _hasher(algorithm, os.fstat(handle.fileno()).st_size)
        for chunk in iter(lambda: handle.read(tarstream.CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _link_blob(target: bytes, algorithm: str) -> str:
    digest = _hasher(algorithm, len(target))
    digest.update(target)
    return digest.hexdigest()


def _check_file(rel: str, st: os.stat_result, total: int) -> None:
    """InvalidInput for a file a workspace must not hold: one with other hard links (it may
    be a file from outside the repository linked in: copying it would hand a host file to
    the steps), one over `MAX_FILE_BYTES`, or a copy over `MAX_TOTAL_BYTES`."""
    shown = repo_files.shown(rel)
    if st.st_nlink > 1:
        raise InvalidInput(
            f"{shown}: has {st.st_nlink} hard links: it may be a file from outside the "
            "repository linked in, and a workspace holds only files that are the "
            "repository's alone",
            hint="replace the hard link with a copy of the file",
        )
    if st.st_size > MAX_FILE_BYTES:
        raise InvalidInput(
            f"{shown}: is {st.st_size} bytes; a workspace file may be at most "
            f"{MAX_FILE_BYTES} bytes",
            hint="keep large files out of the repository's working tree (or .gitignore them)",
        )
    if total > MAX_TOTAL_BYTES:
        raise InvalidInput(
            f"the repository's files are more than {MAX_TOTAL_BYTES} bytes: too large to "
            "copy into a workspace",
            hint="keep large files out of the working tree (or .gitignore them)",
        )


def scan(repo: Path, exclude: Sequence[str] = ()) -> Scan:
    """Every entry of the workspace copy of `repo`, with its blob id."""
    index = _index(repo)
    dirty = _dirty(repo) if index is not None else None
    algorithm = "sha256" if index and len(next(iter(index.values()))[1]) == 64 else "sha1"
    entries: list[Entry] = []
    total = 0
    for rel in workspace_files(repo, exclude=exclude):
        path = repo / rel
        try:
            st = path.lstat()
        except FileNotFoundError:  # listed by git but deleted in the work tree
            continue
        link = stat.S_ISLNK(st.st_mode)
        if not (link or stat.S_ISREG(st.st_mode)):
            continue
        if not link:
            total += st.st_size
            _check_file(rel, st, total)
        known = index.get(rel) if index is not None and dirty is not None else None
        if known is not None and rel not in (dirty or ()) and (known[0] == LINK) == link:
            entries.append(Entry(rel, link, _mode(st.st_mode, link), known[1], False))
            continue
        try:
            blob = (
                _link_blob(os.fsencode(os.readlink(path)), algorithm)
                if link
                else _file_blob(path, algorithm)
            )
        except OSError:
            raise InvalidInput(f"{path} changed while runner read it; run again") from None
        entries.append(Entry(rel, link, _mode(st.st_mode, link), blob, True))
    return Scan(tuple(entries), dirty, algorithm)


def _mode(st_mode: int, link: bool) -> int:
    return 0o777 if link else stat.S_IMODE(st_mode) & 0o777  # never setuid/setgid/sticky


class RepoSnapshot:
    """What a run's workspaces start from, owned by `uid` (see the module docstring)."""

    def __init__(
        self,
        repo: Path,
        *,
        uid: int = NOBODY,
        exclude: Sequence[str] = (),
        scanned: Scan | None = None,
    ) -> None:
        self.repo = repo
        self.uid = uid
        self.scan = scanned if scanned is not None else scan(repo, exclude)
        document = hashlib.sha256(f"{FORMAT}\0{uid}\0{self.scan.algorithm}\0".encode())
        for entry in self.scan.entries:
            kind = "l" if entry.link else "f"
            document.update(f"{kind} {entry.mode:o} {entry.blob} ".encode())
            document.update(entry.path.encode("utf-8", "surrogateescape") + b"\0")
        self.digest = document.hexdigest()

    @property
    def files(self) -> int:
        return len(self.scan.entries)

    def owned_by(self, uid: int) -> RepoSnapshot:
        """The same files, owned by `uid` (another snapshot: owners are in the digest)."""
        if uid == self.uid:
            return self
        return RepoSnapshot(self.repo, uid=uid, scanned=self.scan)

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode = kind, mode
        info.uid = info.gid = self.uid
        return info

    def chunks(self, prefix: str = "") -> Iterator[bytes]:
        """The snapshot as a tar, its members named under `prefix`, in chunks; checked
        against the digest as it is read (see the module docstring)."""

        def named(rel: str) -> str:
            return f"{prefix}/{rel}" if prefix else rel

        io_parts = os.path.relpath(IO_DIR, WORKSPACE_DIR).split("/")
        for depth in range(1, len(io_parts) + 1):
            name = named("/".join(io_parts[:depth]))
            yield tarstream.header(self._info(name, tarfile.DIRTYPE, 0o755))
        done: set[str] = set()
        for entry in self.scan.entries:
            yield from self._parents(entry.path, done, named)
            yield from self._entry(entry, named(entry.path))
        if self.scan.dirty is not None and _dirty(self.repo) != self.scan.dirty:
            raise InvalidInput(f"{self.repo} changed while runner copied it; run again")
        yield tarstream.END

    def _parents(self, rel: str, done: set[str], named: Callable[[str], str]) -> Iterator[bytes]:
        missing: list[str] = []
        parent = os.path.dirname(rel)
        while parent and parent not in done:
            missing.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(missing):
            try:
                mode = stat.S_IMODE((self.repo / directory).lstat().st_mode) & 0o777
            except OSError:
                mode = 0o755
            done.add(directory)
            yield tarstream.header(self._info(named(directory), tarfile.DIRTYPE, mode))

    def _entry(self, entry: Entry, name: str) -> Iterator[bytes]:
        path = self.repo / entry.path
        changed = InvalidInput(f"{path} changed while runner copied it; run again")
        if entry.link:
            try:
                target = os.readlink(path)
            except OSError:
                raise changed from None
            if entry.hashed and _link_blob(os.fsencode(target), self.scan.algorithm) != entry.blob:
                raise changed
            info = self._info(name, tarfile.SYMTYPE, entry.mode)
            info.linkname = target
            yield tarstream.header(info)
            return
        try:
            handle = _open(path)
        except OSError:
            raise changed from None
        with handle:
            st = os.fstat(handle.fileno())
            info = self._info(name, tarfile.REGTYPE, entry.mode)
            info.size, info.mtime = st.st_size, int(st.st_mtime)
            digest = _hasher(self.scan.algorithm, st.st_size) if entry.hashed else None
            yield tarstream.header(info)
            seen = digest.update if digest is not None else None
            yield from tarstream.content(handle, st.st_size, str(path), seen)
            if digest is not None and digest.hexdigest() != entry.blob:
                raise changed


@dataclass
class SnapshotCache:
    """The snapshot volumes of one state directory (see the module docstring)."""

    backend: Backend
    state_dir: Path
    _held: int | None = field(default=None, init=False)

    @property
    def directory(self) -> Path:
        return self.state_dir / "snapshots"

    def _prepared(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.directory

    def volume_name(self, digest: str) -> str:
        key = hashlib.sha256(f"{self.state_dir.resolve()}\0{digest}".encode()).hexdigest()
        return VOLUME_PREFIX + key[:24]

    def labels(self, digest: str) -> dict[str, str]:
        return {LABEL_SNAPSHOT: digest, LABEL_SNAPSHOT_OF: str(self.state_dir.resolve())}

    def hold(self) -> None:
        """Use the cache (shared): `runner gc` removes no snapshot until `release`."""
        if self._held is None:
            self._held = _flock(self._prepared() / "lock", fcntl.LOCK_SH)

    def release(self) -> None:
        if self._held is not None:
            os.close(self._held)
            self._held = None

    def ensure(self, snapshot: RepoSnapshot, helper_labels: Mapping[str, str]) -> str:
        """The volume holding `snapshot`, copied into the engine unless it already is."""
        name = self.volume_name(snapshot.digest)
        record = self._prepared() / f"{name}.json"
        copying = _flock(self.directory / "copy.lock", fcntl.LOCK_EX)
        try:
            _, volumes = self.backend.list_labelled(f"{LABEL_SNAPSHOT}={snapshot.digest}")
            if name in volumes and record.exists():
                os.utime(record)
                return name
            record.unlink(missing_ok=True)
            if name in volumes:  # a copy cut short
                self.backend.remove_volume(name)
            self.backend.create_snapshot(
                name, self.labels(snapshot.digest), snapshot.chunks, helper_labels
            )
            document = {"digest": snapshot.digest, "files": snapshot.files, "uid": snapshot.uid}
            write_atomic(record, json.dumps(document).encode(), mode=0o600)
        finally:
            if copying is not None:
                os.close(copying)
        return name

    def collect(self, *, keep: int, older_than_s: float, now: float) -> list[str] | None:
        """Remove the snapshots `runner gc`'s rule selects; their names, or None when a
        run holds the cache (nothing is removed then)."""
        if not self.directory.is_dir():
            return []
        exclusive = _flock(self.directory / "lock", fcntl.LOCK_EX | fcntl.LOCK_NB)
        if exclusive is None:
            return None
        try:
            mine = f"{LABEL_SNAPSHOT_OF}={self.state_dir.resolve()}"
            _, volumes = self.backend.list_labelled(mine)
            used = sorted(volumes, key=self._last_used, reverse=True)
            removed = [
                name
                for rank, name in enumerate(used)
                if rank >= keep or now - self._last_used(name) > older_than_s
            ]
            for name in removed:
                self.backend.remove_volume(name)
                (self.directory / f"{name}.json").unlink(missing_ok=True)
            for record in self.directory.glob(f"{VOLUME_PREFIX}*.json"):
                if record.stem not in volumes:  # its volume went some other way
                    record.unlink(missing_ok=True)
        finally:
            os.close(exclusive)
        return sorted(removed)

    def _last_used(self, name: str) -> float:
        try:
            return (self.directory / f"{name}.json").stat().st_mtime
        except OSError:
            return 0.0  # never completed: the oldest


class RunSnapshots:
    """The snapshot volumes of one run: one per step user, made on first use, held until
    `close` so that `runner gc` leaves them alone while the run lives."""

    def __init__(
        self,
        snapshot: RepoSnapshot,
        cache: SnapshotCache,
        helper_labels: Mapping[str, str],
    ) -> None:
        self.snapshot = snapshot
        self._cache = cache
        self._helper_labels = dict(helper_labels)
        self._volumes: dict[int, str] = {}
        self._lock = threading.Lock()
        cache.hold()

    def volume(self, uid: int) -> str:
        """The snapshot volume whose files belong to `uid`."""
        with self._lock:
            if uid not in self._volumes:
                owned = self.snapshot.owned_by(uid)
                self._volumes[uid] = self._cache.ensure(owned, self._helper_labels)
            return self._volumes[uid]

    def close(self) -> None:
        self._cache.release()
