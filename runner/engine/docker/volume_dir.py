"""A local engine's volume directory, used in place for what needs no file a step shaped.

Docker's archive API mounts a container's filesystem for every copy in or out (~45 ms
each here), once per step for the output/env files. When the engine is local and its
volume directories are ours to use (root, the unix socket), runner does three things in a
workspace's data volume directly, none of which writes anything a step or the repository
shaped:

- `mount_quota`: the quota. The fresh, empty directory becomes an ext4 filesystem of the
  quota's size (an image file made by `mkfs.ext4` inside it, loop-mounted over it), so the
  kernel refuses a write past the quota with ENOSPC; no polling. The image is sparse (a
  quota costs disk only as it is used, ~1 MiB of metadata at first), has no journal (a
  workspace does not outlive its job) and its inode tables are never zeroed behind our
  back (`noinit_itable`). `unmount` undoes it before the volume is removed; `full` tells a
  step that failed at the quota from one that failed otherwise.
- `lay_out`: the overlay's empty directories, with their owners.
- `read_files`: a step's `$RUNNER_OUTPUT` / `$RUNNER_ENV`, read in place. The step wrote
  that directory, so it is treated as hostile: every path component is opened with
  O_NOFOLLOW (a symlink never leads out of it), only regular files with one link are read
  (a hard link is refused, whatever it points at), and only up to a limit.

Files never enter a volume this way: the repository snapshot and consumed artifacts are
extracted by the engine inside a helper container (`backend.DockerBackend`).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from runner.errors import InvalidInput, RunnerError

LAYOUT = (("lower", 0o755), ("work", 0o700), ("upper", 0o755))  # upper: the workspace root
QUOTA_IMAGE = "quota.ext4"
FULL_BYTES = 1024 * 1024  # less free than this (or no inode left): the quota was hit
MKFS = ("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "nodiscard")
MOUNT_OPTIONS = "loop,nosuid,nodev,noatime,noinit_itable"


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


def _run(command: Sequence[str], what: str) -> None:
    try:
        subprocess.run(list(command), check=True, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as exc:
        raise RunnerError(
            f"{what}: {command[0]} is not installed",
            hint="the workspace quota needs e2fsprogs (mkfs.ext4) and util-linux (mount)",
        ) from exc
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip() or f"exit status {exc.returncode}"
        raise RunnerError(f"{what}: {command[0]} failed: {detail}") from exc
    except subprocess.TimeoutExpired as exc:
        raise RunnerError(f"{what}: {command[0]} did not finish in {exc.timeout:g} s") from exc


def mount_quota(root: Path, size: int) -> None:
    """Make the fresh, empty volume directory `root` an ext4 filesystem of `size` bytes
    (see the module docstring)."""
    image = root / QUOTA_IMAGE
    with open(image, "xb") as handle:  # a fresh volume: nothing can be there already
        handle.truncate(size)
    what = f"making the {size}-byte workspace quota in {root}"
    _run([*MKFS, str(image)], what)
    _run(["mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(root)], what)


def mounted(root: Path) -> bool:
    """Whether a filesystem is mounted at `root` (this process's mount table)."""
    target = os.fsencode(os.path.abspath(root))
    with open("/proc/self/mountinfo", "rb") as table:
        for line in table:
            fields = line.split(b" ")
            if len(fields) > 4 and _unescape(fields[4]) == target:
                return True
    return False


def _unescape(field: bytes) -> bytes:
    """A mountinfo path: space, tab, newline and backslash are written as octal escapes."""
    for code in (b"\\040", b"\\011", b"\\012", b"\\134"):
        field = field.replace(code, bytes([int(code[1:], 8)]))
    return field


def unmount(root: Path) -> None:
    """Unmount the quota filesystem at `root`, if one is mounted there (the loop device
    goes with it); its image file is then removed with the volume."""
    if shutil.which("umount") is None or not mounted(root):
        return
    _run(["umount", str(root)], f"unmounting the workspace quota at {root}")


def full(root: Path) -> bool:
    """Whether the quota filesystem at `root` has (almost) no space or no inode left."""
    try:
        info = os.statvfs(root)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < FULL_BYTES or info.f_favail == 0


def _open_dir(parent: int, name: str) -> int:
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)


def read_files(root: Path, directory: str, names: Sequence[str], limit: int) -> dict[str, bytes]:
    """Regular files `names` of `root/directory`; a missing file or directory is left out.

    InvalidInput when one is a link (symbolic or hard), not a regular file, or larger than
    `limit`."""
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
        if info.st_nlink != 1:
            raise InvalidInput(f"{shown} is a hard link; a step must write a file")
        if info.st_size > limit:
            raise InvalidInput(f"{shown} is larger than {limit} bytes")
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(limit + 1)[:limit]
    finally:
        os.close(fd)
