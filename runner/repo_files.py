"""The repository's files, read as the untrusted input they are.

Whoever writes the working tree (a pull request's author) shapes more than file contents:
symlinks, hard links, FIFOs, device nodes, sizes, names and depths too. Everything runner
reads from the repository on the host (missions, local actions, the policy, the tool
catalog, the trusted keys, build contexts, `hashFiles()`) comes through this module, so that
one place answers "can this read leave the repository, block, or exhaust the host?":

    read_file(root, rel, limit=N)   the bytes of a regular file beneath `root`
    lookup(root, rel)               what `rel` names (file, dir or missing), opening nothing
    list_dir(root, rel)             a directory's entries, links not followed
    walk(root, rel)                 a directory tree, iteratively, with depth and count limits
    write_new_file(root, rel, ...)  create a file beneath `root` (the `.pub` of a new key)
    read_outside(path, limit=N)     a file the invoker named outside the repository
    locate(root, path)              whether a path the invoker typed is in the repository
    shown(text)                     a name or link target made printable for a message

How a path is resolved: component by component from a descriptor of the root, each with
`openat(O_PATH | O_NOFOLLOW)` relative to the directory before it. The kernel never follows
a link: runner reads the link's target and continues the walk itself from the link's
directory, so every step starts in a directory already proven to be inside the repository,
and a directory swapped for a symlink between two steps is seen as the symlink it is.
Chosen over the alternatives: Python has no `openat2` wrapper (RESOLVE_BENEATH through
ctypes would mean a syscall number per architecture and Linux >= 5.6), and "resolve, check
containment, then open" checks one file system state and opens another.

The rules. Each refusal is a `RepoFileError` (exit 2) naming the path and what is wrong,
never quoting what the file holds:
- a symlink inside the repository is followed (a step sees the same link in its workspace);
  one whose target is absolute or climbs above the root is refused, as is a walk through
  more than `MAX_LINKS` links;
- nothing is ever read in `.git/` or `.runner/` (`PRIVATE`: history, credentials, keys,
  the ledger), however a path or a link leads there;
- only regular files are read: a directory, FIFO, socket or device is refused without
  being opened (a FIFO would block, `/dev/zero` never end);
- a regular file with more than one hard link is refused: it may be a host file linked
  into the tree (a git checkout never makes hard links);
- every read has a byte limit, checked on the file's size before reading (a 10 GiB sparse
  file costs a `stat`) and enforced while reading;
- a walk has a depth and an entry limit, and keeps one descriptor per level (never a path
  longer than PATH_MAX, never recursion).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runner.durable import write_fd
from runner.errors import InvalidInput

PRIVATE = (".git", ".runner")  # never read through, whatever a path or a link says
MAX_LINKS = 40  # symlinks followed in one lookup, as the kernel's ELOOP limit
WALK_DEPTH = 64  # directory levels a walk descends
WALK_ENTRIES = 100_000  # entries a walk visits
_CHUNK = 1 << 16
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC

Kind = Literal["file", "dir", "link", "fifo", "socket", "device", "missing"]


class RepoFileError(InvalidInput):
    """A repository path runner refuses to read, with what is wrong with it."""

    def __init__(self, path: str, problem: str, *, hint: str | None = None) -> None:
        super().__init__(f"{shown(path)}: {problem}", hint=hint)
        self.path = path
        self.problem = problem


class TooLarge(RepoFileError):
    """A file over its size limit."""

    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(path, f"is {size} bytes; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


@dataclass(frozen=True)
class Entry:
    """What a repository path names, once its links are resolved beneath the root."""

    rel: str  # as asked for
    real: str  # repository-relative, links resolved ("" for the root itself)
    kind: Kind
    size: int = 0
    nlink: int = 1
    mode: int = 0  # the permission bits


def shown(text: str) -> str:
    """`text` (a file name, a link target) safe to print: undecodable bytes as `\\xNN`,
    control characters (newlines, escape sequences) as Python escapes."""
    raw = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in raw
    )


def _kind(mode: int) -> Kind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


_WHAT = {
    "dir": "a directory",
    "fifo": "a FIFO",
    "socket": "a socket",
    "device": "a device file",
    "link": "a symlink",
    "missing": "missing",
}
ONLY_INSIDE = "runner reads only regular files inside the repository"


def _parts(rel: str) -> list[str]:
    if rel.startswith("/"):
        raise RepoFileError(rel, f"is an absolute path; {ONLY_INSIDE}")
    return [p for p in rel.split("/") if p not in ("", ".")]


class _Resolved:
    """What a path names: an O_PATH descriptor of it and of its directory (-1 for the
    root), its name in that directory, its status, and its repository-relative path."""

    def __init__(self, fd: int, parent: int, name: str, st: os.stat_result, real: str) -> None:
        self.fd, self.parent, self.name, self.st, self.real = fd, parent, name, st, real

    def close(self) -> None:
        os.close(self.fd)
        if self.parent >= 0:
            os.close(self.parent)


def _resolve(root: Path, rel: str) -> _Resolved | None:
    """Walk `rel` beneath `root` (see the module docstring); None when it does not exist."""
    pending = _parts(rel)
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise RepoFileError(str(root), f"cannot open the repository: {exc.strerror}") from None
    dirs: list[tuple[int, str]] = [(root_fd, "")]  # the directories walked into, from the root
    links = 0
    last_link: tuple[str, str] | None = None  # (where, target) of the last link followed
    try:
        while pending:
            part = pending.pop(0)
            if part == "..":
                if len(dirs) == 1:
                    if last_link is not None:
                        where, target = last_link
                        raise RepoFileError(
                            where,
                            f"is a symlink to {shown(target)}, outside the repository; "
                            f"{ONLY_INSIDE}",
                        )
                    raise RepoFileError(rel, f"climbs above the repository root; {ONLY_INSIDE}")
                os.close(dirs.pop()[0])
                continue
            parent = dirs[-1][0]
            here = "/".join([*(name for _, name in dirs[1:]), part])
            if len(dirs) == 1 and part in PRIVATE:
                raise RepoFileError(
                    rel,
                    f"leads into {part}/, which runner never reads (history, credentials, keys, "
                    "the ledger)",
                )
            try:
                fd = os.open(part, _PATH_FLAGS, dir_fd=parent)
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as exc:
                if exc.errno == errno.ENAMETOOLONG:
                    raise RepoFileError(rel, "has a file name that is too long") from None
                raise RepoFileError(rel, f"cannot be read: {exc.strerror}") from None
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(part, dir_fd=parent)
                except OSError:
                    target = "?"
                finally:
                    os.close(fd)
                links += 1
                if target.startswith("/"):
                    raise RepoFileError(here, f"is a symlink to {shown(target)}: {ONLY_INSIDE}")
                if links > MAX_LINKS:
                    raise RepoFileError(rel, f"goes through more than {MAX_LINKS} symlinks")
                last_link = (here, target)
                pending[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            if not pending:
                return _Resolved(fd, os.dup(parent), part, st, here)
            if not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                return None
            dirs.append((fd, part))
        # the path ends on a directory already walked into (`a/..`, a link to `.`)
        fd = os.dup(dirs[-1][0])
        parent_fd = os.dup(dirs[-2][0]) if len(dirs) > 1 else -1
        real = "/".join(name for _, name in dirs[1:])
        return _Resolved(fd, parent_fd, dirs[-1][1] or ".", os.fstat(fd), real)
    finally:
        for fd, _ in dirs:
            os.close(fd)


def lookup(root: Path, rel: str) -> Entry:
    """What `rel` names beneath `root`, links resolved, nothing opened but directories;
    RepoFileError when the path leaves the repository (see the module docstring)."""
    resolved = _resolve(root, rel)
    if resolved is None:
        return Entry(rel, rel, "missing")
    try:
        st = resolved.st
        return Entry(
            rel,
            resolved.real,
            _kind(st.st_mode),
            st.st_size,
            st.st_nlink,
            stat.S_IMODE(st.st_mode),
        )
    finally:
        resolved.close()


def refusal(entry: Entry, limit: int | None = None) -> str | None:
    """Why the regular-file read of `entry` is refused (None: it is not)."""
    if entry.kind != "file":
        return f"is {_WHAT[entry.kind]}, not a regular file; {ONLY_INSIDE}"
    if entry.nlink > 1:
        return (
            f"has {entry.nlink} hard links: it may be a file from outside the repository "
            f"linked in; {ONLY_INSIDE} that are theirs alone"
        )
    if limit is not None and entry.size > limit:
        return f"is {entry.size} bytes; the limit is {limit} bytes"
    return None


def _refuse(entry: Entry, limit: int) -> None:
    if entry.kind == "file" and entry.nlink <= 1 and entry.size > limit:
        raise TooLarge(entry.rel, entry.size, limit)
    why = refusal(entry, limit)
    if why is not None:
        raise RepoFileError(entry.rel, why)


def _read_fd(fd: int, limit: int, rel: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise TooLarge(rel, total, limit)


def read_file(root: Path, rel: str, *, limit: int) -> bytes:
    """The bytes of the regular file `rel` beneath `root`, at most `limit` of them.

    RepoFileError when it is missing, leaves the repository, is not a regular file, has
    hard links or is larger than `limit`."""
    resolved = _resolve(root, rel)
    if resolved is None:
        raise RepoFileError(rel, "no such file")
    try:
        st = resolved.st
        entry = Entry(rel, resolved.real, _kind(st.st_mode), st.st_size, st.st_nlink)
        _refuse(entry, limit)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(resolved.name, flags, dir_fd=resolved.parent)
        except OSError as exc:
            raise RepoFileError(rel, f"cannot be read: {exc.strerror}") from None
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(now.st_mode):
                raise RepoFileError(rel, "changed while it was being read")
            return _read_fd(fd, limit, rel)
        finally:
            os.close(fd)
    finally:
        resolved.close()


def read_optional(root: Path, rel: str, *, limit: int) -> bytes | None:
    """`read_file`, or None when nothing is at `rel` (a dangling link inside is missing too)."""
    try:
        return read_file(root, rel, limit=limit)
    except RepoFileError as exc:
        if exc.problem == "no such file":
            return None
        raise


def _open_dir(root: Path, rel: str) -> tuple[int, str] | None:
    """A readable descriptor of the directory `rel` beneath `root` and its real path; None
    when it is missing; RepoFileError when it is something else."""
    resolved = _resolve(root, rel)
    if resolved is None:
        return None
    try:
        if not stat.S_ISDIR(resolved.st.st_mode):
            kind = _kind(resolved.st.st_mode)
            raise RepoFileError(rel, f"is {_WHAT.get(kind, 'a file')}, not a directory")
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=resolved.fd)
        return fd, resolved.real
    finally:
        resolved.close()


def _entries(fd: int) -> list[tuple[str, os.stat_result]]:
    names = sorted(os.listdir(fd))
    out = []
    for name in names:
        try:
            out.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
        except FileNotFoundError:
            continue
    return out


def list_dir(root: Path, rel: str) -> list[Entry] | None:
    """The entries of directory `rel` beneath `root`, sorted by name, links not followed
    (a link's kind is "link"); None when the directory does not exist."""
    opened = _open_dir(root, rel)
    if opened is None:
        return None
    fd, real = opened
    try:
        base = rel.rstrip("/")
        return [
            Entry(
                f"{base}/{name}" if base else name,
                f"{real}/{name}" if real else name,
                _kind(st.st_mode),
                st.st_size,
                st.st_nlink,
                stat.S_IMODE(st.st_mode),
            )
            for name, st in _entries(fd)
        ]
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Walked:
    """One entry of a walk: its path relative to the walked directory, and what it is."""

    rel: str
    kind: Kind
    size: int
    nlink: int
    mode: int
    target: str = ""  # a link's target
    fd: int = -1  # its directory's descriptor, valid only until the walk moves on


def walk(
    root: Path,
    rel: str,
    *,
    max_depth: int = WALK_DEPTH,
    max_entries: int = WALK_ENTRIES,
    prune: Callable[[str], bool] = lambda path: False,
) -> Iterator[Walked]:
    """Every entry under directory `rel` beneath `root`, depth first in name order, without
    following links, never descending into a directory `prune(path)` names (it is neither
    yielded nor counted); RepoFileError when the tree is deeper or larger than the limits."""
    opened = _open_dir(root, rel)
    if opened is None:
        raise RepoFileError(rel, "no such directory")
    top, _ = opened
    stack: list[tuple[int, str, Iterator[tuple[str, os.stat_result]]]] = [
        (top, "", iter(_entries(top)))
    ]
    seen = 0
    try:
        while stack:
            fd, prefix, items = stack[-1]
            item = next(items, None)
            if item is None:
                os.close(stack.pop()[0])
                continue
            name, st = item
            path = f"{prefix}/{name}" if prefix else name
            kind = _kind(st.st_mode)
            if kind == "dir" and prune(path):
                continue
            seen += 1
            if seen > max_entries:
                raise RepoFileError(rel, f"holds more than {max_entries} entries")
            target = ""
            if kind == "link":
                try:
                    target = os.readlink(name, dir_fd=fd)
                except OSError:
                    target = ""
            yield Walked(path, kind, st.st_size, st.st_nlink, stat.S_IMODE(st.st_mode), target, fd)
            if kind == "dir":
                if len(stack) >= max_depth:
                    raise RepoFileError(
                        f"{rel.rstrip('/')}/{path}", f"is nested deeper than {max_depth} levels"
                    )
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                try:
                    child = os.open(name, flags, dir_fd=fd)
                except OSError as exc:
                    raise RepoFileError(
                        f"{rel.rstrip('/')}/{path}", f"cannot be read: {exc.strerror}"
                    ) from None
                stack.append((child, path, iter(_entries(child))))
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def read_walked(entry: Walked, *, limit: int, shown_as: str) -> bytes:
    """The bytes of a regular file met by `walk` (while the walk is at it)."""
    name = entry.rel.rsplit("/", 1)[-1]
    _refuse(Entry(shown_as, shown_as, entry.kind, entry.size, entry.nlink), limit)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(name, flags, dir_fd=entry.fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RepoFileError(shown_as, "changed while it was being read")
        return _read_fd(fd, limit, shown_as)
    finally:
        os.close(fd)


def write_new_file(root: Path, rel: str, data: bytes, *, mode: int = 0o644) -> bool:
    """Create the file `rel` beneath `root` with `data` (its directories too); False when
    it already exists. RepoFileError when the path leaves the repository: a link in the
    tree never makes runner write outside it."""
    parts = _parts(rel)
    directory = "/".join(parts[:-1])
    root.mkdir(parents=True, exist_ok=True)  # the invoker's directory, not the tree's
    for depth in range(1, len(parts)):
        sub = "/".join(parts[:depth])
        entry = lookup(root, sub)
        if entry.kind == "missing":
            parent = _open_dir(root, "/".join(parts[: depth - 1]))
            if parent is None:
                raise RepoFileError(sub, "cannot be created")
            pfd, _ = parent
            try:
                os.mkdir(parts[depth - 1], 0o755, dir_fd=pfd)
            except FileExistsError:
                pass
            finally:
                os.close(pfd)
        elif entry.kind != "dir":
            raise RepoFileError(sub, f"is {_WHAT.get(entry.kind, 'a file')}, not a directory")
    opened = _open_dir(root, directory)
    if opened is None:
        raise RepoFileError(directory, "no such directory")
    dfd, _ = opened
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(parts[-1], flags, mode, dir_fd=dfd)
        except FileExistsError:
            return False
        try:
            write_fd(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.fsync(dfd)
        return True
    finally:
        os.close(dfd)


def read_outside(path: Path, *, limit: int) -> bytes:
    """A file the invoker named (`--policy /etc/runner/policy.yml`): links followed, since
    the invoker chose the path, but only a regular file, at most `limit` bytes, and never
    a read that blocks."""
    name = str(path)
    try:
        probe = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RepoFileError(name, "no such file") from None
    except OSError as exc:
        raise RepoFileError(name, f"cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(probe)
        kind = _kind(st.st_mode)
        if kind != "file":
            raise RepoFileError(name, f"is {_WHAT[kind]}, not a regular file")
        if st.st_size > limit:
            raise TooLarge(name, st.st_size, limit)
        try:
            fd = os.open(f"/proc/self/fd/{probe}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise RepoFileError(name, f"cannot be read: {exc.strerror}") from None
        try:
            return _read_fd(fd, limit, name)
        finally:
            os.close(fd)
    finally:
        os.close(probe)


def locate(root: Path, path: Path) -> str | None:
    """Where `path` (as the invoker typed it) is in the repository `root`: its
    repository-relative path, or None when it is outside, so that a file inside is read
    beneath the root (`read_file`) and one outside as the invoker's own (`read_outside`).

    Inside when it is lexically (`..` folded, no link followed) or when its directory's
    real path is: a link the repository holds is then judged by `read_file`, never
    followed here."""
    absolute = Path(os.path.abspath(path))
    for candidate in (absolute, Path(os.path.realpath(absolute.parent)) / absolute.name):
        try:
            rel = candidate.relative_to(root)
        except ValueError:
            continue
        return rel.as_posix() if str(rel) != "." else ""
    return None
