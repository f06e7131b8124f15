"""No mount both writable and executable (SPEC 6), checked against the kernel's own view.

The container configuration asks for `noexec` everywhere the step can write, but runtimes
have silently dropped mount flags before (runc#1247). So once per job, after its first
step starts, runner reads that container's mount table (`/proc/<pid>/mountinfo`, as the
kernel applies it) and its mount points' owners and modes (through `/proc/<pid>/root`),
and refuses the job when a mount is executable and writable by the step user. The
workspace may be executable only where the policy grants `exec`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mount:
    point: str
    options: frozenset[str]  # per-mount options: rw/ro, noexec, nosuid, ...
    fstype: str


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (`\\040`)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields or len(fields) < 7:
            continue
        dash = fields.index("-")
        mounts.append(
            Mount(
                point=_unescape(fields[4]),
                options=frozenset(fields[5].split(",")),
                fstype=fields[dash + 1] if dash + 1 < len(fields) else "",
            )
        )
    return mounts


def writable_by(info: os.stat_result, uid: int) -> bool:
    """Whether `uid` (not root, no capabilities, its own group only) may create files."""
    mode = info.st_mode
    if info.st_uid == uid:
        return bool(mode & stat.S_IWUSR)
    if info.st_gid == uid:
        return bool(mode & stat.S_IWGRP)
    return bool(mode & stat.S_IWOTH)


def violations(
    mounts: Iterable[Mount],
    stat_of: Callable[[str], os.stat_result],
    uid: int,
    exec_allowed: frozenset[str],
) -> list[str]:
    found = []
    for mount in mounts:
        if "ro" in mount.options or "noexec" in mount.options:
            continue
        if mount.point in exec_allowed:
            continue
        try:
            info = stat_of(mount.point)
        except OSError:
            continue  # gone, or a mount point we cannot reach: nothing the step can use
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            continue  # a device (Docker masks /proc files with /dev/null): nothing to run
        if writable_by(info, uid):
            found.append(f"{mount.point} ({mount.fstype}) is writable by uid {uid} and not noexec")
    return found


def check_container(pid: int, uid: int, exec_allowed: frozenset[str]) -> list[str] | None:
    """The writable+exec mounts of process `pid`'s container, or None when this host
    cannot look (a remote engine, no permission)."""
    proc = Path(f"/proc/{pid}")
    try:
        text = (proc / "mountinfo").read_text()
    except OSError:
        return None
    root = proc / "root"

    def stat_of(point: str) -> os.stat_result:
        return os.stat(root / point.lstrip("/"), follow_symlinks=False)

    return violations(parse_mountinfo(text), stat_of, uid, exec_allowed)
