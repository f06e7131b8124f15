"""Files runner writes: one way to write a file atomically (and, where it must not be lost,
durably), one way to digest a file or a JSON value.

`flock` is the one way to hold an advisory lock on a file (the repository snapshots' and
the `actions/cache` store's: runs share it, `runner gc` takes it alone).

`atomic_output` is the only place runner writes a file by replacing it: a temporary file
in the same directory, `mode` from the start (never briefly world-readable), renamed over
the target only when complete, removed on any failure. With `durable=True` the data and
the directory entry are fsync'd before it returns (ledger, keys); caches and reports skip
the syncs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def flock(path: Path, operation: int) -> int | None:
    """An open fd of `path` (created if missing) holding the `fcntl.flock` `operation`;
    None when `operation` has LOCK_NB and the lock is taken. Closing the fd releases it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, operation)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a file created or renamed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: Path, *, mode: int = 0o644, durable: bool = False) -> Iterator[IO[bytes]]:
    """A binary file that replaces `path` when the block ends without an exception."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = False) -> None:
    """Replace `path` with `data` atomically (see `atomic_output`)."""
    with atomic_output(path, mode=mode, durable=durable) as handle:
        handle.write(data)


def write_fd(fd: int, data: bytes) -> None:
    """All of `data` to `fd`: `os.write` may write less than it was given."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` (it must not exist) durably, with `mode` from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_fd(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks (memory flat in the file's size)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_digest(value: Any) -> str:
    """Hex SHA-256 of a JSON value in a stable form (sorted keys, no whitespace, UTF-8).

    For digests runner compares with itself (policies, catalogs, manifests, container
    specs); the ledger's own bytes are `runner.audit.canonical`'s business."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
