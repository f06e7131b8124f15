"""A local engine's volume directory, used directly instead of through a container.

Docker's archive API mounts a container's filesystem for every copy in or out (~45 ms
each here), once per step for the output/env files and once per job for the workspace
seed. When the engine is local and its volume directories are ours to use (root, the
unix socket), runner lays out and seeds a workspace's data volume in place and reads a
step's files from it. Reading treats the directory as hostile: the step wrote it, so
every path component is opened with O_NOFOLLOW (a symlink never leads out of it), only
regular files are read, and only up to a limit.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from runner.errors import InvalidInput

LAYOUT = (("lower", 0o755), ("work", 0o700), ("upper", 0o755))  # upper: the workspace root


def usable(path: str) -> Path | None:
    """`path` when this process may write it directly, else None (use the API)."""
    candidate = Path(path)
    if candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK):
        return candidate
    return None


def lay_out(root: Path, owner: int) -> None:
    """The overlay's three directories; the workspace root (`upper`) belongs to `owner`."""
    for name, mode in LAYOUT:
        path = root / name
        path.mkdir(mode=mode, exist_ok=True)
        os.chmod(path, mode)
    os.chown(root / "upper", owner, owner)


def extract(seed: bytes | IO[bytes], dest: Path) -> None:
    """Extract one of runner's own seed tars (the repository snapshot, a rewritten
    artifact) into `dest`, keeping the owners it names; the `tar` filter still refuses
    absolute paths, `..` and setuid bits."""
    import io

    handle = io.BytesIO(seed) if isinstance(seed, bytes) else seed
    with tarfile.open(fileobj=handle, mode="r:") as tar:
        tar.extractall(dest, numeric_owner=True, filter="tar")


def _open_dir(parent: int, name: str) -> int:
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)


def read_files(root: Path, directory: str, names: Sequence[str], limit: int) -> dict[str, bytes]:
    """Regular files `names` of `root/directory`; a missing file or directory is left out.

    InvalidInput when one is a link, not a regular file, or larger than `limit`."""
    found: dict[str, bytes] = {}
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return found
    try:
        for part in [p for p in directory.split("/") if p not in ("", ".")]:
            try:
                inner = _open_dir(fd, part)
            except FileNotFoundError:
                return found
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise InvalidInput(f"{directory}: {part!r} is not a directory") from None
                raise
            os.close(fd)
            fd = inner
        for name in names:
            found_bytes = _read_one(fd, name, limit, f"{directory}/{name}")
            if found_bytes is not None:
                found[name] = found_bytes
    finally:
        os.close(fd)
    return found


def _read_one(dir_fd: int, name: str, limit: int, shown: str) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidInput(f"{shown} is a symbolic link; a step must write a file") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(f"{shown} is not a regular file")
        if info.st_size > limit:
            raise InvalidInput(f"{shown} is larger than {limit} bytes")
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(limit + 1)[:limit]
    finally:
        os.close(fd)
