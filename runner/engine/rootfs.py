"""An image's filesystem, read from a tar on disk: lookup, symlink resolution, globs.

A toolset is cut out of a source image. The image's merged filesystem is exported once
(`Backend.export_filesystem`) into the state dir, keyed by the image id, and then read
here without the engine: symlinks are followed inside the image (`/bin -> usr/bin`,
`/etc/alternatives/...`), never on the host. A full disk (or an I/O error) while
exporting is `StorageFailed` naming the file, never blamed on the engine.
"""

from __future__ import annotations

import fnmatch
import io
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from runner.durable import atomic_output
from runner.engine.backend import Backend
from runner.errors import InvalidInput, StorageFailed

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

MAX_SYMLINKS = 40  # as the kernel's ELOOP limit


class NotInImage(InvalidInput):
    """A path the source image does not have (or a symlink loop)."""


@dataclass(frozen=True)
class Resolved:
    path: str  # the real path: no symlink in any component
    links: tuple[str, ...]  # every symlink met on the way (their own real paths)


class ImageFS:
    """Random access to an exported image filesystem (an uncompressed tar)."""

    def __init__(self, tar_path: Path, image: str) -> None:
        self.image = image  # for messages
        self._tar = tarfile.open(tar_path)  # noqa: SIM115 - closed by close()
        self.members: dict[str, tarfile.TarInfo] = {}
        self.children: dict[str, list[str]] = {}
        for member in self._tar.getmembers():
            path = normalize(member.name)
            if path == "/":
                continue
            self.members[path] = member
            self.children.setdefault(posixpath.dirname(path), []).append(path)

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> ImageFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str) -> tarfile.TarInfo | None:
        return self.members.get(path)

    def is_dir(self, path: str) -> bool:
        member = self.members.get(path)
        return path == "/" or (member is not None and member.isdir())

    def resolve(self, path: str, *, follow_final: bool = True) -> Resolved:
        """Follow every symlink in `path` inside the image; raise NotInImage if absent."""
        pending = [part for part in path.split("/") if part]
        current = "/"
        links: list[str] = []
        while pending:
            part = pending.pop(0)
            if part == ".":
                continue
            if part == "..":
                current = posixpath.dirname(current)
                continue
            candidate = posixpath.join(current, part)
            member = self.members.get(candidate)
            if member is None:
                raise NotInImage(f"{path}: no such file in image {self.image}")
            if member.issym() and (pending or follow_final):
                links.append(candidate)
                if len(links) > MAX_SYMLINKS:
                    raise NotInImage(f"{path}: too many levels of symlinks in image {self.image}")
                target = member.linkname
                pending = [p for p in target.split("/") if p] + pending
                if target.startswith("/"):
                    current = "/"
                continue
            if pending and not member.isdir():
                raise NotInImage(f"{path}: {candidate} is not a directory in image {self.image}")
            current = candidate
        return Resolved(current, tuple(links))

    def read(self, path: str) -> bytes:
        """The content of the regular file (or hard link) at the real path `path`."""
        member = self.members[path]
        handle = self._tar.extractfile(member)
        if handle is None:
            raise NotInImage(f"{path}: not a regular file in image {self.image}")
        with handle:
            return handle.read()

    def head(self, path: str, size: int) -> bytes:
        handle = self._tar.extractfile(self.members[path])
        if handle is None:
            return b""
        with handle:
            return handle.read(size)

    def walk(self, directory: str) -> Iterator[str]:
        """Every path under the real directory `directory`, parents before children."""
        for child in sorted(self.children.get(directory, ())):
            yield child
            if self.members[child].isdir():
                yield from self.walk(child)

    def glob(self, pattern: str) -> list[str]:
        """Paths matching `pattern` (`*`, `?`, `[...]` within one component), resolved
        through directory symlinks; the last component is returned unresolved."""
        found = ["/"]
        parts = [part for part in pattern.split("/") if part]
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            matches: list[str] = []
            for base in found:
                try:
                    real = self.resolve(base).path
                except NotInImage:
                    continue
                if not self.is_dir(real):
                    continue
                if has_magic(part):
                    names = [posixpath.basename(c) for c in self.children.get(real, ())]
                    chosen = [n for n in sorted(names) if fnmatch.fnmatchcase(n, part)]
                else:
                    chosen = [part] if posixpath.join(real, part) in self.members else []
                matches += [posixpath.join(real, name) for name in chosen]
            found = matches
            if not last:
                found = [path for path in found if self._is_dir_through_links(path)]
        return sorted(set(found))

    def _is_dir_through_links(self, path: str) -> bool:
        try:
            return self.is_dir(self.resolve(path).path)
        except NotInImage:
            return False


def normalize(name: str) -> str:
    """A tar member name as an absolute image path."""
    while name.startswith("./"):
        name = name[2:]
    return posixpath.normpath("/" + name.lstrip("/")) if name not in ("", ".") else "/"


def has_magic(text: str) -> bool:
    return any(char in text for char in "*?[")


def export_rootfs(backend: Backend, image_id: str, cache_dir: Path) -> Path:
    """The image's filesystem as a tar under `cache_dir` (exported once per image id)."""
    path = cache_dir / f"{image_id.removeprefix('sha256:')}.tar"
    if path.exists():
        return path
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as out, io.BufferedWriter(_HostFile(out, path)) as target:
            backend.export_filesystem(image_id, target)
    except OSError as exc:
        raise StorageFailed.writing(path, exc, "the exported filesystem") from exc
    return path


class _HostFile(io.RawIOBase):
    """The export's target file: a write that fails on the host (a full disk) becomes
    StorageFailed at once, so that the engine's error translation, which takes an
    OSError for a lost connection, never sees it."""

    def __init__(self, out: IO[bytes], path: Path) -> None:
        super().__init__()
        self._out = out
        self._path = path

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            return self._out.write(data)
        except OSError as exc:
            raise StorageFailed.writing(self._path, exc, "the exported filesystem") from exc
